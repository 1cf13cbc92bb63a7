"""Labelled image sets for the fidelity metrics: real images with their curvature and keypoints, synthetic
images with the curvature they were asked for and the keypoints they were released with.

Where it sits: evaluation/, read by evaluation.fidelity. Real images come through evaluation.data
(cspine.rundata: data/index.parquet + data/pixels.npy) with the ``labels`` JSON of the index
(``{"keypoints": {label: [x, y]}, "curvature": 1-5, ...}``, keypoints in cache pixels); synthetic ones
through samples/samples.parquet, whose conditional columns are ``curvature`` (1-5, null for an
unconditional sample) and ``keypoints`` (the same JSON object of the 23 CSXA labels, in the sample's
pixels). Keypoints become a float array ``[n, 23, 2]`` in cspine.labels' canonical order with NaN
for a missing point; curvature an int array with 0 for unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cspine import rundata
from cspine.labels import CURVATURE_CLASSES, KEYPOINT_LABELS  # noqa: F401  (re-exported to the evaluation)
from cspine.rundata import curvature_value, keypoint_array, labels_cell
from cspine.rundir import RunDir
from evaluation.data import ImageSet, _subsample, load_real

#: Columns samples.parquet gains in a conditional run.
CONDITIONAL_COLUMNS = ("curvature", "keypoints")


@dataclass
class LabelledSet:
    """Gray images uint16 ``[n, R, R]`` with ids, curvature (1-5, 0 unknown) and keypoints ``[n, 23, 2]`` (NaN unknown)."""

    name: str
    ids: list[str]
    pixels: np.ndarray
    curvature: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: np.ndarray) -> "LabelledSet":
        idx = np.asarray(idx, np.int64)
        return LabelledSet(self.name, [self.ids[i] for i in idx], self.pixels[idx], self.curvature[idx],
                           self.keypoints[idx])

    def image_set(self, suffix: str = "") -> ImageSet:
        return ImageSet(self.name + suffix, self.ids, self.pixels)

    @property
    def has_curvature(self) -> np.ndarray:
        return self.curvature > 0

    @property
    def has_keypoints(self) -> np.ndarray:
        """Images with all 23 points known."""
        return np.isfinite(self.keypoints).all(axis=(1, 2)) if len(self) else np.zeros(0, bool)


def real_labelled(run: RunDir, split: str, cap: int, seed: int) -> LabelledSet:
    """Real images of ``split`` (at most ``cap``, the same seeded subset as evaluation.data.load_real) with
    their labels from data/index.parquet."""
    images = load_real(run, split, cap, seed)
    index = rundata.real_index(run).set_index("image_id")
    curv, kps = [], []
    for image_id in images.ids:
        where = f"{run.index} (image {image_id})"
        labels = labels_cell(index.at[image_id, "labels"], where)
        curv.append(curvature_value(labels.get("curvature"), where))
        kps.append(keypoint_array(labels.get("keypoints"), where))
    return LabelledSet(split, images.ids, images.pixels, np.asarray(curv, np.int64),
                       np.stack(kps) if kps else np.zeros((0, len(KEYPOINT_LABELS), 2)))


def conditional_rows(run: RunDir) -> tuple[pd.DataFrame, str | None]:
    """The conditional rows of samples.parquet (non-null curvature) and a note; an empty table and the reason
    when the run has no conditional samples. With several checkpoints sampled, the "final" one's rows (else
    the last checkpoint's, by name) are used: fidelity is a property of one model."""
    table = rundata.samples_table(run)
    missing = [c for c in CONDITIONAL_COLUMNS if c not in table.columns]
    if missing:
        return table.iloc[:0], (f"{run.samples_table} has no {' / '.join(missing)} column: the samples are "
                                "unconditional, so there is no requested class or released keypoint to check")
    cond = table[table["curvature"].notna()]
    if cond.empty:
        return cond, f"{run.samples_table}: no sample has a requested curvature (all unconditional)"
    ckpts = sorted(cond["checkpoint"].astype(str).unique())
    if len(ckpts) > 1:
        cond = cond[cond["checkpoint"].astype(str) == ("final" if "final" in ckpts else ckpts[-1])]
    return cond.reset_index(drop=True), None


def synthetic_labelled(run: RunDir, cap: int, seed: int) -> tuple[LabelledSet | None, str | None]:
    """Conditional samples (at most ``cap``, seeded subset) with requested curvature and released keypoints,
    or (None, reason) when there are none."""
    rows, reason = conditional_rows(run)
    if reason:
        return None, reason
    rows = rows.iloc[_subsample(len(rows), cap, seed)].reset_index(drop=True)
    images = rundata.sample_images(run, rows)
    curv = [curvature_value(v, f"{run.samples_table} (sample {i})") for v, i in zip(rows["curvature"], rows["image_id"])]
    kps = [keypoint_array(v, f"{run.samples_table} (sample {i})") for v, i in zip(rows["keypoints"], rows["image_id"])]
    return LabelledSet("synthetic", images.ids, images.pixels, np.asarray(curv, np.int64), np.stack(kps)), None
