"""Calibration of the audit's flags against real-to-real distances, and the DCR statistics.

Where it sits: privacy/audit.py computes, per method, the nearest-training distance of every holdout
(real, unseen) image and of every synthetic image; this module turns them into a threshold and flags.

- A synthetic image is flagged by a method when it is strictly closer to a training image than the
  ``q``-quantile of holdout-to-train distances (closer than nearly all real unseen images are), or when
  it is within the method's absolute floor (its embedder's ``floor``, e.g. pHash Hamming distance <= 10 of
  64), whichever is looser.
  A floor is only trusted where the data allow it: when more than ``max_floor_share`` of the holdout
  images are themselves within the floor of a training image (radiographs of one standard view often
  share their coarse layout, so distinct patients can have equal 64-bit pHashes), the floor would flag
  distinct images, so it is switched off for that method and the summary says why.
- ``holdout_percentile``: the share of holdout images at least as close to training (0 = closer than
  every real unseen image).
- DCR overfitting protection (as in SDMetrics): the share of synthetic images closer to the training set
  than to the holdout set, measured against a random training subset of the holdout's size so that 50%
  is the no-memorisation ideal; the raw share against all training images is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Threshold:
    method: str
    calibrated: float  # flag when distance < calibrated
    floor: float | None  # flag when distance <= floor (None: no floor, or switched off)
    quantile: float
    n_holdout: int
    floor_requested: float | None = None
    floor_note: str = ""

    def flags(self, dist: np.ndarray) -> np.ndarray:
        dist = np.asarray(dist, dtype=np.float64)
        f = dist < self.calibrated
        if self.floor is not None:
            f |= dist <= self.floor
        return f

    def floor_hits(self, dist: np.ndarray) -> np.ndarray:
        if self.floor is None:
            return np.zeros(len(dist), dtype=bool)
        return np.asarray(dist, dtype=np.float64) <= self.floor


def calibrate(
    method: str, holdout_dist: np.ndarray, quantile: float, floor: float | None, max_floor_share: float = 0.01
) -> Threshold:
    """Threshold from holdout-to-train nearest distances (the ``quantile``, lower interpolation)."""
    h = np.asarray(holdout_dist, dtype=np.float64)
    if len(h) == 0:
        raise ValueError(f"{method}: no holdout images to calibrate the threshold with")
    calibrated = float(np.quantile(h, quantile, method="lower"))
    used, note = floor, ""
    if floor is not None:
        share = float(np.mean(h <= floor))
        if share > max_floor_share:
            used = None
            note = (
                f"absolute floor {floor:g} switched off: {share:.1%} of holdout (real, unseen) images are that "
                f"close to a training image, so on this data {method} cannot tell a copy from a distinct image "
                "at that distance; the calibrated threshold applies"
            )
    return Threshold(method, calibrated, used, quantile, len(h), floor, note)


def holdout_percentile(dist: np.ndarray, holdout_dist: np.ndarray) -> np.ndarray:
    """Share of holdout images whose nearest-training distance is <= each ``dist``."""
    h = np.sort(np.asarray(holdout_dist, dtype=np.float64))
    return np.searchsorted(h, np.asarray(dist, dtype=np.float64), side="right") / len(h)


def closer_to_train_share(d_train: np.ndarray, d_holdout: np.ndarray) -> float:
    """Share of synthetic images with d_train < d_holdout, ties counted half."""
    d_train = np.asarray(d_train, dtype=np.float64)
    d_holdout = np.asarray(d_holdout, dtype=np.float64)
    if len(d_train) == 0:
        return float("nan")
    return float(np.mean(d_train < d_holdout) + 0.5 * np.mean(d_train == d_holdout))


def distribution(d: np.ndarray) -> dict[str, float]:
    """Summary of a distance distribution (for summary.json)."""
    d = np.asarray(d, dtype=np.float64)
    if len(d) == 0:
        return {}
    names = ("min", "p01", "p05", "p25", "median", "p75", "p95")
    qs = np.quantile(d, [0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95])
    return {k: float(v) for k, v in zip(names, qs)} | {"mean": float(d.mean())}
