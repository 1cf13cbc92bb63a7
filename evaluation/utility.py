"""Downstream utility of conditional samples: is a network trained on the synthetic images as good on real
radiographs as one trained on real images? (`cspine evaluate`, eval/utility.json.)

Where it sits: evaluation/, called by evaluation.evaluate after the fidelity metrics (and alone by
`cspine evaluate --utility`). It reads the labelled sets of evaluation.fidelity_data (real training and
holdout images with their labels; synthetic images with their requested curvature and released
keypoints), trains the small networks of evaluation.small_models, and hands predictions to
evaluation.utility_scores (intervals), evaluation.coverage (who the synthetic set represents) and
evaluation.utility_report (figures, sentences). Parts:

1. TSTR against TRTR: the same network trained on synthetic images only and on real training images only,
   at equal counts (n = the smaller of the two labelled sets, a seeded subset of the larger one per seed),
   both tested on the real holdout: curvature classifier (balanced accuracy, macro F1) and landmark
   detector (mean radial error in px and as share of the vertebral height, absolute error of the C2-C7
   angle from the predicted landmarks). Ratios TSTR / TRTR with paired intervals.
2. Augmentation curve: a real training base plus 0x, 1x, 2x, 4x as many synthetic images (as far as the
   samples reach), tested on the real holdout (balanced accuracy, MRE), with the change against 0x.
3. Measurement agreement: the C2-C7 angle of the synthetic set (released keypoints) against the real
   training set per curvature class, and Bland-Altman of the angle measured on real holdout images by the
   synthetic-trained and the real-trained detector (first seed) against the annotated angle.
4. Coverage and bias (evaluation.coverage).

Decisions:
- Training length is a number of optimiser steps (evaluate.utility.classifier_steps / detector_steps),
  the same for every arm and curve point: more images then mean more variety, not more compute.
- The landmark detector sees images area-resized to evaluate.utility.detector_size (32 px at the demo's
  64 px costs a quarter and loses little: the soft-argmax is sub-pixel); keypoints are scaled with the
  images and predictions scaled back, so every error is in the images' own pixels.
- Seeds: arm seed i uses network seed ``seed + i`` and its own subset draw; TSTR and TRTR share the
  network seed i (paired). Everything is recorded in utility.json: counts, seeds, steps, the config.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cspine import atomic, provenance, rundata
from cspine.inception import network_id
from cspine.rundir import RunDir
from evaluation import utility_scores as us
from evaluation.data import ImageSet
from evaluation.fidelity import json_ready
from evaluation.fidelity_data import CURVATURE_CLASSES, KEYPOINT_LABELS, LabelledSet, real_labelled, synthetic_labelled
from evaluation.fidelity_scores import per_image_mre, radial_errors, vertebral_heights
from evaluation.measurements import bland_altman, c2c7_angles_array
from evaluation.small_models import (TrainSettings, predict_landmarks, predict_proba, train_classifier,
                                     train_landmarks)

CLASSES = len(CURVATURE_CLASSES)
UTILITY_JSON = "utility.json"


def fingerprint(cfg, run: RunDir) -> str:
    """What the utility evaluation depends on: its settings, the evaluation caps and seed, the data, the samples."""
    ec = cfg.evaluate
    return provenance.digest({"utility": ec.utility.model_dump(mode="json"), "max_images": ec.max_images,
                              "seed": ec.seed, "pr_k": ec.pr_k, "network": network_id(),
                              "data": rundata.data_fp(run), "samples": rundata.samples_fp(run)})[:16]


def run_utility(cfg, run: RunDir, features: Callable[[ImageSet], np.ndarray] | None, force: bool = False,
                log: Callable[[str], None] = print) -> dict:
    """Compute (or reuse, when eval/utility.json's fingerprint matches) the utility evaluation of ``run``
    and write eval/utility.json; returns its content."""
    from evaluation.coverage import real_metadata

    ec, uc = cfg.evaluate, cfg.evaluate.utility
    path = run.eval / UTILITY_JSON
    if not uc.enabled:
        out = {"skipped": "disabled (evaluate.utility.enabled: false)"}
        atomic.write_json(path, out)
        return out
    fp = fingerprint(cfg, run)
    old = _read(path)
    if not force and isinstance(old, dict) and old.get("fingerprint") == fp:
        log("evaluate: utility up to date (inputs unchanged); skipping it")
        return old
    synth, reason = synthetic_labelled(run, ec.max_images, ec.seed + 2)
    if synth is None:
        log(f"evaluate: utility skipped: {reason}")
        out = {"skipped": reason, "fingerprint": fp}
        atomic.write_json(path, out)
        return out
    train = real_labelled(run, "train", uc.max_train, ec.seed + 1)
    holdout = real_labelled(run, "holdout", ec.max_images, ec.seed)
    meta = {"train": real_metadata(run, train.ids), "holdout": real_metadata(run, holdout.ids)}
    out = json_ready(utility_metrics(train, holdout, synth, uc, meta=meta, features=features, pr_k=ec.pr_k,
                                     figures=run.eval / "figures", log=log))
    out["config"] = uc.model_dump(mode="json")
    out["fingerprint"] = fp
    atomic.write_json(path, out)
    return out


def _read(path: Path) -> dict | None:
    """The stored utility.json, or None when absent or unreadable (then it is recomputed)."""
    import json

    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


# -- training -------------------------------------------------------------------------------------------

def _settings(uc, steps: int, n: int, seed: int) -> TrainSettings:
    """Settings giving about ``steps`` optimiser steps on ``n`` images (epochs = steps / batches per epoch)."""
    per_epoch = max(1, -(-n // uc.batch_size))
    return TrainSettings(epochs=max(1, round(steps / per_epoch)), batch_size=uc.batch_size, lr=uc.learning_rate,
                         shift=uc.shift, seed=seed)


def steps_taken(uc, steps: int, n: int) -> int:
    """Optimiser steps the settings for ``steps`` on ``n`` images really take (whole epochs; a last batch of
    one image is merged into the one before, as evaluation.small_models does)."""
    s = _settings(uc, steps, n, 0)
    batches = -(-n // s.batch_size)
    if batches > 1 and n % s.batch_size == 1:
        batches -= 1
    return s.epochs * batches


def resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """float32 images area-resized to ``size`` x ``size`` (unchanged when already that size)."""
    x = np.asarray(pixels, np.float32)
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(torch.from_numpy(x)[:, None], size=(size, size), mode="area")[:, 0].numpy()


def fit_classifier(images: np.ndarray, labels: np.ndarray, classes: int, uc, seed: int):
    """A classifier (evaluation.small_models) trained with the utility settings; labels 0..classes-1."""
    return train_classifier(images, labels, classes, _settings(uc, uc.classifier_steps, len(images), seed),
                            width=uc.classifier_width, size=uc.classifier_size)


def fit_detector(images: np.ndarray, keypoints: np.ndarray, uc, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """A landmark detector trained at ``uc.detector_size``; returns a predictor giving keypoints in the
    images' own pixels."""
    r = images.shape[-1]
    s = uc.detector_size / r
    net = train_landmarks(resize(images, uc.detector_size), (np.asarray(keypoints) + 0.5) * s - 0.5,
                          _settings(uc, uc.detector_steps, len(images), seed), width=uc.detector_width)
    return lambda x: (predict_landmarks(net, resize(x, uc.detector_size)) + 0.5) / s - 0.5


def _subset(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    return pool if n >= len(pool) else np.sort(rng.choice(pool, n, replace=False))


def _seed_rng(uc, i: int, tag: int) -> np.random.Generator:
    return np.random.default_rng([uc.seed, i, tag])


# -- holdout scores per image -----------------------------------------------------------------------------

class LandmarkScores:
    """Per holdout image (with any annotated keypoint): radial error (px), as share of the vertebral height,
    absolute C2-C7 angle error (degrees), from predicted keypoints."""

    def __init__(self, holdout: LabelledSet) -> None:
        self.idx = np.flatnonzero(np.isfinite(holdout.keypoints).any(axis=(1, 2)))
        self.true = holdout.keypoints[self.idx]
        self.heights = vertebral_heights(self.true, KEYPOINT_LABELS)
        self.true_angle = c2c7_angles_array(self.true, KEYPOINT_LABELS)
        self.pixels = holdout.pixels[self.idx]

    def __len__(self) -> int:
        return len(self.idx)

    def score(self, pred: np.ndarray) -> dict[str, np.ndarray]:
        mre, share = per_image_mre(radial_errors(pred, self.true), self.heights)
        return {"mre_px": mre, "mre_share": share,
                "angle_abs_error_deg": np.abs(c2c7_angles_array(pred, KEYPOINT_LABELS) - self.true_angle)}


def _nanmean_at(a: np.ndarray, idx: np.ndarray) -> float:
    v = a[idx]
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


# -- the evaluation ---------------------------------------------------------------------------------------

def utility_metrics(train: LabelledSet, holdout: LabelledSet, synth: LabelledSet, uc, *, meta: dict | None = None,
                    features: Callable[[ImageSet], np.ndarray] | None = None, pr_k: int = 3,
                    figures: Path | None = None, log: Callable[[str], None] = print) -> dict:
    """The utility evaluation of ``synth`` against real ``train`` / ``holdout`` (``uc``: evaluate.utility).
    ``meta``: {"train": {...}, "holdout": {...}} real sex / age per image (evaluation.coverage.real_metadata);
    ``features``: Inception features of an image set (precision / recall per group; skipped when None)."""
    from evaluation import coverage, utility_report

    if synth.pixels.shape[1:] != train.pixels.shape[1:]:
        raise ValueError(f"synthetic images are {synth.pixels.shape[1:]} but the real ones {train.pixels.shape[1:]}")
    timings: dict = {}
    out: dict = {
        "classes": {str(k): v for k, v in CURVATURE_CLASSES.items()},
        "counts": {"train": len(train), "holdout": len(holdout), "synthetic": len(synth)},
        "seeds": {"base": uc.seed, "tstr": [uc.seed + i for i in range(uc.seeds)],
                  "augmentation": [uc.seed + i for i in range(uc.augment_seeds)], "bootstrap": uc.bootstrap},
        "resolution": int(train.pixels.shape[-1]),
    }
    t0 = time.perf_counter()
    out["tstr"], detectors = tstr(train, holdout, synth, uc, log)
    timings["tstr_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    out["augmentation"] = _augmentation(train, holdout, synth, uc, log)
    timings["augmentation_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    out["measurement"], pairs = _measurement(train, holdout, synth, detectors)
    timings["measurement_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    out["coverage"] = coverage.coverage(train, holdout, synth, uc, meta=meta, features=features, pr_k=pr_k, log=log)
    timings["coverage_s"] = round(time.perf_counter() - t0, 1)
    out["timings"] = timings
    out["statements"] = utility_report.statements(out, uc)
    if figures is not None:
        out["figures"] = utility_report.plot_all(out, train, synth, pairs, figures)
    return out


def tstr(train: LabelledSet, holdout: LabelledSet, synth: LabelledSet, uc, log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """TSTR against TRTR (part 1): the ``tstr`` entry and the first seed's holdout predictions of both detectors."""
    res: dict = {"interval": "95% percentile bootstrap over training seeds and holdout images (paired across arms)"}
    # curvature
    rc, sc = np.flatnonzero(train.has_curvature), np.flatnonzero(synth.has_curvature)
    hc = np.flatnonzero(holdout.has_curvature)
    n = min(len(rc), len(sc))
    if n < 4 or len(hc) < 2 or len(np.unique(train.curvature[rc])) < 2:
        res["curvature"] = {"skipped": f"{len(rc)} real / {len(sc)} synthetic training images and {len(hc)} holdout "
                                       "images with a curvature label (need >= 4, >= 4 and >= 2)"}
    else:
        log(f"evaluate: utility: curvature classifier, TSTR vs TRTR on {n} images each, {uc.seeds} seeds")
        h_true = holdout.curvature[hc] - 1
        preds: dict[str, list[np.ndarray]] = {"tstr": [], "trtr": []}
        train_counts: dict[str, list] = {"tstr": [], "trtr": []}
        for i in range(uc.seeds):
            for arm, s, pool in (("tstr", synth, sc), ("trtr", train, rc)):
                idx = _subset(_seed_rng(uc, i, 1 if arm == "tstr" else 2), pool, n)
                net = fit_classifier(s.pixels[idx], s.curvature[idx] - 1, CLASSES, uc, uc.seed + i)
                preds[arm].append(predict_proba(net, holdout.pixels[hc]).argmax(1))
                train_counts[arm].append(np.bincount(s.curvature[idx], minlength=CLASSES + 1)[1:].tolist())
        stats = {f"{arm}_{k}": (lambda si, ix, arm=arm, k=k: us.class_scores(h_true[ix], preds[arm][si][ix], CLASSES)[k])
                 for arm in preds for k in (0, 1)}
        b = us.paired_bootstrap(stats, uc.seeds, len(hc), uc.bootstrap, uc.seed, strata=h_true)
        names = {0: "balanced_accuracy", 1: "macro_f1"}
        res["curvature"] = {
            "n_train": n, "n_holdout": len(hc), "steps": steps_taken(uc, uc.classifier_steps, n),
            "train_by_class": {arm: train_counts[arm][0] for arm in train_counts},
            "holdout_by_class": np.bincount(holdout.curvature[hc], minlength=CLASSES + 1)[1:].tolist(),
            "chance_balanced_accuracy": 1 / len(np.unique(h_true)),
            **{arm: {names[k]: us.summary(b[f"{arm}_{k}"]) for k in (0, 1)} for arm in ("tstr", "trtr")},
            "ratio": {names[k]: us.ratio(b[f"tstr_{k}"], b[f"trtr_{k}"]) for k in (0, 1)},
        }
    # landmarks
    rl, sl = np.flatnonzero(train.has_keypoints), np.flatnonzero(synth.has_keypoints)
    ls = LandmarkScores(holdout)
    n = min(len(rl), len(sl))
    detectors: dict = {}
    if n < 4 or len(ls) < 2:
        res["landmarks"] = {"skipped": f"{len(rl)} real / {len(sl)} synthetic training images with all 23 keypoints "
                                       f"and {len(ls)} holdout images with keypoints (need >= 4, >= 4 and >= 2)"}
        return res, detectors
    log(f"evaluate: utility: landmark detector, TSTR vs TRTR on {n} images each, {uc.seeds} seeds")
    scores: dict[str, list[dict]] = {"tstr": [], "trtr": []}
    for i in range(uc.seeds):
        for arm, s, pool in (("tstr", synth, sl), ("trtr", train, rl)):
            idx = _subset(_seed_rng(uc, i, 3 if arm == "tstr" else 4), pool, n)
            predict = fit_detector(s.pixels[idx], s.keypoints[idx], uc, uc.seed + i)
            pred = predict(ls.pixels)
            scores[arm].append(ls.score(pred))
            if i == 0:
                detectors[arm] = pred
    keys = ("mre_px", "mre_share", "angle_abs_error_deg")
    stats = {f"{arm}|{k}": (lambda si, ix, arm=arm, k=k: _nanmean_at(scores[arm][si][k], ix))
             for arm in scores for k in keys}
    b = us.paired_bootstrap(stats, uc.seeds, len(ls), uc.bootstrap, uc.seed + 1)
    res["landmarks"] = {
        "n_train": n, "n_holdout": len(ls), "steps": steps_taken(uc, uc.detector_steps, n),
        "detector_size": uc.detector_size,
        "vertebral_height_px": float(np.nanmean(ls.heights)),
        **{arm: {k: us.summary(b[f"{arm}|{k}"]) for k in keys} for arm in ("tstr", "trtr")},
        "ratio": {k: us.ratio(b[f"tstr|{k}"], b[f"trtr|{k}"]) for k in keys},
        "ratio_note": "errors: TSTR / TRTR above 1 means the synthetic-trained detector is worse",
    }
    detectors["scores"] = ls
    return res, detectors


def augment_plan(n_real: int, n_synth: int, uc) -> tuple[int, list[float], list[float]]:
    """(real base size, multipliers kept, multipliers dropped) for the augmentation curve."""
    mults = sorted(set(float(m) for m in uc.augment_multipliers) | {0.0})
    top = max(mults)
    if uc.augment_real is not None:
        base = min(uc.augment_real, n_real)
    elif top > 0:
        base = min(n_real, max(uc.augment_min_real, int(n_synth // top)))
    else:
        base = n_real
    kept = [m for m in mults if round(m * base) <= n_synth]
    return base, kept, [m for m in mults if m not in kept]


def _augmentation(train, holdout, synth, uc, log) -> dict:
    both_r = np.flatnonzero(train.has_curvature & train.has_keypoints)
    both_s = np.flatnonzero(synth.has_curvature & synth.has_keypoints)
    hc = np.flatnonzero(holdout.has_curvature)
    ls = LandmarkScores(holdout)
    base, kept, dropped = augment_plan(len(both_r), len(both_s), uc)
    if base < 4 or len(kept) < 2 or len(hc) < 2 or len(ls) < 2:
        return {"skipped": f"{len(both_r)} real / {len(both_s)} synthetic images with curvature and keypoints, "
                           f"base {base}, multipliers that fit {kept}: need a base >= 4 and >= 2 points"}
    log(f"evaluate: utility: augmentation curve, {base} real + {[round(m * base) for m in kept]} synthetic images, "
        f"{uc.augment_seeds} seeds")
    h_true = holdout.curvature[hc] - 1
    preds: dict[float, list] = {m: [] for m in kept}
    lms: dict[float, list] = {m: [] for m in kept}
    for i in range(uc.augment_seeds):
        real_idx = _subset(_seed_rng(uc, i, 5), both_r, base)
        for m in kept:
            syn_idx = _subset(_seed_rng(uc, i, 6), both_s, int(round(m * base)))[: int(round(m * base))]
            px = np.concatenate([train.pixels[real_idx], synth.pixels[syn_idx]])
            cv = np.concatenate([train.curvature[real_idx], synth.curvature[syn_idx]])
            kp = np.concatenate([train.keypoints[real_idx], synth.keypoints[syn_idx]])
            net = fit_classifier(px, cv - 1, CLASSES, uc, uc.seed + i)
            preds[m].append(predict_proba(net, holdout.pixels[hc]).argmax(1))
            lms[m].append(ls.score(fit_detector(px, kp, uc, uc.seed + i)(ls.pixels)))
    bc = us.paired_bootstrap({m: (lambda si, ix, m=m: us.class_scores(h_true[ix], preds[m][si][ix], CLASSES)[0])
                              for m in kept}, uc.augment_seeds, len(hc), uc.bootstrap, uc.seed + 2, strata=h_true)
    bl = {k: us.paired_bootstrap({m: (lambda si, ix, m=m, k=k: _nanmean_at(lms[m][si][k], ix)) for m in kept},
                                 uc.augment_seeds, len(ls), uc.bootstrap, uc.seed + 3) for k in ("mre_px", "mre_share")}
    points = []
    for m in kept:
        points.append({"multiplier": m, "n_real": base, "n_synthetic": int(round(m * base)),
                       "balanced_accuracy": us.summary(bc[m]), "mre_px": us.summary(bl["mre_px"][m]),
                       "mre_share": us.summary(bl["mre_share"][m]),
                       "balanced_accuracy_change_vs_0x": us.difference(bc[m], bc[0.0]),
                       "mre_share_change_vs_0x": us.difference(bl["mre_share"][m], bl["mre_share"][0.0])})
    return {"n_real": base, "real_pool": len(both_r), "synthetic_pool": len(both_s), "points": points,
            "dropped_multipliers": dropped, "n_holdout": {"curvature": len(hc), "landmarks": len(ls)},
            "steps": {"classifier": uc.classifier_steps, "detector": uc.detector_steps},
            "note": (f"the real base is {base} of {len(both_r)} real training images so that the largest multiplier "
                     f"fits the {len(both_s)} synthetic images" if base < len(both_r) else "all real training images")
            + (f"; multipliers {dropped} need more synthetic images than there are" if dropped else "")}


def _measurement(train, holdout, synth, detectors) -> tuple[dict, dict | None]:
    """The angle comparison and Bland-Altman entry, and the per-image angle pairs on real holdout images for
    the team-only figure (kept out of utility.json: they are measurements of real radiographs)."""
    r_ang = c2c7_angles_array(train.keypoints, KEYPOINT_LABELS)
    s_ang = c2c7_angles_array(synth.keypoints, KEYPOINT_LABELS)
    out = {"angle": "C2-C7 Cobb angle (degrees, lordosis positive; evaluation.measurements)",
           "distributions": us.angle_distributions(r_ang, train.curvature, s_ang, synth.curvature,
                                                   sorted(CURVATURE_CLASSES))}
    ls = detectors.get("scores")
    if ls is None:
        out["bland_altman"] = {"skipped": "no landmark detectors were trained (see tstr.landmarks)"}
        return out, None
    pairs = {"true": ls.true_angle, **{arm: c2c7_angles_array(detectors[arm], KEYPOINT_LABELS) for arm in ("tstr", "trtr")}}
    out["bland_altman"] = {"synthetic_trained": bland_altman(pairs["tstr"], pairs["true"]),
                           "real_trained": bland_altman(pairs["trtr"], pairs["true"]),
                           "seed": "first TSTR / TRTR seed", "reference": "annotated angle of the real holdout image"}
    return out, pairs
