"""Reading what the audit compares from a run directory: training, holdout and synthetic images.

Where it sits: first step of `cspine audit`. Training and holdout images come from ``data/index.parquet``
and the pixel cache ``data/pixels.npy`` (uint16 [N, R, R]); synthetic images from
``samples/samples.parquet`` and the PNG files it lists. Everything is returned as uint16 [n, R, R]
(8-bit samples are widened; samples of another size are resized to R with a note). Bad inputs raise
:class:`AuditInputError` naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cspine.errors import StageError
from cspine.rundir import INDEX_COLUMNS, SAMPLES_COLUMNS, RunDir


class AuditInputError(StageError):
    """An input of the audit is missing or malformed; the message names the file."""


@dataclass
class AuditInputs:
    train_ids: list[str]
    train: np.ndarray
    holdout_ids: list[str]
    holdout: np.ndarray
    synth_ids: list[str]
    synth: np.ndarray
    synth_files: list[str]  # relative to samples/
    notes: list[str] = field(default_factory=list)

    @property
    def resolution(self) -> int:
        return int(self.train.shape[-1])


def _read_table(path: Path, columns: tuple[str, ...], stage: str) -> pd.DataFrame:
    if not path.is_file():
        raise AuditInputError(f"{path} not found: run `cspine {stage}` first")
    try:
        df = pd.read_parquet(path)
    except Exception as err:
        raise AuditInputError(f"{path} is not a readable Parquet file: {err}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise AuditInputError(f"{path} lacks columns {missing} (expected {list(columns)})")
    return df


def _as_uint16(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint16:
        return a
    if a.dtype == np.uint8:
        return a.astype(np.uint16) * 257
    return np.rint(np.clip(a.astype(np.float64), 0, 1) * 65535).astype(np.uint16)


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(a.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.rint(np.clip(np.asarray(im), 0, 65535)).astype(np.uint16)


def load_inputs(run: RunDir) -> AuditInputs:
    """Read train/holdout pixels and synthetic images of ``run``; see the module docstring."""
    from cspine.images import read_gray

    index = _read_table(run.index, INDEX_COLUMNS, "prepare")
    if not run.pixels.is_file():
        raise AuditInputError(f"{run.pixels} not found: run `cspine prepare` first")
    try:
        pixels = np.load(run.pixels, mmap_mode="r")
    except Exception as err:
        raise AuditInputError(f"{run.pixels} is not a readable .npy array: {err}") from None
    if pixels.ndim != 3 or pixels.shape[1] != pixels.shape[2]:
        raise AuditInputError(f"{run.pixels}: expected [N, R, R], got shape {pixels.shape}")
    bad_split = sorted(set(index["split"]) - {"train", "holdout"})
    if bad_split:
        raise AuditInputError(f"{run.index}: unknown split values {bad_split} (expected train/holdout)")
    rows = index["cache_row"].to_numpy()
    if len(rows) and (rows.min() < 0 or rows.max() >= len(pixels)):
        raise AuditInputError(f"{run.index}: cache_row outside 0..{len(pixels) - 1} of {run.pixels}")
    tr = index[index["split"] == "train"]
    ho = index[index["split"] == "holdout"]
    if len(tr) == 0:
        raise AuditInputError(f"{run.index} has no training images")
    if len(ho) == 0:
        raise AuditInputError(
            f"{run.index} has no holdout images: the audit calibrates its thresholds on them "
            "(set data.holdout_fraction > 0 and rerun `cspine prepare`)"
        )
    R = int(pixels.shape[-1])
    train = _as_uint16(np.asarray(pixels[np.sort(tr["cache_row"].to_numpy())]))
    tr = tr.sort_values("cache_row")
    ho = ho.sort_values("cache_row")
    holdout = _as_uint16(np.asarray(pixels[ho["cache_row"].to_numpy()]))

    samples = _read_table(run.samples_table, SAMPLES_COLUMNS, "sample")
    if samples["image_id"].duplicated().any():
        dup = samples.loc[samples["image_id"].duplicated(), "image_id"].iloc[0]
        raise AuditInputError(f"{run.samples_table}: duplicate image_id {dup!r}")
    notes: list[str] = []
    synth = np.empty((len(samples), R, R), dtype=np.uint16)
    resized = 0
    from tqdm.auto import tqdm

    for i, rel in enumerate(tqdm(samples["file"].tolist(), desc="read samples", unit="img", leave=False,
                                 disable=len(samples) < 2000)):
        path = run.samples / rel
        try:
            a = read_gray(path)
        except FileNotFoundError:
            raise AuditInputError(f"{path} (listed in {run.samples_table}) not found") from None
        except Exception as err:
            raise AuditInputError(f"{path} is not a readable image: {err}") from None
        a = _as_uint16(a)
        if a.shape != (R, R):
            a = _resize(a, R)
            resized += 1
        synth[i] = a
    if resized:
        notes.append(f"{resized} synthetic images were not {R}x{R} and were resized to it for the comparison")
    return AuditInputs(
        train_ids=tr["image_id"].astype(str).tolist(), train=train,
        holdout_ids=ho["image_id"].astype(str).tolist(), holdout=holdout,
        synth_ids=samples["image_id"].astype(str).tolist(), synth=synth,
        synth_files=samples["file"].astype(str).tolist(), notes=notes,
    )
