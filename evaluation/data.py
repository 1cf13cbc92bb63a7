"""Image sets that `cspine evaluate` compares: real train / holdout images and synthetic samples.

Reads the run directory contract: ``data/index.parquet`` + ``data/pixels.npy`` for real images (uint16,
at model resolution) and ``samples/samples.parquet`` + ``samples/images/*.png`` for synthetic ones.
Images stay uint16 ``[n, R, R]`` here (what the feature cache keys are computed on); metrics convert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cspine.images import read_gray
from cspine.rundir import INDEX_COLUMNS, SAMPLES_COLUMNS, RunDir


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
        return self.pixels.astype(np.float32) / 65535.0


def _subsample(n: int, cap: int, seed: int) -> np.ndarray:
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def _check_columns(df: pd.DataFrame, want: tuple[str, ...], path) -> None:
    missing = [c for c in want if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (expected {list(want)})")


def load_real(run: RunDir, split: str, cap: int, seed: int = 0) -> ImageSet:
    """Real images of ``split`` ("train" or "holdout"), at most ``cap`` (random subset, fixed by ``seed``)."""
    index_path = run.require(run.index, "prepare")
    pixels_path = run.require(run.pixels, "prepare")
    index = pd.read_parquet(index_path)
    _check_columns(index, INDEX_COLUMNS, index_path)
    rows = index[index["split"] == split].reset_index(drop=True)
    pick = _subsample(len(rows), cap, seed)
    rows = rows.iloc[pick]
    pixels = np.load(pixels_path, mmap_mode="r")
    if pixels.ndim != 3 or pixels.dtype != np.uint16:
        raise ValueError(f"{pixels_path}: expected uint16 [N, R, R], got {pixels.dtype} {pixels.shape}")
    cache_rows = rows["cache_row"].to_numpy(dtype=np.int64)
    if len(cache_rows) and (cache_rows.max() >= len(pixels) or cache_rows.min() < 0):
        raise ValueError(f"{index_path}: cache_row out of range for {pixels_path} ({len(pixels)} rows)")
    arr = np.asarray(pixels[np.sort(cache_rows)]) if len(cache_rows) else np.zeros((0, *pixels.shape[1:]), np.uint16)
    order = np.argsort(np.argsort(cache_rows))  # back to the index order after the sorted (mmap-friendly) read
    return ImageSet(split, rows["image_id"].astype(str).tolist(), arr[order])


def load_samples(run: RunDir, cap: int, seed: int = 0, checkpoint: str | None = None) -> ImageSet:
    """Synthetic images from ``samples/`` (optionally one checkpoint's), at most ``cap``, as uint16."""
    table_path = run.require(run.samples_table, "sample")
    table = pd.read_parquet(table_path)
    _check_columns(table, SAMPLES_COLUMNS, table_path)
    if checkpoint is not None:
        table = table[table["checkpoint"] == checkpoint]
    table = table.reset_index(drop=True)
    table = table.iloc[_subsample(len(table), cap, seed)]
    images = []
    for file in table["file"]:
        path = run.samples / file
        if not path.is_file():
            raise FileNotFoundError(f"{table_path} lists {file}, but {path} does not exist")
        arr = read_gray(path)
        images.append(arr.astype(np.uint16) * 257 if arr.dtype == np.uint8 else arr)
    shape = {a.shape for a in images}
    if len(shape) > 1:
        raise ValueError(f"{run.samples}: synthetic images have different sizes {sorted(shape)}")
    pixels = np.stack(images) if images else np.zeros((0, 1, 1), np.uint16)
    return ImageSet("synthetic", table["image_id"].astype(str).tolist(), pixels)


def from_unit(name: str, images: np.ndarray, ids: list[str] | None = None) -> ImageSet:
    """An ImageSet from float [0, 1] images (e.g. freshly generated), quantised to 16 bits as samples/ stores them."""
    arr = np.rint(np.clip(images, 0.0, 1.0) * 65535.0).astype(np.uint16)
    return ImageSet(name, ids if ids is not None else [f"{name}-{i:06d}" for i in range(len(arr))], arr)
