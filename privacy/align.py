"""Verification step of the audit's ``copydetect`` method: align a query image to a candidate training image
and measure how alike they are once aligned.

Where it sits: privacy/copydetect.py calls :func:`similarities` for each query and each of its candidates (the
top-k of privacy/sscd.py's embedding). The result is a similarity in [-1, 1] per band; the method turns it
into a distance scaled by the holdout's and calibrated like every other method (privacy/calibrate.py).

Decisions (measured on 64 px phantoms under privacy/power.py's families):
- Alignment: OpenCV's ECC (``findTransformECC``, affine, invariant to brightness/contrast) of the query onto
  the candidate, started from several zooms (0.93, 1.0, 1.1, 1.22 times the candidate's size: copies are
  cropped or zoomed in up to ~25%, zoomed out up to 10%; the starts were the inverses until measured: the
  6-20% crops then came out at 0.96 instead of 0.99, the crop + overlay combination 0.83 instead of 0.88) each
  with the shift from phase correlation, refined coarse (at half resolution); the plausible start with the
  best ECC correlation is then refined fine (no smoothing), and only that warp (and the identity, below) is
  scored (a quarter of the cost of scoring every start). When no affine start stays plausible (burned-in text,
  a clipped window and black fill pull the free affine ECC into a squashed warp), the start whose phase
  correlation peaks highest keeps its zoom and ECC fits only rotation and shift (``MOTION_EUCLIDEAN``) before
  the fine affine step (one more ECC run: distinct images mostly take this path, so it is not repeated from
  every start): measured on the "everything" family, the true source then aligns for 94 of 96 copies instead
  of 69.
- Phase correlation runs on Hann-windowed images (``cv2.createHanningWindow``). Unwindowed, the image
  borders and the phantoms' collimation edges decided the shift: for a 20% crop every start came out 10-48 px
  off with a peak near 0, no ECC start converged to a plausible warp, and the copy was missed by every
  network. Measured with copydetect alone on the test_copy_recall setup, the same candidates scored both
  ways, for three embeddings (seeds 0, 1, 2): rotation + shift + blur + gamma 0.97 / 0.96 / 0.96 -> 0.99 in
  each, "everything" 0.80 / 0.76 / 0.78 -> 0.85 / 0.78 / 0.83, 6-20% crops 0.99 -> 1.00 in each; lower:
  crop + sharpen + window/level + text 0.97 / 0.94 / 0.96 -> 0.96 / 0.93 / 0.95, zoom + shear + denoise +
  gamma + JPEG 0.96 / 0.94 / 0.97 -> 0.95 / 0.93 / 0.95; distinct images flagged 1 / 0 / 1 -> 0 / 0 / 0 of
  300. Tried beside it: the unwindowed shifts as four more starts (seed 0: 0.99 / 0.95 / 0.97 / 0.86, 17%
  more verification time) and six zoom starts instead of four (0.99 / 0.96 / 0.96 / 0.84, every single
  family 1.00); neither clearly better.
- Every ECC fit leaves out the query's burned-in pixels (:func:`_burned_in`: clipped black or white,
  which is also a shift's black fill, and text), grown by one pixel for their blurred edges (:func:`_ecc`).
  A clipped window, text and fill have no counterpart in the candidate, and fitted with the rest they pulled
  ECC off: replaying privacy/power.py's draws, the "everything" copies scored at their true warp were
  flagged 0.95 of the time but at ECC's unmasked warp 0.57 (phantom-6, each band then scaled by its
  closest holdout image; tests/privacy/test_copydetect.py has one such copy). Masked: 0.73, crop + sharpen +
  window/level + text 0.90 -> 0.95, the other combinations and families within a point (copydetect alone,
  test_copy_recall setup); without growing the mask 0.68. Where under 30% of the query is left, or the
  masked fit does not converge, the unmasked fit runs. (Tried on phantom-5 without that fallback, masking
  lost more alignments than it gained.) Cost, `make bench`'s copydetect figure on one day: 7.7-9.6 ms per
  verified candidate against 7.3-8.7 ms unmasked (two runs each). Tried beside it and left out: scoring a
  rotation + shift fit (``MOTION_EUCLIDEAN``) beside the affine one (everything 0.59: distinct pairs gain
  more from a second warp than copies), rotated starts (-4, 0, 4 degrees at each zoom, the four best by
  phase correlation: 0.54), and refusing warps whose axes differ in scale by over 5% (copies never do;
  0.64).
- Only plausible warps count: rotation under 8 degrees, scales 0.8-1.4 with near-equal axes, shear under
  0.15. A warp outside that range is not a copy's transform, and letting ECC bend a distinct image freely
  onto a training image made distinct pairs correlate like copies.
- Similarity: pixels inside the warped query's frame (eroded) and not clipped black/white in it (black fill of a
  shift or zoom-out, a clipped window) are rank-normalised in both images (blind to gamma, window/level, any
  monotone curve; equal values share their mean rank: ranks broken by pixel order turned an exactly flat display
  shutter into a ramp, structure neither image has, and averaging them lifted copydetect's recall of the zoom +
  shear + denoise + gamma + JPEG copies from 0.88 to 0.90 and of the everyday combination from 0.95 to 0.97 on
  test_copy_recall, nothing lower, no distinct image flagged), band-passed with a difference of Gaussians, and
  correlated after trimming the 20% of pixels with the largest standardised residual (burned-in text and
  markers, fill the mask missed). Small clipped components (under 3% of the image: text, markers) are masked
  with a one-pixel ring, their anti-aliased edge (measured: "everything" 0.14 -> 0.28, the single families
  unchanged or better; dilating every clipped area instead cost window/level recall).
- At least a fifth of the image must remain compared (:data:`MIN_AREA`) once the frame, clipped areas and
  text are masked; a pair with less scores -1. A narrow window that clips the soft tissue black leaves
  little more than the bones: with 0.3, such copies could not be found at all. Measured with copydetect
  alone (test_copy_recall setup, phantom-6): window/level 0.99 -> 1.00, crop + sharpen + window/level +
  text 0.88 -> 0.90, the closest holdout scores and the distinct images flagged unchanged (0.12 gave the
  same as 0.2).
- The identity is scored beside ECC's warp (unless ECC ended there): burned-in text pulls ECC off an unmoved
  copy. Measured on test_copy_recall: copydetect's recall of overlay copies 0.89 -> 1.00 (the audit's 0.94 ->
  1.00) and window/level 0.97 -> 0.98, with the holdout's closest scores in both bands unchanged (a distinct
  image is never closer at the identity than where ECC puts it). The cost: scoring one warp now takes 2.2
  ms instead of 2.8 (each image version is ranked, blurred and z-scored once for both bands), and `make
  bench` measures 4.2 ms per verified candidate against 3.1 ms with ECC's warp alone.
- Two bands at the same warp (:data:`BANDS`, sigmas in px at a 64 px side, scaled with the side): coarse
  (0.7-16 px), which keeps the layout and carries the noisy and JPEG copies, and fine (0.7-3 px), which keeps
  only the edges of the anatomy. privacy/copydetect.py scales each by the holdout and lets the nearer count.
  Measured on 3 candidates per image from a 1000-step embedding: distinct phantoms aligned onto each other
  still correlate at up to 0.996 in the coarse band but only 0.988 in the fine one, so the fine band alone
  catches 0.48 of the "everything" copies (coarse 0.29) but only 0.74 of the noisy ones (coarse 0.99). Tried
  beside them: 0.7-5, 1.5-6 and 3-16 px (no better as a second band; all five together flagged 1% of the
  distinct images), no trimming (worse everywhere), and a logistic combination of the band scores and the
  embedding cosine fitted on copies planted with another seed (no better than the two bands, worse with the
  cosine).
- Matched blur: a blurred copy has lost the fine detail its sharp source still has, and a sharpened one has
  gained some, so the score is the best of the comparisons as is, with the source blurred (sigma 0.8 or 1.4 px
  at 64 px) and with the query blurred (0.8 px); five or six blur levels measured no better. Measured
  (test_copy_recall setup, 6 candidates): recall of blur 0.90 -> 1.00, sharpen 0.91 -> 1.00,
  rotation+shift+blur+gamma 0.50 -> 0.89, zoom+shear+denoise+gamma+JPEG 0.76 -> 0.88, with no distinct image
  flagged. Tried and left out: a median or trimmed mean of per-patch (8 or 16 px) correlations (worse on every
  filtered family: phantoms differ less within a patch than a filter changes it), dense optical-flow magnitude
  after alignment (blur makes copies look displaced), masking saturated text/clipping out of ECC (then, on
  phantom-5 and without the fallback of :func:`_ecc`: more alignment failures), and adding the embedding cosine
  to the score (+0.02-0.06 on combinations but a false flag at 300 distinct images, with the 200-step embedding;
  privacy/copydetect.py multiplies by the 1000-step one's distance).
- What is still missed (phantom-6, test_copy_recall, the audit's defaults, with privacy/copydetect.py's
  embedding factor, the windowed phase correlation and privacy/residual.py's measures): of rotation + shift +
  blur + gamma copies 1%, of crop + sharpen + window/level + text 2%, of zoom + shear + denoise + gamma + JPEG
  3%, and of "everything" (rotation + zoom + shift + blur + window/level + text + noise) 15% (15-20% over two
  embeddings); before the residual measures 1 / 5 / 5 / 15%, before the window 3 / 5 / 4 / 16%, before the
  embedding factor 5 / 5 / 8 / 27%. Mostly alignment (these figures before all three):
  replaying privacy/power.py's draws to get each copy's true warp and scoring the copies there, the same
  threshold would flag 1.00 / 0.98 / - / 0.90 of them (the shear family's transposed draws were not
  replayed). Of the "everything" copies ECC misses, 4 in 20 get no plausible warp at all and the rest are
  off by 1.3 px in the median, often with unequal axis scales the copy does not have. On phantom-5 the
  score was the limit as much (0.63 at the true warp): two patients aligned matched bone for bone. Tried
  and left out on phantom-5: ECC on rank-equalised and/or blurred images (0.15-0.17), and a masked fine
  ECC pass alone (Gaussian 3 or 5, no fallback): "everything" 0.20 -> 0.29 but crop+overlay, window/level
  and the other combinations lost 3-7 points each.
- Why ECC ends off the true warp (measured 2026-12-02, test_copy_recall setup, seed-0 embedding): started at
  the true warp (replayed from privacy/power.py's draws), ECC drifts to 1.5 px (rotation + shift + blur +
  gamma) and 1.8 px ("everything") in the median, as the largest error over an 8 px grid; a rotation plus
  blur alone 0.8 px, and 1.3 px at a blur of 1.6 px even against the source blurred alike: on blurred copies
  ECC's optimum is not the true warp. Scored at the true warp, 0.95 of the "everything" copies would pass
  the threshold that ECC's warps give 0.85. Tried from ECC's warp and left out ("everything" at the same
  threshold): a second ECC against the candidate rendered like the query (privacy/residual.py's blur and
  cubic; 0.85), a trimmed ECC leaving out the 20% worst-fitting pixels (0.69-0.82), ECC on band-passed
  images (0.74-0.79), the mask grown around black fill (0.77-0.80), rotation starts of +-3 degrees (no
  nearer), and a local search (Powell, 60 evaluations) of the fine band's correlation itself: 0.95 for the
  copies' sources at the fixed threshold, but once the holdout's nearest candidates are searched alike (the
  calibration must see the same procedure) 0.87 against 0.85, at 0.1-0.2 s more per query.
"""

from __future__ import annotations

import numpy as np

from privacy import residual

ZOOMS = (0.93, 1.0, 1.1, 1.22)  # how much larger the copy shows the candidate (a 20% crop: 1.25)
TRIM = 0.2
#: difference-of-Gaussians bands (sigmas in px at a 64 px side) scored at the same warp: coarse, fine
BANDS = ((0.7, 16.0), (0.7, 3.0))
MIN_AREA = 0.2  # share of the image that must remain compared (see the module docstring)
MIN_ECC_AREA = 0.3  # share of the query that must remain unmasked for a masked ECC fit
REF_BLURS = (0.8, 1.4)  # Gaussian sigmas (px at a 64 px side) the source is also compared at
QUERY_BLURS = (0.8,)  # and the query
IDENTITY = np.eye(2, 3, dtype=np.float32)
#: what :func:`aligned_similarities` measures at a warp: the two bands, then privacy/residual.py's two
MEASURES = tuple(f"band {a:g}-{b:g} px" for a, b in BANDS) + residual.NAMES
#: each measure's value where too little of the image is left to compare
WORST = np.array([-1.0] * len(BANDS) + [1.0 - residual.NO_FIT] * len(residual.NAMES))
TEXT_AREA = 0.03  # clipped components smaller than this share of the image are text/markers (masked with a ring)


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


def _ecc_mask(query: np.ndarray) -> np.ndarray | None:
    """The pixels of ``query`` an ECC fit uses: all but its clipped areas, text and fill (:func:`_burned_in`,
    grown by a pixel); None where under :data:`MIN_ECC_AREA` of the query would remain."""
    import cv2

    keep = cv2.erode((~_burned_in(query)).astype(np.uint8), np.ones((3, 3), np.uint8))
    return keep if keep.mean() > MIN_ECC_AREA else None


def _ecc(ref: np.ndarray, query: np.ndarray, w: np.ndarray, motion: int, crit, blur: int,
         keep: np.ndarray | None):
    """``cv2.findTransformECC`` of ``query`` onto ``ref`` using only the pixels of ``keep``
    (:func:`_ecc_mask` of ``query``, computed once per image by the caller), where there is a mask and the
    masked fit converges; otherwise the unmasked fit (see the module docstring)."""
    import cv2

    if keep is not None:
        try:
            return cv2.findTransformECC(ref, query, w.copy(), motion, crit, keep, blur)
        except cv2.error:
            pass
    return cv2.findTransformECC(ref, query, w, motion, crit, None, blur)


def _coarse(ref_h: np.ndarray, query_h: np.ndarray, starts: list[np.ndarray], affine: bool) -> np.ndarray | None:
    """The plausible warp (full-size coordinates) with the best ECC correlation among coarse ECC runs at half
    resolution from ``starts``; ``affine=False`` keeps each start's zoom and lets ECC fit only a rotation and
    shift (``MOTION_EUCLIDEAN`` on the query zoomed by the start), composed back into an affine warp."""
    import cv2

    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
    half = ref_h.shape[::-1]
    best, best_cc = None, -np.inf
    keep = _ecc_mask(query_h) if affine else None  # the same query at every affine start
    for w in starts:
        try:
            if affine:
                cc, wh = _ecc(ref_h, query_h, _to_half(w), cv2.MOTION_AFFINE, crit, 3, keep)
            else:
                zoom = np.zeros((2, 3), np.float32)
                zoom[:, :2] = w[:, :2]
                zh = _to_half(zoom)  # the start's zoom about the origin, in half-size coordinates
                qz = cv2.warpAffine(query_h, zh, half, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
                e = np.eye(2, 3, dtype=np.float32)
                e[:, 2] = np.linalg.solve(w[:, :2], w[:, 2])  # the start's shift, before its zoom
                cc, eh = _ecc(ref_h, qz, _to_half(e), cv2.MOTION_EUCLIDEAN, crit, 3, _ecc_mask(qz))
                wh = (np.vstack([zh, [0, 0, 1]]) @ np.vstack([eh, [0, 0, 1]]))[:2].astype(np.float32)
        except cv2.error:  # no convergence (flat or unrelated images)
            continue
        w2 = _from_half(wh)
        if plausible(w2) and cc > best_cc:
            best, best_cc = w2, cc
    return best


def alignments(ref: np.ndarray, query: np.ndarray) -> list[np.ndarray]:
    """Plausible affine warps (2x3, reference coordinates -> query coordinates) of ``query`` onto ``ref``:
    a coarse ECC at half resolution from every start, then a fine one at full resolution from the best
    plausible coarse warp (at most one warp)."""
    import cv2

    R = ref.shape[0]
    c = (R - 1) / 2
    fine = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    rs = cv2.GaussianBlur(ref, (0, 0), R / 64)
    half = (R // 2, R // 2)
    ref_h = cv2.resize(ref, half, interpolation=cv2.INTER_AREA)
    query_h = cv2.resize(query, half, interpolation=cv2.INTER_AREA)
    window = cv2.createHanningWindow((R, R), cv2.CV_32F)  # apodised: the borders do not decide the shift
    starts, peaks = [], []
    for z in ZOOMS:
        w = np.array([[z, 0, c * (1 - z)], [0, z, c * (1 - z)]], np.float32)
        qz = cv2.warpAffine(query, w, (R, R), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        (dx, dy), peak = cv2.phaseCorrelate(rs, cv2.GaussianBlur(qz, (0, 0), R / 64), window)
        w[0, 2] += dx
        w[1, 2] += dy
        starts.append(w)
        peaks.append(peak)
    best = _coarse(ref_h, query_h, starts, affine=True)
    if best is None:  # affine ECC drifted (text, clipping, black fill): rotation + shift at the zoom whose
        best = _coarse(ref_h, query_h, [starts[int(np.argmax(peaks))]], affine=False)  # phase correlation peaks
    if best is None:
        return []
    try:
        _, w = _ecc(ref, query, best.copy(), cv2.MOTION_AFFINE, fine, 1, _ecc_mask(query))  # ECC writes into w
    except cv2.error:
        return [best]
    return [w] if plausible(w) else [best]


def _ranks(v: np.ndarray) -> np.ndarray:
    """0-based ranks of ``v``; equal values share their mean rank, so an exactly flat area stays flat instead
    of becoming a ramp in pixel order."""
    from scipy.stats import rankdata

    return (rankdata(v, method="average") - 1).astype(np.float32)


def _zscore(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() + 1e-9)


def _ranked(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x`` rank-normalised over the pixels of ``m`` (0 elsewhere)."""
    a = np.zeros_like(x)
    a[m] = _ranks(x[m])
    return a


def _bandpasses(a: np.ndarray, m: np.ndarray, R: int) -> list[np.ndarray]:
    """Per band of :data:`BANDS`, the difference of Gaussians of ``a`` at the pixels of ``m`` (sigmas in px at
    a 64 px side, scaled to ``R``); a sigma shared by several bands is blurred once."""
    import cv2

    blurred: dict[float, np.ndarray] = {}
    g = lambda s: blurred.setdefault(s, cv2.GaussianBlur(a, (0, 0), s * R / 64))  # noqa: E731
    return [(g(lo) - g(hi))[m] for lo, hi in BANDS]


def _trimmed_corr(za: np.ndarray, zb: np.ndarray) -> float:
    """Pearson correlation of two z-scored vectors after dropping the ``TRIM`` share of pixels where they
    differ most."""
    res = np.abs(za - zb)
    keep = res <= np.quantile(res, 1 - TRIM)
    a, b = za[keep], zb[keep]
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (np.sqrt((a @ a) * (b @ b)) + 1e-12))


def _burned_in(x: np.ndarray) -> np.ndarray:
    """Pixels of ``x`` clipped black or white, plus a one-pixel ring (at 64 px) around the small clipped
    components (text and markers: their anti-aliased edges are ink too)."""
    import cv2

    R = x.shape[0]
    sat = ((x <= 0.002) | (x >= 0.998)).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(sat, connectivity=8)
    small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < TEXT_AREA * R * R) + 1
    if not len(small):
        return sat > 0
    k = 2 * max(1, round(R / 64)) + 1
    ring = cv2.dilate(np.isin(lab, small).astype(np.uint8), np.ones((k, k), np.uint8))
    return (sat | ring) > 0


def aligned_similarities(ref: np.ndarray, query: np.ndarray, w: np.ndarray, residuals: bool = True) -> np.ndarray:
    """The :data:`MEASURES` of ``query`` warped by ``w`` against ``ref``: per band of :data:`BANDS`, the
    trimmed correlation of rank-normalised, band-passed images at the best of the matched blurs (see module;
    -1 where too little of the image remains), then ``1 -`` privacy/residual.py's unexplained structure and
    low-pass residual (1 - residual.NO_FIT where too little remains, or with ``residuals=False``, which skips
    them). Higher is closer in each."""
    import cv2

    R = ref.shape[0]
    qw = cv2.warpAffine(query, w, (R, R), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    frame = cv2.warpAffine(np.ones_like(query), w, (R, R), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0.5
    burned = _burned_in(qw)
    left = 1.0 - (residual.unexplained(ref, qw, frame, burned) if residuals
                  else np.full(len(residual.NAMES), residual.NO_FIT))
    m = cv2.erode(frame.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    m &= ~burned
    if m.sum() < MIN_AREA * R * R:
        return np.concatenate([np.full(len(BANDS), -1.0), left])
    # versions compared: the source as it is and blurred alike (a blurred copy) against the query as it is,
    # and the source against the query blurred back (a sharpened copy); each version is ranked once and
    # band-passed once per band
    blur = lambda x, s: cv2.GaussianBlur(x, (0, 0), s * R / 64)  # noqa: E731
    refs = [_ranked(ref, m)] + [_ranked(blur(ref, s), m) for s in REF_BLURS]
    queries = [_ranked(qw, m)] + [_ranked(blur(qw, s), m) for s in QUERY_BLURS]
    pairs = [(0, 0)] + [(i, 0) for i in range(1, len(refs))] + [(0, j) for j in range(1, len(queries))]
    zr = [[_zscore(v) for v in _bandpasses(a, m, R)] for a in refs]  # [version][band]
    zq = [[_zscore(v) for v in _bandpasses(q, m, R)] for q in queries]
    bands = [max(_trimmed_corr(zr[i][b], zq[j][b]) for i, j in pairs) for b in range(len(BANDS))]
    return np.concatenate([bands, left])


def similarities(ref: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Best value of each of :data:`MEASURES` of float32 ``query`` against ``ref`` (both [R, R] in [0, 1])
    over the ECC warp and the identity (:func:`aligned_similarities`; :data:`WORST` where no warp leaves
    enough of the image). The residual measures are taken at the first warp only, ECC's where it found one:
    scoring them at the identity too changed no recall on test_copy_recall (privacy/residual.py), at 1.5 ms
    more per candidate."""
    best = WORST.copy()
    warps = alignments(ref, query)
    if not any(np.abs(w - IDENTITY).max() < 1e-3 for w in warps):
        warps.append(IDENTITY)  # an unmoved copy must not depend on ECC converging (burned-in text pulls it off)
    for k, w in enumerate(warps):
        s = aligned_similarities(ref, query, w, residuals=k == 0)
        best = np.where(np.isfinite(s), np.maximum(best, s), best)
    return best
