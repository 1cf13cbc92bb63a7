"""Verification step of the audit's ``copydetect`` method: align a query image to a candidate training image
and measure how alike they are once aligned.

Where it sits: privacy/copydetect.py calls :func:`similarity` for each query and each of its candidates (the
top-k of privacy/sscd.py's embedding). The result is a similarity in [-1, 1]; the method's distance is
``1 - similarity``, calibrated on holdout images like every other method (privacy/calibrate.py).

Decisions (measured on 64 px phantoms under privacy/power.py's families):
- Alignment: OpenCV's ECC (``findTransformECC``, affine, invariant to brightness/contrast) of the query onto
  the candidate, started from several zooms (0.93, 1.0, 1.1, 1.22: copies are cropped or zoomed up to ~25%)
  each with the shift from phase correlation, refined coarse (at half resolution); the plausible start with the best
  ECC correlation is then refined fine (no smoothing), and only that warp is scored (a quarter of the cost
  of scoring every start).
- Only plausible warps count: rotation under 8 degrees, scales 0.8-1.4 with near-equal axes, shear under
  0.15. A warp outside that range is not a copy's transform, and letting ECC bend a distinct image freely
  onto a training image made distinct pairs correlate like copies.
- Similarity: pixels inside the warped query's frame (eroded) and not clipped black/white in it (black fill
  of a shift or zoom-out, a clipped window) are rank-normalised in both images (blind to gamma, window/level,
  any monotone curve), band-passed with a difference of Gaussians (0.7 and 16 px at 64 px side, scaled with
  the side), and correlated after trimming the 20% of pixels with the largest standardised residual (burned-in
  text and markers, fill the mask missed). The best over the plausible starts is kept.
"""

from __future__ import annotations

import numpy as np

ZOOMS = (0.93, 1.0, 1.1, 1.22)
TRIM = 0.2
DOG = (0.7, 16.0)  # at a 64 px side
MIN_AREA = 0.3  # share of the image that must remain compared


def warp_params(w: np.ndarray) -> tuple[float, float, float, float]:
    """(rotation degrees, x scale, y scale, shear) of a 2x3 affine matrix."""
    a = w[:, :2].astype(np.float64)
    sx = float(np.hypot(*a[:, 0]))
    det = float(np.linalg.det(a))
    rot = float(np.degrees(np.arctan2(a[1, 0], a[0, 0])))
    sy = det / sx if sx else 0.0
    shear = float((a[0, 0] * a[0, 1] + a[1, 0] * a[1, 1]) / det) if det else 1e9
    return rot, sx, sy, shear


def plausible(w: np.ndarray) -> bool:
    rot, sx, sy, shear = warp_params(w)
    return (abs(rot) < 8 and 0.8 < sx < 1.4 and 0.8 < sy < 1.4 and abs(shear) < 0.15
            and abs(np.log(sx / sy)) < 0.15)


def _to_half(w: np.ndarray) -> np.ndarray:
    """A warp between full-size images as the same warp between images area-halved (pixel centres kept)."""
    h = w.copy()
    h[:, 2] = (w[:, :2] @ np.array([0.5, 0.5], np.float32) + w[:, 2] - 0.5) / 2
    return h


def _from_half(h: np.ndarray) -> np.ndarray:
    w = h.copy()
    w[:, 2] = 2 * h[:, 2] - h[:, :2] @ np.array([0.5, 0.5], np.float32) + 0.5
    return w


def alignments(ref: np.ndarray, query: np.ndarray) -> list[np.ndarray]:
    """Plausible affine warps (2x3, reference coordinates -> query coordinates) of ``query`` onto ``ref``:
    a coarse ECC at half resolution from every start, then a fine one at full resolution from the best
    plausible coarse warp (at most one warp)."""
    import cv2

    R = ref.shape[0]
    c = (R - 1) / 2
    coarse = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
    fine = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    rs = cv2.GaussianBlur(ref, (0, 0), R / 64)
    half = (R // 2, R // 2)
    ref_h = cv2.resize(ref, half, interpolation=cv2.INTER_AREA)
    query_h = cv2.resize(query, half, interpolation=cv2.INTER_AREA)
    best, best_cc = None, -np.inf
    for z in ZOOMS:
        w = np.array([[1 / z, 0, c * (1 - 1 / z)], [0, 1 / z, c * (1 - 1 / z)]], np.float32)
        qz = cv2.warpAffine(query, w, (R, R), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        (dx, dy), _ = cv2.phaseCorrelate(rs, cv2.GaussianBlur(qz, (0, 0), R / 64))
        w[0, 2] += dx
        w[1, 2] += dy
        try:
            cc, wh = cv2.findTransformECC(ref_h, query_h, _to_half(w), cv2.MOTION_AFFINE, coarse, None, 3)
        except cv2.error:  # no convergence (flat or unrelated images)
            continue
        w = _from_half(wh)
        if plausible(w) and cc > best_cc:
            best, best_cc = w, cc
    if best is None:
        return []
    try:
        _, w = cv2.findTransformECC(ref, query, best, cv2.MOTION_AFFINE, fine, None, 1)
    except cv2.error:
        return [best]
    return [w] if plausible(w) else [best]


def _ranks(v: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(v, kind="stable"), kind="stable").astype(np.float32)


def _zscore(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() + 1e-9)


def aligned_similarity(ref: np.ndarray, query: np.ndarray, w: np.ndarray) -> float:
    """Trimmed correlation of rank-normalised, band-passed ``ref`` and ``query`` warped by ``w`` (see module)."""
    import cv2

    R = ref.shape[0]
    qw = cv2.warpAffine(query, w, (R, R), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    frame = cv2.warpAffine(np.ones_like(query), w, (R, R), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    m = cv2.erode((frame > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    m &= (qw > 0.002) & (qw < 0.998)
    if m.sum() < MIN_AREA * R * R:
        return -1.0
    a, b = np.zeros_like(ref), np.zeros_like(ref)
    a[m], b[m] = _ranks(ref[m]), _ranks(qw[m])
    lo, hi = DOG[0] * R / 64, DOG[1] * R / 64
    ra = (cv2.GaussianBlur(a, (0, 0), lo) - cv2.GaussianBlur(a, (0, 0), hi))[m]
    rb = (cv2.GaussianBlur(b, (0, 0), lo) - cv2.GaussianBlur(b, (0, 0), hi))[m]
    res = np.abs(_zscore(ra) - _zscore(rb))
    keep = res <= np.quantile(res, 1 - TRIM)
    return float(np.corrcoef(ra[keep], rb[keep])[0, 1])


def similarity(ref: np.ndarray, query: np.ndarray) -> float:
    """Best aligned similarity of float32 ``query`` to ``ref`` (both [R, R] in [0, 1]); -1 when no plausible
    alignment exists."""
    best = -1.0
    for w in alignments(ref, query):
        s = aligned_similarity(ref, query, w)
        if np.isfinite(s):
            best = max(best, s)
    return best
