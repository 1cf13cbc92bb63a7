"""`cspine study build`: held-out real images + synthetic samples -> study/ (trials, served images, answer key).

Reads data/index.parquet (split == holdout), data/pixels.npy, samples/samples.parquet (through cspine.rundata)
and, when present, the audit's gate (cspine.gate: the images the privacy audit excluded are never shown).
Writes, in study/:

- ``assets/``          the served images only: ``<random hex>.png``, one encoding for all (reader_study.assets)
                       and by default one common histogram (reader_study.tone)
- ``study.json``       what the web app needs: per trial the asset names in display order, k, scale, study id
- ``blinding.json``    how well simple statistics and a small classifier tell real from synthetic on the served
                       files; a tell stops the build (reader_study.blinding) unless allowed
- ``answer_key.json``  apart from what is served: per trial the real position and each image's source
- ``responses.sqlite`` raters with access codes and trial orders, and later their answers (reader_study.store)
- ``access_codes.csv``, ``admin_token.txt``  for the organiser (mode 0600)

Re-running with the same inputs and design skips; a changed design rebuilds, unless answers were given
already, in which case it stops rather than invalidate them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cspine import atomic, rundata
from cspine.config import RunConfig
from cspine.gate import read_gate
from cspine.rundir import RunDir, checkpoint_step
from reader_study import blinding, store, tone
from reader_study.assets import encode_png, encode_served, resize_unit
from reader_study.design import REAL, DesignError, Trial, make_stratified_trials, make_trials, rater_order

log = logging.getLogger("cspine.study")


class StudyError(ValueError):
    """The study cannot be built or used as asked (the message says why and what to do)."""


class StudyPaths:
    """The files of study/ (the run directory contract names study.json, answer_key.json, responses.sqlite)."""

    def __init__(self, run: RunDir):
        self.root = run.study
        self.study_json = self.root / "study.json"
        self.answer_key = self.root / "answer_key.json"
        self.db = self.root / "responses.sqlite"
        self.assets = self.root / "assets"
        self.access_codes = self.root / "access_codes.csv"
        self.admin_token = self.root / "admin_token.txt"
        self.results = self.root / "results.json"
        self.summary = self.root / "summary.md"
        self.figures = self.root / "figures"
        self.responses_csv = self.root / "responses.csv"


def _natural_key(name: str) -> tuple:
    """step-100 < step-1000 < final: order checkpoints by training progress."""
    step = checkpoint_step(name)
    return (1, 0, name) if step is None else (0, step, name)


def study_inputs(cfg: RunConfig, run: RunDir) -> tuple[list[str], dict[str, list[str]], pd.DataFrame, pd.DataFrame]:
    """Held-out real ids, synthetic ids per group, and the index/samples tables; clear errors on bad input."""
    index = rundata.real_index(run)
    real_ids = index.loc[index["split"] == "holdout", "image_id"].astype(str).tolist()
    if not real_ids:
        raise ValueError(f"{run.index}: no rows with split == 'holdout'; the study needs held-out real images")
    samples = rundata.samples_table(run)
    excluded: set[str] = set()
    if cfg.study.skip_audit_excluded and run.audit_summary.exists():
        gate = read_gate(run)
        if not gate.passed:
            log.warning("the privacy audit's gate is closed: %s", gate.reason)
        excluded = gate.excluded
        if excluded:
            log.info("leaving out %d synthetic images the privacy audit excluded", len(excluded))
    samples = samples[~samples["image_id"].astype(str).isin(excluded)]
    present = sorted(samples["checkpoint"].astype(str).unique(), key=_natural_key)
    groups = cfg.study.checkpoints or present
    missing = [g for g in groups if g not in present]
    if missing:
        raise ValueError(f"study.checkpoints names {missing}, but {run.samples_table} holds only {present}")
    if REAL in groups:
        raise ValueError(f"a synthetic checkpoint may not be named {REAL!r} ({run.samples_table})")
    synthetic = {g: samples.loc[samples["checkpoint"].astype(str) == g, "image_id"].astype(str).tolist() for g in groups}
    return real_ids, synthetic, index, samples


def class_strata(run: RunDir, index: pd.DataFrame, samples: pd.DataFrame) -> dict[str, str]:
    """image id -> curvature class, from the real labels and the conditional samples' ``curvature`` column."""
    out: dict[str, str] = {}
    for image_id, raw in zip(index["image_id"].astype(str), index["labels"]):
        where = f"{run.index} (image {image_id})"
        c = rundata.curvature_value(rundata.labels_cell(raw, where).get("curvature"), where)
        if c:
            out[image_id] = str(c)
    if "curvature" not in samples.columns or samples["curvature"].isna().all():
        raise ValueError(f"study.stratify_by_class: {run.samples_table} has no curvature column with classes "
                         "(unconditional samples); turn it off or sample a conditional model")
    for image_id, v in zip(samples["image_id"].astype(str), samples["curvature"]):
        c = rundata.curvature_value(v, f"{run.samples_table} (sample {image_id})")
        if c:
            out[image_id] = str(c)
    return out


def fingerprint(cfg: RunConfig, real_ids: list[str], synthetic: dict[str, list[str]]) -> str:
    s = cfg.study
    design = dict(
        seed=cfg.seed, trials=s.trials, k=s.alternatives, likert=s.likert_points, size=s.image_size,
        allow_fewer=s.allow_fewer_trials, real=sorted(real_ids), synthetic={g: sorted(v) for g, v in synthetic.items()},
        **({"stratify_by_class": True} if s.stratify_by_class else {}),
        # studies built before study.tone existed were served as is and keep their fingerprint under as_is
        **({"tone": s.tone} if s.tone != "as_is" else {}),
    )
    return hashlib.sha256(json.dumps(design, sort_keys=True).encode()).hexdigest()


def _image_loader(run: RunDir, index: pd.DataFrame, samples: pd.DataFrame, real_ids: set[str]):
    """``load(kind, image_id)``: the held-out real images ``real_ids`` are read at once (the pixel cache,
    checked by cspine.rundata), each synthetic image when asked for (they may differ in size)."""
    holdout = index[(index["split"] == "holdout") & index["image_id"].astype(str).isin(real_ids)]
    real = rundata.real_images(run, "holdout", holdout)
    pixels = dict(zip(real.ids, real.pixels))
    files = dict(zip(samples["image_id"].astype(str), samples["file"].astype(str)))

    def load(kind: str, image_id: str) -> np.ndarray:
        return pixels[image_id] if kind == REAL else rundata.read_sample(run, files[image_id])

    return load


def _write_private(path: Path, text: str) -> None:
    """Atomically write an organiser-only file (access codes, admin token): mode 0600 before any byte is in it,
    so there is no moment at which the secret sits in a file others may read."""
    with atomic.atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def write_access_codes(paths: StudyPaths) -> None:
    with store.connect(paths.db) as conn:
        rows = store.raters(conn)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rater_id", "name", "access_code", "simulated"])
    for r in rows:
        w.writerow([r.rater_id, r.name, r.code, int(r.simulated)])
    _write_private(paths.access_codes, buf.getvalue())


def admin_token(paths: StudyPaths) -> str:
    """The admin token: $CSPINE_STUDY_ADMIN_TOKEN if set, else study/admin_token.txt (made by build)."""
    env = os.environ.get("CSPINE_STUDY_ADMIN_TOKEN")
    if env:
        return env
    if not paths.admin_token.exists():
        _write_private(paths.admin_token, secrets.token_urlsafe(24) + "\n")
    return paths.admin_token.read_text().strip()


def add_raters(paths: StudyPaths, seed: int, n_trials: int, count: int, names: list[str] | None = None, simulated: bool = False):
    out = []
    with store.connect(paths.db) as conn:
        for i in range(count):
            name = names[i] if names and i < len(names) else ""
            out.append(store.add_rater(conn, lambda number: rater_order(seed, number, n_trials), name=name, simulated=simulated))
    write_access_codes(paths)
    return out


def _has_answers(paths: StudyPaths) -> bool:
    if not paths.db.exists():
        return False
    with store.connect(paths.db) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] > 0
        except Exception:  # noqa: BLE001 - no table yet
            return False


def build_study(cfg: RunConfig, run: RunDir, force: bool = False) -> dict:
    """Build study/ for this run; returns study.json's content. Skips when the same study is built already."""
    paths = StudyPaths(run)
    real_ids, synthetic, index, samples = study_inputs(cfg, run)
    fp = fingerprint(cfg, real_ids, synthetic)
    current = _current_build(paths, fp, force)
    if current is not None:
        return current
    s = cfg.study
    try:
        if s.stratify_by_class:
            trials, warnings = make_stratified_trials(real_ids, synthetic, class_strata(run, index, samples), s.trials,
                                                      s.alternatives, cfg.seed, s.allow_fewer_trials)
        else:
            trials, warnings = make_trials(real_ids, synthetic, s.trials, s.alternatives, cfg.seed, s.allow_fewer_trials)
    except (DesignError, ValueError) as err:
        raise StudyError(str(err)) from None
    for w in warnings:
        log.warning(w)
    names = {(t.index, p): secrets.token_hex(12) for t in trials for p in range(len(t.alternatives))}
    warnings += _write_assets(cfg, run, paths, index, samples, trials, names)

    study_id = fp[:16]
    study = {
        "study_id": study_id,
        "fingerprint": fp,
        "created_at": store.now(),
        "n_trials": len(trials),
        "alternatives": s.alternatives,
        "likert_points": s.likert_points,
        "image_size": s.image_size,
        "trials": [{"trial": t.index, "images": [names[(t.index, p)] for p in range(len(t.alternatives))]} for t in trials],
        "warnings": warnings,
    }
    key = {
        "study_id": study_id,
        "seed": cfg.seed,
        "groups": [REAL] + list(g for g in synthetic if synthetic[g]),
        "trials": [_key_entry(t, names) for t in trials],
    }
    _write_organiser_files(paths, cfg, key, len(trials))
    atomic.write_json(paths.study_json, study)  # last: its presence marks a finished build
    log.info("study %s: %d trials of %d, %d raters; access codes in %s", study_id, len(trials), s.alternatives, s.raters, paths.access_codes)
    return study


def _current_build(paths: StudyPaths, fp: str, force: bool) -> dict | None:
    """study.json's content when the study with fingerprint ``fp`` is built already (and not ``force``), else
    None after making sure a rebuild is safe: refuses when the current study holds answers, and removes the
    asset folders of a build that was killed."""
    if paths.study_json.exists():
        current = json.loads(paths.study_json.read_text())
        if current.get("fingerprint") == fp and paths.answer_key.exists() and paths.db.exists() and not force:
            log.info("study already built (%s, %d trials): skipping", current["study_id"], current["n_trials"])
            return current
        log.info("design or inputs changed: rebuilding study/")
    if _has_answers(paths):
        raise StudyError(
            f"{paths.study_json}: the inputs or the study design changed (or study.json is missing), but {paths.db} "
            "holds answers to the current study; move study/ away (or set --run-dir) before building a new one"
        )
    for leftover in paths.root.glob(".tmp-assets-*") if paths.root.exists() else []:
        shutil.rmtree(leftover, ignore_errors=True)  # from a build that was killed
    return None


def _write_assets(cfg: RunConfig, run: RunDir, paths: StudyPaths, index: pd.DataFrame, samples: pd.DataFrame,
                  trials: list[Trial], names: dict) -> list[str]:
    """Encode every image of ``trials`` into study/assets/ as ``names[(trial, position)].png`` (written in a
    temporary folder renamed into place only after the blinding check passed on exactly these files);
    returns a warning when real and synthetic native sizes differ."""
    size = cfg.study.image_size
    load = _image_loader(run, index, samples, {a.image_id for t in trials for a in t.alternatives if a.kind == REAL})
    shapes: dict[str, set] = {}
    paths.root.mkdir(parents=True, exist_ok=True)
    tmp_assets = paths.root / f".tmp-assets-{secrets.token_hex(4)}"
    tmp_assets.mkdir()
    try:
        jobs = sorted(((names[(t.index, p)], a) for t in trials for p, a in enumerate(t.alternatives)), key=lambda j: j[0])
        match = cfg.study.tone == "match"
        if match:  # two passes, one image in memory at a time: the common histogram, then each image given it
            target = tone.target_values(resize_unit(load(a.kind, a.image_id), size)
                                        for _, a in tqdm(jobs, desc="study tone", unit="img"))
        for i, (name, alt) in enumerate(tqdm(jobs, desc="study images", unit="img")):
            arr = load(alt.kind, alt.image_id)
            shapes.setdefault(alt.kind, set()).add(arr.shape)
            data = encode_served(tone.specify(resize_unit(arr, size), target, seed=[cfg.seed, i])) if match else encode_png(arr, size)
            (tmp_assets / f"{name}.png").write_bytes(data)
        blinding.check_served(cfg, paths.root, tmp_assets, trials, names)  # refuses (exit 1) on a tell
        if paths.assets.exists():
            shutil.rmtree(paths.assets)
        os.replace(tmp_assets, paths.assets)
    finally:
        if tmp_assets.exists():
            shutil.rmtree(tmp_assets)
    sizes = sorted({sh for v in shapes.values() for sh in v})
    if len(sizes) > 1:
        w = f"real and synthetic images have different native sizes {sizes}: resizing may make them look different"
        log.warning(w)
        return [w]
    return []


def _write_organiser_files(paths: StudyPaths, cfg: RunConfig, key: dict, n_trials: int) -> None:
    """A fresh responses database, the answer key (0600), the admin token and the raters' access codes."""
    if paths.db.exists():  # an earlier build without answers: start the database afresh
        for suffix in ("", "-wal", "-shm"):
            Path(str(paths.db) + suffix).unlink(missing_ok=True)
    store.init_db(paths.db, key["study_id"])
    atomic.write_json(paths.answer_key, key)
    os.chmod(paths.answer_key, 0o600)
    admin_token(paths)
    if cfg.study.raters:
        add_raters(paths, cfg.seed, n_trials, cfg.study.raters)
    else:
        write_access_codes(paths)


def _key_entry(t: Trial, names: dict) -> dict:
    return {
        "trial": t.index,
        **({"stratum": t.stratum} if t.stratum is not None else {}),
        "real_position": t.real_position,
        "alternatives": [
            {"position": p, "asset": names[(t.index, p)], "kind": a.kind, "group": a.group, "image_id": a.image_id}
            for p, a in enumerate(t.alternatives)
        ],
    }


def load_study(paths: StudyPaths) -> dict:
    if not paths.study_json.exists():
        raise FileNotFoundError(f"{paths.study_json} does not exist: run `cspine study build` first")
    return json.loads(paths.study_json.read_text())
