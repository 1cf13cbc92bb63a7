"""Curves that need fresh samples: quality against training step (checkpoint selection) and against
sampler speed (the speed-quality curve that justifies the default sampler).

Both generate images with cspine.generation.sampling (image i depends only on (seed, i), so every checkpoint and
every sampler is scored on the same noise) the way `cspine sample` made the released ones: for a
conditional model, :func:`release_conditions` takes ``num_images`` released samples spread over
samples.parquet (their class, their drawn landmark layout and their index) and the guidance scale of the
sample stage's record; the noise comes from the evaluation's own seed (``evaluate.sample_seed_offset``), so
the curve's images are new draws of the released conditions (with the sample seed and sampler they would
be the released images, which tests/training/test_conditional.py checks). A curve of unconditional
draws from a conditional model would rank samplers on a path nobody ships. They embed the images with the
bundled Inception through the shared feature cache, and compare with a fixed real reference set: KID
(torchmetrics, mean +- std over subsets of at most half the images, so the std is a noise scale) and FID
(exact low-rank Fréchet distance, equal to torchmetrics' FID, fast for small n). Each point is stored in a
JSON file under eval/ as soon as it is done, keyed by its settings, so an interrupted run resumes and a
finished one is skipped.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cspine import atomic
from cspine import provenance, rundata
from cspine.rundata import keypoint_array
from cspine.rundir import RunDir, checkpoint_step
from evaluation.data import image_set_from_unit
from evaluation.features import set_features
from evaluation.metrics import frechet_distance_lowrank, kid


#: Bumped when how a point is scored changes, so stored points of the old recipe are recomputed.
KEY_VERSION = "v3-release-conditions"


def checkpoint_names(run: RunDir) -> list[str]:
    """Names of the saved checkpoints that can be sampled ("step-N" by step, then "final" when
    model/pipeline has its U-Net)."""
    out = [f"step-{s}" for s in run.checkpoint_steps(complete_marker="unet_ema/config.json")]
    if (run.unet_folder("final") / "config.json").is_file():
        out.append("final")
    return out


def _weights_stamp(run: RunDir, checkpoint: str) -> str:
    """Changes when a checkpoint's weights change (retraining into the same run dir): their sha256."""
    return provenance.digest(rundata.weights_fp(run, checkpoint))[:16]


def _load_points(path: Path) -> dict:
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {}
    return {}


def release_conditions(run: RunDir, checkpoint: str, num_images: int) -> dict:
    """Keyword arguments for cspine.generation.sampling.generate that reproduce ``num_images`` released samples of
    ``checkpoint``: ``indices``, ``classes``, ``layouts``, ``guidance_scale``, ``map_sigma``. An
    unconditional run (no curvature column, or only nulls): indices 0..n-1 and nothing else."""
    plain = {"indices": list(range(num_images))}
    try:
        table = rundata.samples_table(run, checkpoint)
    except (FileNotFoundError, rundata.RunDataError):
        return plain
    if "curvature" not in table or table["curvature"].isna().all() or not len(table):
        return plain
    rows = table.iloc[np.unique(np.linspace(0, len(table) - 1, min(num_images, len(table))).round().astype(int))]
    ids = rows["image_id"].str.rsplit("-", n=1).str[-1].astype(int)
    layouts = [None if not isinstance(kp, str) else keypoint_array(kp, f"{run.samples_table} {iid}").astype(np.float32)
               for kp, iid in zip(rows["keypoints"], rows["image_id"])]
    rec = provenance.read_record(run.samples) or {}
    settings = (rec.get("config") or {}).get("sample") or {}
    from cspine.generation.shape_model import read_shape_model

    shape = read_shape_model(run.model / "shape_model.json") or {}
    return {"indices": [int(i) for i in ids], "classes": [None if pd.isna(k) else int(k) for k in rows["curvature"]],
            "layouts": layouts, "guidance_scale": float(settings.get("guidance_scale", 1.0)),
            "map_sigma": float(shape.get("map_sigma", 1.0))}


def score_generated(images01: np.ndarray, name: str, ref_feats: np.ndarray, kid_subset: int, kid_subsets: int,
                    seed: int, batch_size: int, progress: bool) -> dict:
    """KID and FID of freshly generated images [n, R, R] in [0, 1] against reference features."""
    fake = image_set_from_unit(name, images01)
    feats = set_features(fake, batch_size=batch_size, progress=progress)
    # subsets of at most half of each set, so that the std across subsets reflects sampling noise (a subset
    # as large as the set would repeat the same images and report a spread of zero); conservative at n
    size = max(2, min(kid_subset, len(feats) // 2, len(ref_feats) // 2))
    k = kid(ref_feats, feats, subset_size=size, subsets=kid_subsets, seed=seed)
    return {"kid": k["mean"], "kid_std": k["std"], "kid_subset_size": k["subset_size"],
            "fid": frechet_distance_lowrank(ref_feats, feats), "n_images": len(fake), "n_real": len(ref_feats)}


def checkpoint_curve(run: RunDir, ref_feats: np.ndarray, *, num_images: int, scheduler: str, steps: int, seed: int,
                     batch_size: int, kid_subset: int, kid_subsets: int, progress: bool = True,
                     log: Callable[[str], None] = print) -> list[dict]:
    """Score every saved checkpoint on ``num_images`` images; returns one row per checkpoint (by step)."""
    from cspine.generation.sampling import generate, load_unet, make_scheduler

    path = run.eval / "checkpoint_curve.json"
    done = _load_points(path)
    rows = []
    sampled = _sampled(run)
    for ckpt in checkpoint_names(run):
        key = json.dumps([KEY_VERSION, ckpt, _weights_stamp(run, ckpt), num_images, scheduler, steps, seed, len(ref_feats)])
        if key in done:
            rows.append(done[key])
            continue
        log(f"checkpoint curve: {ckpt} ({num_images} images, {scheduler} {steps} steps)")
        unet = load_unet(run, ckpt)
        sched = make_scheduler(scheduler, run)
        cond = release_conditions(run, ckpt if ckpt in sampled else "final", num_images)
        t0 = time.perf_counter()
        imgs = generate(unet, sched, cond.pop("indices"), seed, steps, batch_size=batch_size, progress=progress, **cond)
        dt = time.perf_counter() - t0
        row = {"checkpoint": ckpt, "step": _step_of(run, ckpt), "scheduler": scheduler, "steps": steps,
               "seconds": dt}
        row.update(score_generated(imgs, f"ckpt-{ckpt}", ref_feats, kid_subset, kid_subsets, seed, batch_size,
                                   progress))
        done[key] = row
        atomic.write_json(path, done)
        rows.append(row)
    return sorted(rows, key=lambda r: r["step"])


def _sampled(run: RunDir) -> set[str]:
    try:
        return set(rundata.samples_table(run)["checkpoint"].astype(str))
    except (FileNotFoundError, rundata.RunDataError):
        return set()


def _step_of(run: RunDir, ckpt: str) -> int:
    if (step := checkpoint_step(ckpt)) is not None:
        return step
    # "final": the last logged training step, else one past the newest checkpoint
    if run.loss_log.is_file():
        import pandas as pd

        try:
            steps = pd.read_csv(run.loss_log)["step"]
            if len(steps):
                return int(steps.max())
        except (KeyError, ValueError, pd.errors.ParserError):
            pass
    return max(run.checkpoint_steps(), default=0) + 1


def sampler_curve(run: RunDir, ref_feats: np.ndarray, *, points: list[tuple[str, int]], checkpoint: str,
                  num_images: int, seed: int, batch_size: int, kid_subset: int, kid_subsets: int,
                  progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """Quality and speed of each (scheduler, steps) on the same ``num_images`` indices of one checkpoint."""
    from cspine.generation.sampling import generate, load_unet, make_scheduler

    import torch

    path = run.eval / "sampler_curve.json"
    done = _load_points(path)
    unet = None
    stamp = _weights_stamp(run, checkpoint)
    rows = []
    for name, steps in points:
        key = json.dumps([KEY_VERSION, checkpoint, stamp, name, steps, num_images, seed, len(ref_feats)])
        if key in done:
            rows.append(done[key])
            continue
        if unet is None:
            unet = load_unet(run, checkpoint)
        log(f"sampler curve: {name} {steps} steps, {num_images} images")
        sched = make_scheduler(name, run)
        cond = release_conditions(run, checkpoint, num_images)
        t0 = time.perf_counter()
        imgs = generate(unet, sched, cond.pop("indices"), seed, steps, batch_size=batch_size, progress=progress, **cond)
        dt = time.perf_counter() - t0
        row = {"scheduler": name, "steps": steps, "checkpoint": checkpoint, "seconds": dt,
               "images_per_s": num_images / dt if dt > 0 else float("inf"), "torch_threads": torch.get_num_threads(),
               "device": device_description(unet.device)}
        row.update(score_generated(imgs, f"{name}-{steps}", ref_feats, kid_subset, kid_subsets, seed, batch_size,
                                   progress))
        done[key] = row
        atomic.write_json(path, done)
        rows.append(row)
    return rows


def device_description(device) -> str:
    """What timed a point, read from the device the U-Net ran on: the GPU's name, or the CPU with its threads."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch threads"


def timing_devices(rows: list[dict]) -> str:
    """Where the points of a sampler curve were timed (points stored before rows named their device ran
    on the CPU: load_unet's default)."""
    return "; ".join(sorted({r.get("device") or f"CPU ({platform.processor() or platform.machine()}), "
                             f"{r['torch_threads']} torch threads" for r in rows}))


def recommend_sampler(rows: list[dict]) -> dict:
    """The fewest-step setting whose quality is within noise of the reference, or better.

    "Within noise or better": the setting's KID mean lies inside the reference's interval (mean +- std over
    KID subsets) or below it. (A looser rule, intervals merely overlapping, would pass settings whose mean
    is worse than anything the reference produces.)

    The reference is the DDPM setting with the most steps (1000-step ancestral sampling, the model's own
    sampler); without one, the setting with the most steps. Ties in steps go to the faster setting.
    """
    if not rows:
        raise ValueError("no sampler points to recommend from")
    ddpm = [r for r in rows if r["scheduler"] == "ddpm"]
    ref = max(ddpm or rows, key=lambda r: r["steps"])
    hi_ref = ref["kid"] + ref["kid_std"]
    within = [r for r in rows if r["kid"] <= hi_ref]
    best = min(within, key=lambda r: (r["steps"], -r["images_per_s"]))
    return {
        "scheduler": best["scheduler"], "steps": best["steps"], "kid": best["kid"], "kid_std": best["kid_std"],
        "images_per_s": best["images_per_s"],
        "reference": {"scheduler": ref["scheduler"], "steps": ref["steps"], "kid": ref["kid"],
                      "kid_std": ref["kid_std"], "images_per_s": ref["images_per_s"]},
        "speedup": best["images_per_s"] / ref["images_per_s"] if ref["images_per_s"] else None,
        "rule": "fewest steps whose KID mean lies within the reference's KID mean +- std (over KID subsets) or below "
                f"it (reference: {ref['scheduler']} {ref['steps']} steps)",
    }
