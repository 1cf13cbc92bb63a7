"""Control and label fidelity of conditional samples: do they show the curvature they were asked for, and do
their released keypoints sit on their vertebrae? (`cspine evaluate`, metrics.json key ``fidelity``.)

Where it sits: evaluation/, called by evaluation.evaluate after the distribution metrics. Two small
networks (evaluation.small_models) are trained on the real *training* images only:
- a curvature classifier (5 classes); it scores the real holdout images against their labels and the
  synthetic images against the class they were requested with (confusion matrices, accuracies, and the
  ratio synthetic / holdout accuracy at the synthetic class mix; target >= 0.9);
- a landmark detector (23 CSXA points); its mean radial error (MRE) on holdout images against their
  annotations is the yardstick for its MRE on synthetic images against the keypoints released with them
  (ratio of MREs as a share of vertebral height; target <= 1.5). A synthetic image whose keypoints are
  off its anatomy, or whose anatomy is unreadable, raises the synthetic MRE.
Both networks see the holdout images for the first time, as the synthetic ones, so the ratios measure the
synthetic images and labels, not the networks. Scores: evaluation.fidelity_scores. Per requested class:
FID/KID of the synthetic images of that class against real images of that class (holdout, and apart
training), from the shared Inception features. Figures (synthetic pixels only, so a release may show
them): figures/fidelity_class_N.png (per class: each image plain and with its released keypoints, the
detector's points and the classifier's call) and figures/fidelity_confusion.png (counts only).

When the samples are unconditional (no curvature / keypoints columns) the part is skipped with a note;
so is a network whose labels the real images lack.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from cspine import provenance, rundata
from cspine.inception import network_id
from cspine.rundir import RunDir
from evaluation import fidelity_scores as fs
from evaluation import metrics
from evaluation.data import ImageSet
from evaluation.fidelity_data import (CURVATURE_CLASSES, KEYPOINT_LABELS, LabelledSet, real_labelled,
                                      synthetic_labelled)
from evaluation.small_models import (TrainSettings, predict_landmarks, predict_proba, train_classifier,
                                     train_landmarks)

CLASSES = len(CURVATURE_CLASSES)


def fingerprint(cfg, run: RunDir) -> str:
    """What the fidelity metrics depend on: their settings, the evaluation caps and seed, the data, the samples."""
    ec = cfg.evaluate
    return provenance.digest({"fidelity": ec.fidelity.model_dump(mode="json"), "max_images": ec.max_images,
                              "seed": ec.seed, "kid": [ec.kid_subset_size, ec.kid_subsets], "network": network_id(),
                              "data": rundata.data_fp(run), "samples": rundata.samples_fp(run)})[:16]


def run_fidelity(cfg, run: RunDir, features: Callable[[ImageSet], np.ndarray] | None, old: dict | None = None,
                 force: bool = False, log: Callable[[str], None] = print) -> dict:
    """The ``fidelity`` entry of metrics.json for ``run`` (reused from ``old`` when its fingerprint matches)."""
    ec = cfg.evaluate
    fc = ec.fidelity
    if not fc.enabled:
        return {"skipped": "disabled (evaluate.fidelity.enabled: false)"}
    fp = fingerprint(cfg, run)
    if not force and old and old.get("fingerprint") == fp:
        log("evaluate: fidelity metrics up to date (inputs unchanged); skipping them")
        return old
    synth, reason = synthetic_labelled(run, ec.max_images, ec.seed + 2)
    if synth is None:
        log(f"evaluate: fidelity skipped: {reason}")
        return {"skipped": reason, "fingerprint": fp}
    train = real_labelled(run, "train", fc.max_train, ec.seed + 1)
    holdout = real_labelled(run, "holdout", ec.max_images, ec.seed)
    out = json_ready(fidelity_metrics(train, holdout, synth, fc, features=features, kid_subset=ec.kid_subset_size,
                                      kid_subsets=ec.kid_subsets, kid_seed=ec.seed, figures=run.eval / "figures",
                                      log=log))
    out["config"] = fc.model_dump(mode="json")
    out["fingerprint"] = fp
    return out


def json_ready(obj):
    """``obj`` with numpy scalars as Python numbers and NaN / inf as None (metrics.json stays strict JSON)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _settings(fc, epochs: int) -> TrainSettings:
    return TrainSettings(epochs=epochs, batch_size=fc.batch_size, lr=fc.learning_rate, shift=fc.shift, seed=fc.seed)


def fidelity_metrics(train: LabelledSet, holdout: LabelledSet, synth: LabelledSet, fc, *,
                     features: Callable[[ImageSet], np.ndarray] | None = None, kid_subset: int = 50,
                     kid_subsets: int = 100, kid_seed: int = 0, figures: Path | None = None,
                     log: Callable[[str], None] = print) -> dict:
    """Fidelity of ``synth`` (requested curvature, released keypoints) measured by networks trained on
    ``train`` and calibrated on ``holdout``; ``fc`` is ``evaluate.fidelity``. ``features`` maps an image set
    to Inception features (per-class FID/KID; skipped when None). Figures go under ``figures`` when given."""
    if synth.pixels.shape[1:] != train.pixels.shape[1:]:
        raise ValueError(f"synthetic images are {synth.pixels.shape[1:]} but the real ones {train.pixels.shape[1:]}")
    out: dict = {
        "classes": {str(k): v for k, v in CURVATURE_CLASSES.items()},
        "counts": {"train": len(train), "holdout": len(holdout), "synthetic": len(synth),
                   "synthetic_by_class": _by_class(synth), "holdout_by_class": _by_class(holdout),
                   "train_by_class": _by_class(train)},
        "seed": fc.seed,
        "targets": {"accuracy_ratio_min": fc.target_accuracy_ratio, "mre_ratio_max": fc.target_mre_ratio},
    }
    timings = {}
    t0 = time.perf_counter()
    out["curvature"], s_pred = _curvature(train, holdout, synth, fc, log)
    timings["curvature_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    out["landmarks"], s_kp = _landmarks(train, holdout, synth, fc, log)
    timings["landmarks_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    out["per_class"] = (_per_class(train, holdout, synth, fc, features, kid_subset, kid_subsets, kid_seed)
                        if features is not None else {"skipped": "no image features given"})
    timings["per_class_s"] = round(time.perf_counter() - t0, 2)
    out["timings"] = timings
    out["meets_targets"] = {
        "accuracy_ratio": _meets(out["curvature"].get("ratio", {}).get("ratio"), lambda r: r >= fc.target_accuracy_ratio),
        "mre_ratio": _meets(out["landmarks"].get("ratio", {}).get("ratio"), lambda r: r <= fc.target_mre_ratio),
    }
    if figures is not None:
        from evaluation.report import plot_class_grid, plot_confusions

        names = []
        for c in sorted(set(synth.curvature[synth.has_curvature].tolist())):
            idx = np.flatnonzero(synth.curvature == c)[: fc.grid_images]
            path = figures / f"fidelity_class_{c}.png"
            plot_class_grid(synth.take(idx).image_set().unit(), synth.keypoints[idx],
                            None if s_kp is None else s_kp[idx],
                            None if s_pred is None else [CURVATURE_CLASSES[p + 1] for p in s_pred[idx]],
                            f"requested: {CURVATURE_CLASSES[c]} (class {c})", path)
            names.append(f"figures/{path.name}")
        if "holdout" in out["curvature"] or "synthetic" in out["curvature"]:
            plot_confusions(out["curvature"], list(CURVATURE_CLASSES.values()), figures / "fidelity_confusion.png")
            names.append("figures/fidelity_confusion.png")
        out["figures"] = names
    return out


def _by_class(s: LabelledSet) -> dict[str, int]:
    return {str(c): int((s.curvature == c).sum()) for c in CURVATURE_CLASSES if (s.curvature == c).any()}


def _meets(value, test) -> bool | None:
    return None if value is None or not math.isfinite(value) else bool(test(value))


def _curvature(train, holdout, synth, fc, log) -> tuple[dict, np.ndarray | None]:
    tr = train.take(np.flatnonzero(train.has_curvature))
    present = np.unique(tr.curvature)
    if len(tr) < 4 or len(present) < 2:
        return {"skipped": f"{len(tr)} real training images with a curvature label in {len(present)} classes "
                           "(need >= 4 in >= 2 classes)"}, None
    log(f"evaluate: fidelity: training the curvature classifier on {len(tr)} real images "
        f"({fc.classifier_epochs} epochs at {fc.classifier_size} px)")
    net = train_classifier(tr.pixels, tr.curvature - 1, CLASSES, _settings(fc, fc.classifier_epochs),
                           width=fc.classifier_width, size=fc.classifier_size)
    s_pred = predict_proba(net, synth.pixels).argmax(1)
    res: dict = {"n_train": len(tr), "network": f"small CNN, {sum(p.numel() for p in net.parameters())} weights",
                 "synthetic": fs.classification_summary(synth.curvature - 1, s_pred, CLASSES)}
    ho = holdout.take(np.flatnonzero(holdout.has_curvature))
    if len(ho):
        h_pred = predict_proba(net, ho.pixels).argmax(1)
        res["holdout"] = fs.classification_summary(ho.curvature - 1, h_pred, CLASSES)
        scorable = np.isin(np.arange(CLASSES) + 1, present)
        res["ratio"] = fs.accuracy_ratio(ho.curvature - 1, h_pred, synth.curvature - 1, s_pred, CLASSES,
                                         boot=fc.bootstrap, seed=fc.seed, scorable=scorable)
    else:
        res["ratio"] = {"ratio": None, "note": "no real holdout image has a curvature label"}
    return res, s_pred


def _landmarks(train, holdout, synth, fc, log) -> tuple[dict, np.ndarray | None]:
    tr = train.take(np.flatnonzero(train.has_keypoints))
    if len(tr) < 4:
        return {"skipped": f"{len(tr)} real training images with all 23 keypoints (need >= 4)"}, None
    sy = np.flatnonzero(np.isfinite(synth.keypoints).any(axis=(1, 2)))
    if not len(sy):
        return {"skipped": "no synthetic image was released with keypoints"}, None
    log(f"evaluate: fidelity: training the landmark detector on {len(tr)} real images ({fc.detector_epochs} epochs)")
    net = train_landmarks(tr.pixels, tr.keypoints, _settings(fc, fc.detector_epochs), width=fc.detector_width)
    s_kp = predict_landmarks(net, synth.pixels)
    s_err = fs.radial_errors(s_kp[sy], synth.keypoints[sy])
    s_h = fs.vertebral_heights(synth.keypoints[sy], KEYPOINT_LABELS)
    res: dict = {"n_train": len(tr), "network": f"tiny U-Net + soft-argmax, {sum(p.numel() for p in net.parameters())} weights",
                 "synthetic": fs.mre_summary(s_err, s_h, KEYPOINT_LABELS)}
    _, s_share = fs.per_image_mre(s_err, s_h)
    res["synthetic"]["mre_share_by_class"] = {
        str(c): float(np.nanmean(s_share[synth.curvature[sy] == c]))
        for c in CURVATURE_CLASSES if np.isfinite(s_share[synth.curvature[sy] == c]).any()}
    hi = np.flatnonzero(np.isfinite(holdout.keypoints).any(axis=(1, 2)))
    if len(hi):
        h_err = fs.radial_errors(predict_landmarks(net, holdout.pixels[hi]), holdout.keypoints[hi])
        h_h = fs.vertebral_heights(holdout.keypoints[hi], KEYPOINT_LABELS)
        res["holdout"] = fs.mre_summary(h_err, h_h, KEYPOINT_LABELS)
        _, h_share = fs.per_image_mre(h_err, h_h)
        res["ratio"] = fs.mre_ratio(h_share, s_share, boot=fc.bootstrap, seed=fc.seed)
        px = res["synthetic"]["mre_px"] / res["holdout"]["mre_px"] if res["holdout"]["mre_px"] > 0 else math.nan
        res["ratio"]["ratio_px"] = px
    else:
        res["ratio"] = {"ratio": None, "note": "no real holdout image has keypoints"}
    return res, s_kp


def _per_class(train, holdout, synth, fc, features, kid_subset, kid_subsets, kid_seed) -> dict:
    """Per requested class: FID/KID of its synthetic images against real holdout (and training) images of that class."""
    out = {}
    f_syn = features(synth.image_set())
    f_real = {s.name: features(s.image_set()) for s in (holdout, train) if len(s)}
    for c in sorted(set(synth.curvature[synth.has_curvature].tolist())):
        sel = synth.curvature == c
        row: dict = {"n_synthetic": int(sel.sum())}
        for s in (holdout, train):
            rsel = s.curvature == c if len(s) else np.zeros(0, bool)
            n_real = int(rsel.sum())
            if min(n_real, int(sel.sum())) < fc.min_class_images:
                row[f"vs_{s.name}"] = {"n_real": n_real, "skipped": f"fewer than {fc.min_class_images} images"}
                continue
            r, f = f_real[s.name][rsel], f_syn[sel]
            kd = metrics.kid(r, f, subset_size=kid_subset, subsets=kid_subsets, seed=kid_seed)
            row[f"vs_{s.name}"] = {"n_real": n_real, "fid": metrics.fid(r, f), "kid": kd["mean"], "kid_std": kd["std"],
                                   "kid_subset_size": kd["subset_size"]}
        out[str(c)] = row
    out["note"] = metrics.fid_bias_note(min([v["vs_holdout"].get("n_real", 0) for v in out.values()] or [0]),
                                        min([v["n_synthetic"] for v in out.values()] or [0]))
    return out
