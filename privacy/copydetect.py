"""The audit's ``copydetect`` method: find a training image behind a synthetic one even when it was rotated,
shifted, zoomed, cropped, sheared, filtered, re-windowed or written on (privacy/power.py's families).

Where it sits: privacy/audit.py runs it like the other methods (privacy/embedders.py) but through
:meth:`CopyDetect.fit` and :meth:`CopyDetect.topk` instead of features + privacy/search.py, because its
distance is not a distance between two fixed vectors. Two stages:

1. candidates: an SSCD-style embedding (privacy/sscd.py) trained on this run's training images with the
   power families' augmentations; each query keeps the ``candidates`` nearest references by cosine;
2. verification: each candidate is aligned to the query and compared (privacy/align.py); the distance is
   ``1 - aligned similarity``, the nearest candidate is the query's nearest reference.

Thresholds come from the holdout images as for every method (privacy/calibrate.py); there is no absolute
floor. Seeded: the same images and seed give the same network and the same distances. Features are not
cached (the network is trained per run). Verification runs in threads (OpenCV releases the GIL), each query's
result landing in its own row, so the output does not depend on the number of threads.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from dataclasses import dataclass, field

import numpy as np

from cspine.images import to_unit
from privacy import align, sscd
from privacy.embedders import DistanceScale, Embedder, Metric

ALIGNED = DistanceScale("1 - aligned band-pass rank correlation", "r_aligned")


@dataclass
class CopyDetect(Embedder):
    steps: int = 200
    candidates: int = 10
    seed: int = 0
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    name: str = "copydetect"
    metric: Metric = "cosine"
    floor: float | None = None
    scale = ALIGNED
    #: privacy/audit.py runs it through fit/topk, not features + search
    verifies = True
    _net: object = field(default=None, repr=False)
    _refs: dict = field(default_factory=dict, repr=False)

    @property
    def method_id(self) -> str:
        return (f"copydetect:sscd{sscd.IN}-{self.steps}steps-seed{self.seed}:ecc-affine+rigid-fallback:"
                f"dog-rank-trim{align.TRIM}:matched-blur:text-mask")

    @property
    def describe(self) -> str:
        return (f"copy detection: SSCD-style embedding trained on the training images ({self.steps} steps, "
                f"{sscd.IN} px) proposes {self.candidates} candidates; each is aligned by ECC (affine, else rotation "
                f"and shift) and compared by trimmed band-pass rank correlation at matched blurs, burned-in text masked")

    def fit(self, train: np.ndarray, holdout: np.ndarray | None = None) -> "CopyDetect":
        """Train the embedding on ``train`` and keep ``train`` (and ``holdout``) as reference sets."""
        tr = to_unit(train).astype(np.float32)
        self._net = sscd.train(tr, self.steps, self.seed)
        self._refs = {"train": (tr, sscd.embed(self._net, tr))}
        if holdout is not None:
            ho = to_unit(holdout).astype(np.float32)
            self._refs["holdout"] = (ho, sscd.embed(self._net, ho))
        return self

    def topk(self, queries: np.ndarray, ref: str, k: int, subset: np.ndarray | None = None,
             candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` verified references (indices into the whole reference set, distances ``1 - similarity``,
        ascending, ties by index) of each query among ``ref`` ("train"/"holdout"), optionally only among
        the rows ``subset``."""
        if self._net is None:
            raise RuntimeError("CopyDetect.fit must run before topk")
        images, emb = self._refs[ref]
        rows = np.arange(len(images)) if subset is None else np.asarray(subset)
        q = to_unit(queries).astype(np.float32)
        nc = min(max(k, candidates or self.candidates), len(rows))
        sims = sscd.embed(self._net, q) @ emb[rows].T
        cand = rows[np.argsort(-sims, axis=1, kind="stable")[:, :nc]]

        def one(i: int) -> np.ndarray:
            return np.array([1.0 - align.similarity(images[j], q[i]) for j in cand[i]])

        if self.workers > 1 and len(q) > 1:
            with cf.ThreadPoolExecutor(self.workers) as ex:
                dist = np.stack(list(ex.map(one, range(len(q))))) if len(q) else np.zeros((0, nc))
        else:
            dist = np.stack([one(i) for i in range(len(q))]) if len(q) else np.zeros((0, nc))
        k = min(k, nc)
        order = np.lexsort((cand, dist), axis=1)[:, :k]
        return np.take_along_axis(cand, order, 1), np.take_along_axis(dist, order, 1).astype(np.float32)

    def close(self) -> None:
        self._net, self._refs = None, {}
