"""Image sets that `cspine evaluate` compares: real train / holdout images and synthetic samples.

Reads the run directory contract through the run-data layer (cspine.rundata, which checks the files):
``data/index.parquet`` + ``data/pixels.npy`` for real images (uint16, at model resolution) and
``samples/samples.parquet`` + ``samples/images/*.png`` for synthetic ones; this module adds the capped,
seeded subsample.
Images stay uint16 ``[n, R, R]`` here (what the feature cache keys are computed on); metrics convert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cspine import rundata
from cspine.images import from_unit, to_unit
from cspine.rundir import RunDir


@dataclass
class ImageSet:
    """A named set of gray images, uint16 ``[n, R, R]``, with their ids."""

    name: str
    ids: list[str]
    pixels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def unit(self) -> np.ndarray:
        """float32 in [0, 1]."""
        return to_unit(self.pixels)


def _subsample(n: int, cap: int, seed: int) -> np.ndarray:
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def load_real(run: RunDir, split: str, cap: int, seed: int = 0) -> ImageSet:
    """Real images of ``split`` ("train" or "holdout"), at most ``cap`` (random subset, fixed by ``seed``),
    in index order."""
    index = rundata.real_index(run)
    rows = index[index["split"] == split].reset_index(drop=True)
    rows = rows.iloc[_subsample(len(rows), cap, seed)]
    real = rundata.real_images(run, split, index=rows)  # read in cache-row order (mmap-friendly) ...
    order = np.argsort(np.argsort(rows["cache_row"].to_numpy(dtype=np.int64), kind="stable"), kind="stable")
    return ImageSet(split, rows["image_id"].astype(str).tolist(), real.pixels[order])  # ... back to index order


def load_samples(run: RunDir, cap: int, seed: int = 0, checkpoint: str | None = None) -> ImageSet:
    """Synthetic images from ``samples/`` (optionally one checkpoint's), at most ``cap``, as uint16."""
    table = rundata.samples_table(run, checkpoint)
    table = table.iloc[_subsample(len(table), cap, seed)]
    synth = rundata.sample_images(run, table)
    return ImageSet("synthetic", synth.ids, synth.pixels)


def image_set_from_unit(name: str, images: np.ndarray, ids: list[str] | None = None) -> ImageSet:
    """An ImageSet from float [0, 1] images (e.g. freshly generated), quantised to 16 bits as samples/ stores them."""
    arr = from_unit(images, 16)
    return ImageSet(name, ids if ids is not None else [f"{name}-{i:06d}" for i in range(len(arr))], arr)
