"""Third and fourth verification measures of the audit's ``copydetect`` method: what is left of the query once
the aligned candidate is rendered the way the query looks.

Where it sits: privacy/align.py's :func:`~privacy.align.aligned_similarities` calls :func:`unexplained` at
ECC's warp, beside its two band correlations; privacy/copydetect.py scales each measure by the
holdout and lets the nearest count, exactly as for the bands.

The idea (analysis by synthesis): a copy is its source after a blur, an intensity curve and noise (plus a warp,
which privacy/align.py has undone, and burned-in pixels, which are left out). So blur the candidate at the
sigma that fits best (:data:`SIGMAS`), map it through the best cubic of its intensity (gamma, window/level and
brightness are smooth monotone curves), and look at the residual ``query - rendered candidate``. For a copy
that residual is the added noise and interpolation error: little of it survives a low-pass. For a distinct
image it is the anatomy that differs, which is smooth. Two numbers, both 0 for a perfect match:

- ``structure``: the residual's low-passed energy (Gaussian, :data:`LOWPASS` px at 64 px) over what white
  noise of the residual's variance would leave after the same low-pass (``var / (4 pi sigma^2)``): about 1
  for a noisy copy, well above 1 for a distinct image, whatever the noise level;
- ``low``: the same low-passed residual energy over the query's variance, for copies without noise, whose
  residual is too small to be called white or not.

Measured on the test_copy_recall setup (copydetect alone, the same candidates and ECC warps scored with and
without these two measures beside the bands; 300 distinct images), for the embeddings of seeds 0 and 1:
crop + sharpen + window/level + text 0.95 -> 0.98 and 0.94 -> 0.96, zoom + shear + denoise + gamma + JPEG
0.95 -> 0.97 and 0.95 -> 0.99, the single families' lowest 0.99 -> 1.00 in both, rotation + shift + blur +
gamma (0.99) and "everything" (0.85 and 0.80) unchanged, no distinct image flagged before or after. Each
measure alone as a third band: ``structure`` gains the crop + overlay points, ``low`` the zoom + shear ones.
Tried beside them: the fit's R squared (same gain as ``low``, not both), the residual's variance over the
query's noise level estimated from its highest frequencies (Immerkaer; +3 on crop + overlay but a distinct
image flagged), and each measure alone instead of the bands (far worse: 0.54-0.59 on two combinations).
Taken at ECC's warp only (privacy/align.py's :func:`~privacy.align.similarities`): at the identity too, as
the bands are, changed nothing. Cost: about 1.5 ms per scored warp at 64 px (six least-squares fits of 4
columns and the blurs), about 1 ms more per verified candidate (a single-thread A/B; `make bench`'s figure
moved less than this machine's variance). On the demo (64 holdout images, 20 copies per family) one holdout
image came close in ``low`` and lowered copydetect's threshold from 0.86 to 0.77: "everything" 0.95 -> 0.80
there. Over 30 random 64-image holdouts of the test_copy_recall setup per embedding the measures moved
"everything" by -0.03 to +0.02 (median +0.01) and raised the other combinations by 2-3 points on average.

Scaled by how close holdout images come (privacy/copydetect.py), so the constants in the two ratios cancel.
"""

from __future__ import annotations

import numpy as np

#: Gaussian blurs (sigma in px at a 64 px side) the candidate is rendered at; the best fit counts
SIGMAS = (0.0, 0.6, 0.9, 1.2, 1.6, 2.1)
#: sigma (px at 64 px) of the low-pass applied to the residual
LOWPASS = 2.0
#: degree of the intensity curve fitted from the candidate's (z-scored) values to the query's
DEGREE = 3
#: the measures' value where too little of the image is left to compare (far from any threshold)
NO_FIT = 1e6
#: share of the image that must remain compared (as privacy/align.py's MIN_AREA)
MIN_AREA = 0.2
NAMES = ("residual structure", "residual low-pass")


def _fit(ref: np.ndarray, y: np.ndarray, m: np.ndarray, R: int) -> np.ndarray:
    """``ref`` blurred at the best of :data:`SIGMAS` and mapped through the least-squares cubic onto ``y``
    (the query's values at the pixels of ``m``): the candidate rendered like the query, as a whole image."""
    import cv2

    best_rv, best = np.inf, None
    for s in SIGMAS:
        tb = ref if s == 0 else cv2.GaussianBlur(ref, (0, 0), s * R / 64)
        v = tb[m].astype(np.float64)
        mu, sd = v.mean(), v.std() + 1e-9
        X = np.vander((v - mu) / sd, DEGREE + 1)
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        rv = float(((y - X @ coef) ** 2).mean())
        if rv < best_rv:
            best_rv, best = rv, (tb, mu, sd, coef)
    tb, mu, sd, coef = best
    return np.polyval(coef, (tb.astype(np.float64) - mu) / sd)


def unexplained(ref: np.ndarray, query_warped: np.ndarray, frame: np.ndarray, burned: np.ndarray) -> np.ndarray:
    """``[structure, low]`` (see the module docstring) of ``query_warped`` (the query in ``ref``'s frame) against
    ``ref``, over the pixels inside ``frame`` (where the warped query has pixels, less a 2 px edge) and not in
    ``burned`` (privacy/align.py's burned-in pixels); :data:`NO_FIT` for both where under :data:`MIN_AREA` of
    the image would remain."""
    import cv2

    R = ref.shape[0]
    k = np.ones((5, 5), np.uint8)
    m = (cv2.erode(frame.astype(np.uint8), k) > 0) & ~burned
    if m.sum() < MIN_AREA * R * R:
        return np.full(len(NAMES), NO_FIT)
    y = query_warped[m].astype(np.float64)
    r = np.where(m, query_warped - _fit(ref, y, m, R), 0.0).astype(np.float32)
    rv = float((r[m].astype(np.float64) ** 2).mean())
    g = LOWPASS * R / 64
    # normalised convolution: the low-pass of the residual inside the mask only
    low = cv2.GaussianBlur(r, (0, 0), g) / np.maximum(cv2.GaussianBlur(m.astype(np.float32), (0, 0), g), 1e-3)
    inner = cv2.erode(m.astype(np.uint8), k) > 0
    if inner.sum() < 50:
        return np.full(len(NAMES), NO_FIT)
    energy = float((low[inner].astype(np.float64) ** 2).mean())
    return np.array([energy * 4 * np.pi * g * g / (rv + 1e-12), energy / (y.var() + 1e-12)])
