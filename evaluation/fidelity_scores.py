"""Scores of control and label fidelity: confusion matrices, accuracies, landmark radial errors, their ratios.

Where it sits: evaluation/, pure arithmetic under evaluation.fidelity (which trains the networks and
feeds their predictions here). Arrays in, numbers and JSON-ready dicts out; no I/O, no torch.

Decisions:
- Accuracy ratio. Conditional sampling asks for classes in its own mix (often balanced), while real
  holdout images follow the data's mix (the CSXA set is 42% lordotic). Plain holdout accuracy would then
  compare a different class mix, so the ratio's denominator is the holdout accuracy *reweighted to the
  synthetic set's requested mix*: sum over classes c of w_c x recall_holdout(c), w_c the share of synthetic
  images requested as c, over the classes present in both sets (:func:`mix_accuracy`). Plain and balanced
  accuracies are reported beside it.
- Landmark error scale. The mean radial error (MRE) is reported in pixels and as a share of the image's
  mean C3-C7 vertebral body height (:func:`vertebral_heights`, from the reference keypoints: the true ones
  for real images, the released ones for synthetic), so a generator that draws spines larger or smaller
  is not judged by their size. The MRE ratio uses the share.
- Intervals. Accuracies get a Wilson 95% interval; ratios get a percentile bootstrap 95% interval
  (images resampled with replacement within each set, holdout images within each class for the
  reweighted accuracy; the networks are not retrained, so the interval covers the test sets' sampling,
  not training variance).
"""

from __future__ import annotations

import math

import numpy as np

#: Keypoint labels of the vertebral bodies whose heights give the scale (C3-C7, CSXA order; see
#: cspine/labels.py: "C{v} top left", "C{v} top right", "C{v} bottom left", "C{v} bottom right").
LEVELS = (3, 4, 5, 6, 7)


def confusion(true: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """Counts ``[classes, classes]``: row = true (requested) class, column = predicted, classes 0..classes-1."""
    t, p = np.asarray(true, np.int64), np.asarray(pred, np.int64)
    if t.shape != p.shape:
        raise ValueError(f"true and predicted labels differ in shape: {t.shape} vs {p.shape}")
    cm = np.zeros((classes, classes), np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def recalls(cm: np.ndarray) -> np.ndarray:
    """Per-class recall (diagonal / row sum); NaN for a class with no images."""
    rows = cm.sum(1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(cm) / np.maximum(rows, 1), np.nan)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion k/n ((nan, nan) when n = 0)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def mix_weights(requested: np.ndarray, classes: int, present: np.ndarray | None = None) -> np.ndarray:
    """Share of each class in ``requested`` (length ``classes``), restricted to ``present`` classes (bool mask)
    and renormalised; zeros when nothing is left."""
    w = np.bincount(np.asarray(requested, np.int64), minlength=classes).astype(np.float64)
    if present is not None:
        w = np.where(present, w, 0.0)
    return w / w.sum() if w.sum() > 0 else w


def mix_accuracy(true: np.ndarray, correct: np.ndarray, weights: np.ndarray) -> float:
    """Accuracy of a labelled set reweighted to the class mix ``weights``: sum_c w_c x mean(correct | class c)
    (classes with weight 0 or no image of the set are left out and the rest renormalised)."""
    t, c = np.asarray(true, np.int64), np.asarray(correct, bool)
    num = den = 0.0
    for k, w in enumerate(weights):
        sel = t == k
        if w > 0 and sel.any():
            num += w * c[sel].mean()
            den += w
    return num / den if den > 0 else math.nan


def classification_summary(true: np.ndarray, pred: np.ndarray, classes: int) -> dict:
    """Confusion matrix, accuracy with Wilson interval, balanced accuracy and per-class recall of one set."""
    cm = confusion(true, pred, classes)
    n, k = int(cm.sum()), int(np.trace(cm))
    rec = recalls(cm)
    return {"n": n, "accuracy": k / n if n else math.nan, "accuracy_ci95": list(wilson(k, n)),
            "balanced_accuracy": float(np.nanmean(rec)) if np.isfinite(rec).any() else math.nan,
            "recall": [None if not np.isfinite(r) else float(r) for r in rec], "confusion": cm.tolist()}


def accuracy_ratio(h_true: np.ndarray, h_pred: np.ndarray, s_true: np.ndarray, s_pred: np.ndarray, classes: int,
                   boot: int = 1000, seed: int = 0, scorable: np.ndarray | None = None) -> dict:
    """Synthetic accuracy / holdout accuracy reweighted to the synthetic requested mix, with a bootstrap interval.

    Only classes with holdout images (and in ``scorable``, e.g. the classes the classifier was trained on)
    count, on both sides; the others are listed in ``classes_left_out`` (1-based)."""
    h_true, s_true = np.asarray(h_true, np.int64), np.asarray(s_true, np.int64)
    h_ok, s_ok = np.asarray(h_pred) == h_true, np.asarray(s_pred) == s_true
    present = np.bincount(h_true, minlength=classes) > 0
    if scorable is not None:
        present &= np.asarray(scorable, bool)
    w = mix_weights(s_true, classes, present)
    left_out = sorted(int(c) + 1 for c in np.unique(s_true) if not present[c])
    den = mix_accuracy(h_true, h_ok, w)
    s_sel = present[s_true]  # synthetic images of classes the holdout set can score
    num = float(s_ok[s_sel].mean()) if s_sel.any() else math.nan
    ratio = num / den if den > 0 else math.nan
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(h_true == c) for c in range(classes)]
    s_idx = np.flatnonzero(s_sel)
    vals = []
    for _ in range(boot if s_idx.size and np.isfinite(ratio) else 0):
        hb = np.concatenate([rng.choice(ix, ix.size) for ix in by_class if ix.size])
        d = mix_accuracy(h_true[hb], h_ok[hb], w)
        n = s_ok[rng.choice(s_idx, s_idx.size)].mean()
        if d > 0:
            vals.append(n / d)
    return {"ratio": ratio, "ci95": _pct(vals), "synthetic_accuracy": num, "holdout_accuracy_at_synthetic_mix": den,
            "weights": [round(float(x), 4) for x in w], "classes_left_out": left_out, "bootstrap": len(vals)}


def vertebral_heights(keypoints: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """Per image, the mean C3-C7 vertebral body height in pixels: per level the mean of the anterior
    (top left - bottom left) and posterior (top right - bottom right) edge lengths, averaged over levels
    (missing points ignored; NaN when no edge is complete). ``keypoints`` [n, K, 2] in ``labels`` order."""
    kp = np.asarray(keypoints, np.float64)
    pos = {name: i for i, name in enumerate(labels)}
    edges = []
    for v in LEVELS:
        for side in ("left", "right"):
            top, bottom = pos[f"C{v} top {side}"], pos[f"C{v} bottom {side}"]
            edges.append(np.linalg.norm(kp[:, top] - kp[:, bottom], axis=-1))
    return _nanmean_rows(np.stack(edges, 1))


def radial_errors(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Euclidean distance per image and point ``[n, K]`` (NaN where the reference point is missing)."""
    p, r = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    if p.shape != r.shape:
        raise ValueError(f"predicted and reference keypoints differ in shape: {p.shape} vs {r.shape}")
    return np.linalg.norm(p - r, axis=-1)


def per_image_mre(errors: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: mean radial error in px over its known points, and that as a share of its vertebral height."""
    mre = _nanmean_rows(errors)
    return mre, mre / np.where(np.asarray(heights) > 0, heights, np.nan)


def mre_summary(errors: np.ndarray, heights: np.ndarray, labels: tuple[str, ...]) -> dict:
    """MRE of one set: mean (and median) over images of the per-image MRE, in px and as a share of vertebral
    height, the share of points within 1/4 of a vertebral height, and the MRE per keypoint label."""
    mre, share = per_image_mre(errors, heights)
    ok = np.isfinite(share)
    within = errors / np.where(heights > 0, heights, np.nan)[:, None] <= 0.25
    known = np.isfinite(errors)
    per_point = _nanmean_rows(errors.T)
    return {"n_images": int(ok.sum()), "n_points": int(known.sum()),
            "mre_px": float(np.nanmean(mre)) if ok.any() else math.nan,
            "median_px": float(np.nanmedian(mre)) if ok.any() else math.nan,
            "mre_share_of_vertebral_height": float(share[ok].mean()) if ok.any() else math.nan,
            "vertebral_height_px": float(np.nanmean(heights)) if np.isfinite(heights).any() else math.nan,
            "share_within_quarter_height": float(within[known].mean()) if known.any() else math.nan,
            "mre_px_by_point": {name: (None if not np.isfinite(v) else round(float(v), 4))
                                for name, v in zip(labels, per_point)}}


def mre_ratio(h_share: np.ndarray, s_share: np.ndarray, boot: int = 1000, seed: int = 0) -> dict:
    """Mean synthetic per-image MRE share / mean holdout one, with a bootstrap interval (NaN images left out)."""
    h, s = np.asarray(h_share, np.float64), np.asarray(s_share, np.float64)
    h, s = h[np.isfinite(h)], s[np.isfinite(s)]
    if not (h.size and s.size) or h.mean() <= 0:
        return {"ratio": math.nan, "ci95": [math.nan, math.nan], "bootstrap": 0}
    rng = np.random.default_rng(seed)
    vals = [s[rng.integers(0, s.size, s.size)].mean() / d for _ in range(boot)
            if (d := h[rng.integers(0, h.size, h.size)].mean()) > 0]
    return {"ratio": float(s.mean() / h.mean()), "ci95": _pct(vals), "bootstrap": len(vals)}


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Mean of each row over its finite entries; NaN for a row without any."""
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a)
    n = ok.sum(1)
    return np.where(n > 0, np.where(ok, a, 0.0).sum(1) / np.maximum(n, 1), np.nan)


def _pct(vals: list[float]) -> list[float]:
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if vals else [math.nan, math.nan]
