"""`cspine package`: the audited samples of a run into release/dataset (Parquet shards, figures, dataset card,
manifest) and release/model (EMA pipeline folder + model card). Re-runnable: finished shards are kept, stale or
partial ones rewritten; the manifest is written last, so a folder with a manifest is a finished release.

What may ship is an allowlist, not whatever the stages left in their folders: the shards (the audited sample
PNGs byte for byte, only of the final weights that are released), the cards, the pipeline's configs and
safetensors, and the figures named in :data:`PUBLIC_FIGURES`, each of which is drawn from synthetic images or
numbers only. Before the manifest is written the release is checked against the audit's record
(release.coverage) and scanned for real training and holdout images (release.realscan); either failing
removes the release folders and refuses (exit 1)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pandas as pd

from cspine import atomic, provenance
from cspine.errors import GateClosed, StageError
from cspine.hashing import sha256_file
from cspine.rundir import RunDir
from dataset_card import render
from release import audit, coverage, leaks, manifest, shards

log = logging.getLogger("cspine.package")

META_COLUMNS = ["image_id", "seed", "scheduler", "steps", "checkpoint", "curvature", "keypoints"]


#: The figures a release may carry, by stage folder: plots of numbers and synthetic images only. A stage's
#: figure that shows real pixels (eval/figures/examples.png, the audit's nearest-pair report) is not here and
#: stays in the run folder for the team.
PUBLIC_FIGURES = {
    "audit": ("distances.png", "dcr.png"),
    "eval": ("synthetic_examples.png", "checkpoint_curve.png", "sampler_curve.png", "c2st_most_synthetic.png",
             "fidelity_confusion.png", *(f"fidelity_class_{k}.png" for k in range(1, 6)),
             "utility_coverage.png", "utility_tstr.png"),
    "study": ("accuracy_per_rater.png", "realism_scores.png"),
}


class PackageError(StageError):
    """The run cannot be packaged (files missing or malformed); the message says why and what to do."""


def release_rows(run: RunDir, gate: audit.Gate) -> pd.DataFrame:
    """samples.parquet of the final weights minus excluded images, joined with the releasable audit columns;
    ``file`` is absolute. Samples of intermediate checkpoints are not released: their weights are not."""
    run.require(run.samples_table, "sample")
    s = pd.read_parquet(run.samples_table)
    missing = [c for c in META_COLUMNS + ["file"] if c not in s.columns]
    if missing:
        raise PackageError(f"{run.samples_table}: missing columns {missing} (resample with `cspine sample`)")
    s = s[~s["image_id"].isin(gate.excluded) & (s["checkpoint"] == "final")]
    s = s.sort_values("image_id", kind="stable").reset_index(drop=True)
    scores = audit.release_columns(run)
    s = s.merge(scores, on="image_id", how="left", validate="one_to_one")
    s["file"] = [str(run.samples / f) for f in s["file"]]
    absent = [f for f in s["file"] if not Path(f).is_file()]
    if absent:
        raise PackageError(f"{len(absent)} sample images listed in {run.samples_table} are missing, e.g. {absent[0]}")
    for c in s.columns:
        if c.endswith("_flag") or c == "flagged":
            s[c] = s[c].fillna(False).astype(bool)
    return s


def copy_sampler(run: RunDir, dst: Path) -> str | None:
    """Ship the scheduler config the samples were drawn with as ``sampler/scheduler_config.json`` of the model
    (a config, no weights), unless it is the pipeline's own ancestral DDPM; returns its class name, or None.
    The model card then shows how to draw with it: ``SchedulerClass.from_pretrained(repo, subfolder="sampler")``."""
    src = run.sampler_config
    target = dst / "sampler" / "scheduler_config.json"
    name = _read_json(src).get("_class_name") if src.is_file() else None
    if name in (None, "DDPMScheduler"):
        if target.parent.exists():
            shutil.rmtree(target.parent)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_if_changed(src, target)
    return name


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and sha256_file(dst) == sha256_file(src):
        return
    with atomic.atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def copy_pipeline(run: RunDir, dst: Path) -> list[str]:
    """Copy the EMA pipeline folder (configs + safetensors only; pickled weights are refused)."""
    src = run.require(run.pipeline, "train")
    files = [p for p in sorted(src.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    pickles = [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    if pickles:
        raise PackageError(f"{pickles[0]}: pickled weights are not released; save the pipeline with safetensors")
    if not any(p.suffix == ".safetensors" for p in files):
        raise PackageError(f"{src}: no .safetensors weights")
    keep = []
    for p in files:
        rel = p.relative_to(src).as_posix()
        _copy_if_changed(p, dst / rel)
        keep.append(rel)
    return keep


def copy_figures(src: Path, dst: Path, allowed: tuple[str, ...]) -> list[dict]:
    """Copy the allow-listed figures of ``src`` into ``dst`` (and only those; stale ones are removed)."""
    out = []
    for name in allowed:
        p = src / name
        if p.is_file():
            _copy_if_changed(p, dst / name)
            out.append({"name": p.stem.replace("_", " "), "path": f"{dst.parent.name}/{dst.name}/{name}"})
    if dst.is_dir():
        for p in dst.iterdir():
            if p.name not in allowed:
                p.unlink()
    return out


_FIGURE_REF = re.compile(r"!\[[^\]]*\]\((figures/[^)\s]+)\)")


def drop_unlisted_figures(snippet: str, allowed: tuple[str, ...]) -> str:
    """A stage summary without the image references that are not allow-listed (they are not released)."""
    return _FIGURE_REF.sub(lambda m: m.group(0) if Path(m.group(1)).name in allowed else "", snippet)


def count_params(pipeline_dir: Path) -> int:
    from safetensors import safe_open

    n = 0
    for f in pipeline_dir.rglob("*.safetensors"):
        with safe_open(str(f), framework="np") as fh:
            for k in fh.keys():
                shape = fh.get_slice(k).get_shape()
                size = 1
                for d in shape:
                    size *= d
                n += size
    return n


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError as err:
        raise PackageError(f"{path}: not valid JSON ({err})") from None


def metrics_table(metrics: dict, limit: int = 24) -> str:
    """A Markdown table of the scalar numbers in eval/metrics.json (nested keys joined with '.')."""
    rows = []

    def walk(prefix: str, obj) -> None:
        if isinstance(obj, bool):
            return
        if isinstance(obj, (int, float)):
            rows.append((prefix, f"{obj:.4g}" if isinstance(obj, float) else str(obj)))
        elif isinstance(obj, dict) and prefix.count(".") < 2:
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    walk("", metrics)
    if not rows:
        return ""
    return "| metric | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows[:limit]) + "\n"


def made_with(run: RunDir) -> dict:
    """The config sections the earlier stages actually ran with, from their provenance records (data from
    prepare, model and train from train, sample from sample): the cards describe what made the release,
    not what the config now says."""
    out = {}
    for folder in (run.data, run.model, run.samples):
        rec = provenance.read_record(folder)
        if not rec or not rec.get("complete"):
            raise PackageError(f"{folder / provenance.RECORD}: no finished record; run the stages before `cspine package`")
        out.update({k: v for k, v in rec["config"].items() if k != "seed"})
    return out


def card_context(cfg, run: RunDir, rows: pd.DataFrame, gate: audit.Gate, summary: dict, n_params: int,
                 made: dict) -> dict:
    rc = cfg.release
    data, model, train, sample = made["data"], made["model"], made["train"], made["sample"]
    idx = pd.read_parquet(run.index, columns=["split", "case_id"]) if run.index.is_file() else None
    if data["source"] == "phantom":
        source_description = (
            "procedural phantom radiographs written by `cspine demo-data` (no real patients: this is the CPU demo "
            f"configuration); the real configuration trains on {rc.source_name}"
        )
    else:
        source_description = rc.source_name
    if idx is not None:
        tr = idx[idx["split"] == "train"]
        source_description += f"; {len(tr)} training images from {tr['case_id'].nunique()} cases, other cases held out for the audit"
    uniq = lambda c: ", ".join(str(v) for v in sorted(rows[c].unique())) if len(rows) else "-"  # noqa: E731
    owner_url = lambda repo, kind: f"https://huggingface.co/{kind}{repo}"  # noqa: E731
    return dict(
        pretty_name=rc.pretty_name, n_rows=len(rows), resolution=data["resolution"], bit_depth=sample["bit_depth"],
        source_name=rc.source_name, source_description=source_description, source_citation=rc.source_citation.strip(),
        dataset_repo=rc.dataset_repo, model_repo=rc.model_repo,
        dataset_url=owner_url(rc.dataset_repo, "datasets/"), model_url=owner_url(rc.model_repo, ""),
        n_params=f"{n_params:,}", block_out_channels=list(model["block_out_channels"]),
        train_steps=train["max_steps"], batch_size=train["batch_size"], learning_rate=train["learning_rate"],
        ema_decay=train["ema"]["decay"], num_train_timesteps=model["num_train_timesteps"],
        beta_schedule=model["beta_schedule"], prediction_type=model["prediction_type"],
        schedulers=uniq("scheduler"), steps=uniq("steps"), checkpoints=uniq("checkpoint"), seeds=uniq("seed"),
        score_columns=[c for c in rows.columns if c not in META_COLUMNS + ["file"]],
        **label_context(rows, sample),
        gate_passed="yes" if gate.passed else "no",
        n_audited=summary.get("n_samples", "-"), n_flagged=summary.get("n_flagged", "-"), n_excluded=len(gate.excluded),
        methods=", ".join(summary.get("methods_run", [])) or "-",
        license=rc.license,
        citation=rc.citation.strip() or (
            "@misc{synthetic_cspine,\n  title  = {" + rc.pretty_name + "},\n  author = {" + rc.dataset_repo.split("/")[0]
            + "},\n  howpublished = {\\url{https://huggingface.co/datasets/" + rc.dataset_repo + "}}\n}"
        ),
    )


def label_context(rows: pd.DataFrame, sample: dict) -> dict:
    """What the cards say about the labels: whether the images are class-conditional, how many of each class,
    whether they carry keypoints, the keypoint names in order and the guidance scale."""
    from release.shards import CURVATURE_NAMES

    curv = rows["curvature"] if "curvature" in rows else pd.Series([], dtype="Int64")
    counts = curv.dropna().astype(int).value_counts().sort_index()
    with_kp = int(rows["keypoints"].notna().sum()) if "keypoints" in rows else 0
    first_kp = next((v for v in rows.get("keypoints", []) if isinstance(v, str)), None)
    return dict(
        conditional=bool(len(counts)),
        class_counts=[{"k": int(k), "name": CURVATURE_NAMES[int(k)], "n": int(n)} for k, n in counts.items()],
        n_unconditional=int(curv.isna().sum()) if len(curv) else len(rows),
        curvature_names=list(CURVATURE_NAMES),
        n_with_keypoints=with_kp, keypoint_labels=list(json.loads(first_kp)) if first_kp else [],
        guidance_scale=sample.get("guidance_scale", 1.0),
    )


def released_model_facts(model_dir: Path) -> dict:
    """Architecture and noise schedule read from the released pipeline's own config files."""
    unet = _read_json(model_dir / "unet" / "config.json")
    sched = _read_json(model_dir / "scheduler" / "scheduler_config.json")
    out = {}
    if unet:
        out["block_out_channels"] = list(unet.get("block_out_channels", []))
        size = unet.get("sample_size")
        out["resolution"] = size[0] if isinstance(size, list) else size
    if sched:
        out.update(num_train_timesteps=sched.get("num_train_timesteps"), beta_schedule=sched.get("beta_schedule"),
                   prediction_type=sched.get("prediction_type"))
    index = _read_json(model_dir / "model_index.json")
    # a pipeline class shipped in the repository (model_index.json names [module, class]): the conditional model
    out["custom_pipeline"] = isinstance(index.get("_class_name"), list)
    out["layout_input"] = bool(unet) and unet.get("in_channels", 1) > unet.get("out_channels", 1)
    return {k: v for k, v in out.items() if v is not None}


def _snippet(path: Path, prefix: str, needles: set[str], allowed: tuple[str, ...]) -> str:
    if not path.is_file():
        return ""
    text = drop_unlisted_figures(path.read_text(encoding="utf-8"), allowed)
    return leaks.redact(render.include_snippet(text, prefix), needles)


def package(cfg, run: RunDir) -> dict:
    """Write release/dataset and release/model for ``run``; return the dataset manifest."""
    rc = cfg.release
    gate = audit.read_gate(run)
    if not gate.passed:
        raise GateClosed(
            f"the privacy audit of {run.root} did not pass ({gate.reason}); nothing was packaged. "
            "Look at audit/report.html, then retrain/resample, or set audit.exclude_flagged: true and re-run `cspine audit`."
        )
    rows = release_rows(run, gate)
    if rows.empty:
        raise PackageError(f"no images left to release in {run.samples_table} after the audit's exclusions")
    ds_dir, model_dir = run.release_dataset, run.release_model
    data_dir = ds_dir / "data"
    for folder in (ds_dir, model_dir):
        for p in atomic.clean_temporaries(folder):
            log.info("removed partial file %s", p)

    # -- shards ------------------------------------------------------------------------------------------
    files = rows["file"].tolist()
    meta = shards.label_columns(rows.drop(columns=["file"]))
    plan = shards.plan_shards([Path(f).stat().st_size for f in files], rc.shard_size_mb * 1e6)
    features = shards.features_for(meta)
    settings = {"group": rc.rows_per_row_group, "features": features.to_dict()}
    jobs = []
    for k, r in enumerate(plan):
        part = meta.iloc[r.start:r.stop].reset_index(drop=True)
        shas = [sha256_file(Path(f)) for f in files[r.start:r.stop]]
        jobs.append(shards.ShardJob(data_dir / shards.shard_name(k, len(plan)), part, files[r.start:r.stop],
                                    shards.fingerprint(part, shas, settings)))
    wanted = {j.path.name for j in jobs}
    if data_dir.is_dir():
        for p in data_dir.glob("*.parquet"):
            if p.name not in wanted:
                p.unlink()
    if (ds_dir / manifest.MANIFEST).exists() and any(not (j.path.is_file() and shards.shard_fingerprint(j.path) == j.fingerprint) for j in jobs):
        (ds_dir / manifest.MANIFEST).unlink()  # the release is about to change: it is unfinished until re-listed
    try:
        n_written = shards.write_shards(jobs, features, rc.rows_per_row_group)
    except ValueError as err:  # a sample PNG with metadata chunks, or not a PNG
        raise PackageError(str(err)) from None
    log.info("shards: %d written, %d already complete", n_written, len(jobs) - n_written)

    # -- figures, model folder, cards ----------------------------------------------------------------------
    made = made_with(run)
    source = Path(made["data"]["path"])
    needles = leaks.private_needles(run, [str(source), str(source.resolve())])
    summary = _read_json(run.audit / "summary.json")
    ctx = {}
    for stage, src in (("audit", run.audit), ("eval", run.eval), ("study", run.study)):
        allowed = PUBLIC_FIGURES[stage]
        figs = copy_figures(src / "figures", ds_dir / "figures" / stage, allowed)
        ctx[f"{stage}_summary"] = _snippet(src / "summary.md", f"figures/{stage}", needles, allowed)
        ctx[f"{stage}_figures"] = [f for f in figs if f["path"] not in ctx[f"{stage}_summary"]]  # not shown twice
    copy_pipeline(run, model_dir)
    ctx["sampler_class"] = copy_sampler(run, model_dir)
    n_params = count_params(model_dir)
    ctx.update(card_context(cfg, run, rows, gate, summary, n_params, made))
    ctx.update(released_model_facts(model_dir))  # what the released weights are, not what the config asked for
    shard_bytes = sum(j.path.stat().st_size for j in jobs)
    num_bytes = sum(shards.uncompressed_bytes(j.path) for j in jobs)
    header = render.dataset_header(
        license=rc.license, pretty_name=rc.pretty_name, n_rows=len(rows), features_yaml=features._to_yaml_list(),
        num_bytes=num_bytes, download_size=shard_bytes,
    ) | render.gate_header(rc.gated, rc.gate_terms)
    atomic.write_text(ds_dir / "README.md", render.render_dataset_card(header, ctx))
    metrics = _read_json(run.eval / "metrics.json")
    ctx["metrics_table"] = metrics_table(metrics)
    ctx["audit_line"] = (f"passed; {ctx['n_flagged']} of {ctx['n_audited']} images flagged, {ctx['n_excluded']} excluded "
                         f"({ctx['methods']}).")
    atomic.write_text(model_dir / "README.md", render.render_model_card(
        render.model_header(license=rc.license, dataset_repo=rc.dataset_repo) | render.gate_header(rc.gated, rc.gate_terms),
        ctx))

    found = leaks.find_leaks(ds_dir, needles) + leaks.find_leaks(model_dir, needles)
    if found:
        refuse(run, "private source metadata would be released:\n  " + "\n  ".join(found[:10]))
    check_release_safety(run, ds_dir, model_dir)
    manifest.write_manifest(model_dir)
    return manifest.write_manifest(ds_dir)


def check_release_safety(run: RunDir, ds_dir: Path, model_dir: Path) -> None:
    """The release holds exactly what the audit covered, and no real image: else it is removed and refused."""
    try:
        coverage.check_release(run, ds_dir, model_dir)
    except GateClosed as err:
        refuse(run, str(err))
    hits = coverage.real_image_hits(run, [ds_dir, model_dir])
    if hits:
        refuse(run, "real radiographs found in the release:\n  " + "\n  ".join(str(h) for h in hits[:10]))


def refuse(run: RunDir, why: str) -> None:
    """Remove release/dataset and release/model (nothing half-checked may be published) and raise GateClosed."""
    for folder in (run.release_dataset, run.release_model):
        shutil.rmtree(folder, ignore_errors=True)
    raise GateClosed(f"{why}\nrelease/dataset and release/model were removed; nothing can be published.")
