"""The audit's ``copydetect`` method: find a training image behind a synthetic one even when it was rotated,
shifted, zoomed, cropped, sheared, filtered, re-windowed or written on (privacy/power.py's families).

Where it sits: privacy/audit.py runs it like the other methods (privacy/embedders.py) but through
:meth:`CopyDetect.fit` and :meth:`CopyDetect.topk` instead of features + privacy/search.py, because its
distance is not a distance between two fixed vectors. Two stages:

1. candidates: an SSCD-style embedding (privacy/sscd.py) trained on this run's training images with the
   power families' augmentations; each query keeps the ``candidates`` nearest references by cosine;
2. verification: each candidate is aligned to the query once and compared at that warp by four measures
   (privacy/align.py's MEASURES): two band correlations (a coarse band-pass that keeps the layout, and a
   fine one, 0.7-3 px, that keeps only the edges of the anatomy) and two residuals left once the candidate
   is blurred and intensity-mapped like the query (privacy/residual.py: how much structure, against white
   noise, and how much low-pass energy, against the query's); the nearest candidate is the query's nearest
   reference.

The aligned distance of a pair is ``min over measures of (1 - r_m) / s_m``, where ``s_m`` is the
:data:`SCALE_QUANTILE` quantile (5%) over holdout images of ``1 - r_m`` to their nearest training image
(``1 - r`` is the residual itself for the two residual measures; what follows says "band" for any measure)
(measured in :meth:`CopyDetect.fit`, whose verification of the holdout the audit's calibration then reuses,
:meth:`CopyDetect.holdout_topk`): each band in units of how close real unseen images come to training in that
band, and the nearer band counts. The holdout calibration of privacy/calibrate.py then puts one threshold on
that combined distance (the holdout's minimum of it, with under 1,000 holdout images), so a distinct image is
flagged with the probability of one calibrated check, about 1 / (n_holdout + 1). Until phantom-6 each band was
scaled by its own closest holdout image and the threshold was 1: two calibrated checks, each firing on about 1 /
(n + 1) of distinct images, so the method flagged up to twice its share (measured with copydetect alone and 300
holdout images: 3 of 300 distinct images flagged, 0 with the 5% scale, recall within a point in every family;
quantiles 0.01-0.1 gave the same recall; in test_copy_recall, with 600 holdout images, 3 of 300 again: at these
counts a few images lying nearest decide). Why two bands, measured on the test_copy_recall setup (100 copies per
family, 300 distinct images): distinct phantoms aligned onto each other keep a coarse correlation up to 0.996
but less of their edges, while blur, text and a clipped window leave a copy's edges in place once aligned; the
fine band alone misses noisy and JPEG copies the coarse band finds. Adding the fine band lifted "everything"
from 0.29 to 0.38 with no family and no distinct image worse off (privacy/align.py has the per-band figures).
Without a holdout (``fit(train)``) the scales are 1; a band in which holdout images match training images
exactly gets a negligible scale, which switches that band off.

The embedding weighs in (:data:`EMBED_POWER`): the aligned distance is multiplied by the square root of the
pair's embedding cosine distance, scaled like the bands by its holdout 5% quantile. The two see different
things: alignment and pixels the layout and edges of one image, the embedding, trained on exactly these
changes, what survives them; a distinct image rarely comes close in both. Measured on the test_copy_recall
setup (copydetect alone, the 200-step embedding's candidates; scored with a 1000-step embedding's cosine):
rotation + shift + blur + gamma 0.95 -> 0.97, zoom + shear + denoise + gamma + JPEG 0.92 -> 0.96, "everything"
0.73 -> 0.83, crop + sharpen + window/level + text 0.95 unchanged, distinct images flagged 3 -> 1 of 300;
with the 200-step embedding as it was, the product gained less than the false flags it added. Powers 0.4-0.7
measured within a point of each other; the sum of the two scaled distances (weights 0.25-1) 1-3 points lower,
their maximum (both must agree) 2-20 points lower, dividing by the second or median candidate's distance (a
ratio test) lower in every combination (everything 0.24-0.50). 3000 training steps instead of 1000: "everything"
0.86 but 2 of 300 distinct images flagged, at three times the training time. The audit as a whole
(tests/privacy/test_copy_recall.py, its own planted copies): 0.97 / 0.95 / 0.96 / 0.84 and 1 of 300; with
privacy/align.py's windowed phase correlation, 0.99 / 0.95 / 0.95 / 0.85 and none of 300; with
privacy/residual.py's two measures beside the bands, 0.99 / 0.98 / 0.97 / 0.85 and none of 300.

Thresholds come from the holdout images as for every method (privacy/calibrate.py); there is no absolute
floor. Seeded: the same images, seed and thread count give the same network and the same distances on one
machine (privacy/sscd.py: CPUs differ in their float kernels, so another machine trains a slightly different
network, and the combinations' recall moves by a few points). Features are not
cached (the network is trained per run). Verification runs in threads (OpenCV releases the GIL), each query's
result landing in its own row, so the output does not depend on the number of threads.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from dataclasses import dataclass, field

import numpy as np

from cspine.images import to_unit
from privacy import align, residual, sscd
from privacy.embedders import DistanceScale, Embedder, Metric

#: the nearest measure's scaled (1 - similarity) times the square root of the scaled embedding distance
#: (see the module docstring and :meth:`CopyDetect.distances`)
ALIGNED = DistanceScale("aligned x sqrt(embedding) distance, scaled", unit="x a near holdout (5th percentile)")
#: quantile of the holdout's nearest (1 - r) per measure that scales the measure (see the module docstring)
SCALE_QUANTILE = 0.05
#: the embedding's scaled cosine distance enters the pair's distance as a factor to this power
EMBED_POWER = 0.5


@dataclass
class CopyDetect(Embedder):
    steps: int = 1000  # privacy/config.py's copydetect_steps
    candidates: int = 10
    seed: int = 0
    #: per measure (align.MEASURES), the SCALE_QUANTILE quantile of the holdout's nearest 1 - r (set by :meth:`fit`)
    scales: tuple[float, ...] = field(default=(), init=False)
    #: the same quantile of the holdout's nearest embedding cosine distance (set by :meth:`fit`)
    embed_scale: float = field(default=1.0, init=False)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    name: str = "copydetect"
    metric: Metric = "cosine"
    floor: float | None = None
    scale = ALIGNED
    #: privacy/audit.py runs it through fit/topk, not features + search
    verifies = True
    _net: object = field(default=None, repr=False)
    _refs: dict = field(default_factory=dict, repr=False)
    #: (candidates, similarities per measure, cosines) of fit's holdout
    _holdout: tuple | None = field(default=None, repr=False)

    @property
    def method_id(self) -> str:
        return (f"copydetect:sscd{sscd.IN}-{self.steps}steps-seed{self.seed}:hann-phase+ecc-affine+rigid-fallback:"
                f"dog{'+'.join(f'{a:g}-{b:g}' for a, b in align.BANDS)}-rank-trim{align.TRIM}:matched-blur:text-mask:"
                f"residual-blur{max(residual.SIGMAS):g}-cubic-lowpass{residual.LOWPASS:g}:"
                f"holdout-scaled-min:x-cos^{EMBED_POWER:g}")

    @property
    def describe(self) -> str:
        return (f"copy detection: SSCD-style embedding trained on the training images ({self.steps} steps, "
                f"{sscd.IN} px) proposes {self.candidates} candidates; each is aligned by ECC (affine, else rotation "
                f"and shift) and compared by trimmed rank correlation in a coarse and a fine band at matched blurs, "
                f"burned-in text masked, and by the residual left once the candidate is blurred and "
                f"intensity-mapped like the query; each measure is scaled by how close the nearest holdout images "
                f"come (5th percentile), the nearest measure counts, times the square root of the embedding's "
                f"cosine distance scaled alike")

    def fit(self, train: np.ndarray, holdout: np.ndarray | None = None) -> "CopyDetect":
        """Train the embedding on ``train`` and keep ``train`` (and ``holdout``) as reference sets."""
        tr = to_unit(train).astype(np.float32)
        self._net = sscd.train(tr, self.steps, self.seed)
        self._refs = {"train": (tr, sscd.embed(self._net, tr))}
        self.scales, self.embed_scale, self._holdout = (1.0,) * len(align.MEASURES), 1.0, None
        if holdout is not None:
            ho = to_unit(holdout).astype(np.float32)
            self._refs["holdout"] = (ho, sscd.embed(self._net, ho))
            if len(ho):
                self._holdout = self._verify(ho, "train", np.arange(len(tr)), min(self.candidates, len(tr)))
                nearest = (1.0 - self._holdout[1]).min(axis=1)  # [n_holdout, n_measures]
                self.scales = tuple(float(max(v, 1e-6)) for v in np.quantile(nearest, SCALE_QUANTILE, axis=0))
                cos_nearest = (1.0 - self._holdout[2]).min(axis=1)  # the first candidate's: the embedding's nearest
                self.embed_scale = float(max(np.quantile(cos_nearest, SCALE_QUANTILE), 1e-6))
        return self

    def holdout_topk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``topk(holdout, "train", k)`` from the verification :meth:`fit` already ran to set the scales (the
        audit's calibration needs the same numbers; this saves verifying every holdout image twice)."""
        if self._holdout is None:
            raise RuntimeError("CopyDetect.fit(train, holdout) must run before holdout_topk")
        return self._ranked(*self._holdout, k)

    def distances(self, bands: np.ndarray, cos: np.ndarray) -> np.ndarray:
        """The distance of verified pairs from their similarities per measure [..., n_measures] and embedding
        cosines [...]: the nearest measure's scaled ``1 - r`` times the scaled cosine distance to
        :data:`EMBED_POWER`."""
        aligned = ((1.0 - bands) / np.asarray(self.scales)).min(axis=-1)
        return aligned * (np.clip(1.0 - cos, 0.0, None) / self.embed_scale) ** EMBED_POWER

    def _ranked(self, cand: np.ndarray, bands: np.ndarray, cos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest of each query's verified candidates: (indices, distances), ties by index."""
        dist = self.distances(bands, cos)
        k = min(k, cand.shape[1])
        order = np.lexsort((cand, dist), axis=1)[:, :k]
        return np.take_along_axis(cand, order, 1), np.take_along_axis(dist, order, 1).astype(np.float32)

    def _verify(self, q: np.ndarray, ref: str, rows: np.ndarray, nc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each query's ``nc`` candidates among ``rows`` of ``ref`` by the embedding, their aligned similarities
        per measure and their embedding cosines: (candidates [n, nc], similarities [n, nc, n_measures],
        cosines [n, nc])."""
        images, emb = self._refs[ref]
        sims = sscd.embed(self._net, q) @ emb[rows].T
        order = np.argsort(-sims, axis=1, kind="stable")[:, :nc]
        cand, cos = rows[order], np.take_along_axis(sims, order, 1)

        def one(i: int) -> np.ndarray:
            return np.stack([align.similarities(images[j], q[i]) for j in cand[i]])

        if self.workers > 1 and len(q) > 1:
            with cf.ThreadPoolExecutor(self.workers) as ex:
                out = list(ex.map(one, range(len(q))))
        else:
            out = [one(i) for i in range(len(q))]
        return cand, (np.stack(out) if out else np.zeros((0, nc, len(align.MEASURES)))), cos

    def topk(self, queries: np.ndarray, ref: str, k: int, subset: np.ndarray | None = None,
             candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` verified references (indices into the whole reference set, distances as the module says,
        ascending, ties by index) of each query among ``ref`` ("train"/"holdout"), optionally only among
        the rows ``subset``."""
        if self._net is None:
            raise RuntimeError("CopyDetect.fit must run before topk")
        images, _ = self._refs[ref]
        rows = np.arange(len(images)) if subset is None else np.asarray(subset)
        q = to_unit(queries).astype(np.float32)
        nc = min(max(k, candidates or self.candidates), len(rows))
        return self._ranked(*self._verify(q, ref, rows, nc), k)

    def close(self) -> None:
        self._net, self._refs, self._holdout = None, {}, None
