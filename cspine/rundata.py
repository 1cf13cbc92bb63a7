"""The run-data layer: reading a run's images once, with their checks, and fingerprinting what stages make.

Where it sits: the core, under every stage. Real images by split (:func:`real_images`) and synthetic
samples (:func:`sample_images`) are read here, with the checks (columns, split values, cache rows, sizes)
done in one place, and so are the ``labels`` of the index and the conditional columns of the samples table
(:func:`labels_cell`, :func:`curvature_value`, :func:`keypoint_array`: training's shape model, the evaluation
and the reader study read labels only through them, with one strictness); the stage table
(``cspine.stages``) declares each stage's inputs and outputs with the fingerprint functions and keeps them in
the stages' ``record.json`` (cspine.provenance); the release checks (``release.coverage``) read the audit's
record back through :func:`audit_coverage`.

Every file inside a run is fingerprinted by content (sha256). Hashing the same unchanged file twice in one
process is avoided with a memo keyed by (path, inode, size, mtime): a file rewritten in between always has
a new key, so the memo never answers for other bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cspine import provenance as prov
from cspine.errors import StageError
from cspine.hashing import sha256_file
from cspine.images import read_gray, resize_gray16
from cspine.labels import CURVATURE_CLASSES, KEYPOINT_LABELS
from cspine.rundir import INDEX_COLUMNS, SAMPLES_COLUMNS, MissingInput, RunDir

_memo: dict[tuple, str] = {}


def sha256_memo(path: Path) -> str:
    """sha256 of ``path`` (or "missing"), memoised per process on (path, inode, size, mtime_ns)."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return "missing"
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _memo:
        _memo[key] = sha256_file(path)
    return _memo[key]


def files(folder: Path, pattern: str = "*") -> dict[str, str]:
    """{relative path: sha256} of the files under ``folder`` (records and ``.tmp-*`` files left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): sha256_memo(p) for p in sorted(folder.rglob(pattern))
            if p.is_file() and not p.name.startswith(".tmp-") and p.name != prov.RECORD}


# -- what each stage makes ----------------------------------------------------------------------------------------

def data_fp(run: RunDir) -> dict:
    """What ``prepare`` makes and training, audit and evaluation read: the index and the pixel cache."""
    return {"data/index.parquet": sha256_memo(run.index), "data/pixels.npy": sha256_memo(run.pixels)}


def weights_fp(run: RunDir, checkpoint: str) -> dict[str, str]:
    """The EMA U-Net weights and config of ``checkpoint`` plus the noise schedule that samples them."""
    unet = run.unet_folder(checkpoint)
    sched = run.pipeline / "scheduler" if checkpoint == "final" else unet.parent / "scheduler"
    out = {f"unet/{k}": v for k, v in files(unet).items()}
    out.update({f"scheduler/{k}": v for k, v in files(sched).items()})
    return out


def pipeline_fp(run: RunDir) -> dict[str, str]:
    """Every file of the exported pipeline (what ``package`` copies into release/model)."""
    return files(run.pipeline)


def samples_fp(run: RunDir) -> dict:
    """The samples table and every sample image by content."""
    return {"samples.parquet": sha256_memo(run.samples_table), "images": files(run.sample_images, "*.png")}


def released_fp(run: RunDir) -> dict:
    return {"dataset": files(run.release_dataset), "model": files(run.release_model)}


# -- what the audit covered -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Coverage:
    """What a finished audit covered: sample image sha256 by file (relative to samples/) and the weights of
    every checkpoint those samples came from. (Which images it flagged is the gate's: cspine.gate.)"""

    images: dict[str, str]
    weights: dict[str, dict[str, str]]
    record: Path


def audit_coverage(run: RunDir) -> Coverage | None:
    """The audit's record of ``run`` as a :class:`Coverage`, or None when there is no complete audit."""
    rec = prov.read_record(run.audit)
    if not rec or not rec.get("complete"):
        return None
    inputs = rec.get("inputs", {})
    images = {f"images/{k}": v for k, v in ((inputs.get("samples") or {}).get("images") or {}).items()}
    return Coverage(images=images, weights=dict(inputs.get("weights") or {}), record=run.audit / prov.RECORD)


# -- reading images (each check done once, here) -----------------------------------------------------------

class RunDataError(StageError):
    """A run file is missing or malformed; the message names the file and the stage that makes it (exit 2)."""


class MissingRunData(RunDataError, MissingInput):
    """A run file that is not there yet (also a FileNotFoundError, as cspine.rundir.MissingInput)."""


@dataclass
class Images:
    """Gray images as uint16 ``[n, R, R]`` with their ids (and, for samples, their files under samples/).
    ``resized`` counts the samples :func:`sample_images` brought to the size it was asked for."""

    ids: list[str]
    pixels: np.ndarray
    files: list[str] | None = None
    resized: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def _table(path: Path, columns: tuple[str, ...], stage: str) -> pd.DataFrame:
    if not path.is_file():
        raise MissingRunData(f"{path} not found: run `cspine {stage}` first")
    try:
        df = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - whatever pyarrow raises, the file is unreadable
        raise RunDataError(f"{path} is not a readable Parquet file: {err}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RunDataError(f"{path} lacks columns {missing} (expected {list(columns)})")
    return df


def real_index(run: RunDir) -> pd.DataFrame:
    """``data/index.parquet``, checked: its columns and its split values."""
    index = _table(run.index, INDEX_COLUMNS, "prepare")
    bad = sorted(set(index["split"]) - {"train", "holdout"})
    if bad:
        raise RunDataError(f"{run.index}: unknown split values {bad} (expected train/holdout)")
    return index


def real_images(run: RunDir, split: str, index: pd.DataFrame | None = None) -> Images:
    """The real images of ``split`` from the pixel cache, in cache-row order (one sorted, mmap-friendly read)."""
    index = real_index(run) if index is None else index
    if not run.pixels.is_file():
        raise MissingRunData(f"{run.pixels} not found: run `cspine prepare` first")
    try:
        pixels = np.load(run.pixels, mmap_mode="r")
    except Exception as err:  # noqa: BLE001
        raise RunDataError(f"{run.pixels} is not a readable .npy array: {err}") from None
    if pixels.ndim != 3 or pixels.shape[1] != pixels.shape[2] or pixels.dtype != np.uint16:
        raise RunDataError(f"{run.pixels}: expected uint16 [N, R, R], got {pixels.dtype} {pixels.shape}")
    rows = index[index["split"] == split].sort_values("cache_row", kind="stable")
    cache_rows = rows["cache_row"].to_numpy(dtype=np.int64)
    if len(cache_rows) and (cache_rows.min() < 0 or cache_rows.max() >= len(pixels)):
        raise RunDataError(f"{run.index}: cache_row outside 0..{len(pixels) - 1} of {run.pixels}")
    return Images(rows["image_id"].astype(str).tolist(), np.asarray(pixels[cache_rows]))


def samples_table(run: RunDir, checkpoint: str | None = None) -> pd.DataFrame:
    """``samples/samples.parquet``, checked (columns, unique ids), optionally one checkpoint's rows."""
    table = _table(run.samples_table, SAMPLES_COLUMNS, "sample")
    if table["image_id"].duplicated().any():
        dup = table.loc[table["image_id"].duplicated(), "image_id"].iloc[0]
        raise RunDataError(f"{run.samples_table}: duplicate image_id {dup!r}")
    if checkpoint is not None:
        table = table[table["checkpoint"] == checkpoint]
    return table.reset_index(drop=True)


def read_sample(run: RunDir, file: str) -> np.ndarray:
    """One synthetic image, ``file`` relative to samples/, as uint16 (8-bit PNGs widened by 257, so
    255 -> 65535)."""
    path = run.samples / file
    try:
        a = read_gray(path)
    except FileNotFoundError:
        raise MissingRunData(f"{path} (listed in {run.samples_table}) not found") from None
    except Exception as err:  # noqa: BLE001 - a broken file is bad input, whatever PIL raises
        raise RunDataError(f"{path} is not a readable image: {err}") from None
    return a.astype(np.uint16) * 257 if a.dtype == np.uint8 else a.astype(np.uint16)


def sample_images(run: RunDir, table: pd.DataFrame | None = None, progress: bool = False,
                  size: int | None = None) -> Images:
    """The synthetic images listed in ``table`` (default: all of samples.parquet) as uint16 (:func:`read_sample`).

    Without ``size`` all must have one size. With it, an image of another size is resized to ``size`` x
    ``size`` (bicubic, in float: cspine.images.resize_gray16) and counted in ``Images.resized``, for a
    caller that compares them with images of that size (the audit)."""
    from tqdm.auto import tqdm

    table = samples_table(run) if table is None else table
    images, resized = [], 0
    for rel in tqdm(table["file"].tolist(), desc="read samples", unit="img", leave=False, disable=not progress):
        a = read_sample(run, rel)
        if size is not None and a.shape != (size, size):
            a = resize_gray16(a, size)
            resized += 1
        images.append(a)
    shapes = sorted({a.shape for a in images})
    if len(shapes) > 1:
        raise RunDataError(f"{run.samples}: synthetic images have different sizes {shapes}")
    pixels = np.stack(images) if images else np.zeros((0, size or 1, size or 1), np.uint16)
    return Images(table["image_id"].astype(str).tolist(), pixels, table["file"].astype(str).tolist(), resized)


# -- labels of the index and samples tables (each read, and its check, here) ------------------------------

def labels_cell(raw, where: str) -> dict:
    """The ``labels`` JSON of one data/index.parquet row (``{"keypoints": {label: [x, y]}, "curvature": 1-5,
    "sex": ..., "age": ...}``, written by ``cspine prepare``) as a dict; an empty cell is ``{}``. Anything that
    is not a JSON object is a RunDataError naming ``where``."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)) or (isinstance(raw, (str, bytes)) and not raw):
        return {}
    try:
        out = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as err:
        raise RunDataError(f"{where}: labels are not JSON: {err}") from None
    if not isinstance(out, dict):
        raise RunDataError(f"{where}: labels are not a JSON object but {type(out).__name__}")
    return out


def curvature_value(v, where: str) -> int:
    """1-5 from a curvature value (None/NaN -> 0, unknown). Anything else is a RunDataError naming ``where``."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return 0
    try:
        c = int(v)
    except (TypeError, ValueError):
        raise RunDataError(f"{where}: curvature {v!r} is not an integer 1-5") from None
    if c != v or c not in CURVATURE_CLASSES or isinstance(v, bool):
        raise RunDataError(f"{where}: curvature {v!r} is not one of 1-5 ({CURVATURE_CLASSES})")
    return c


def keypoint_array(obj, where: str) -> np.ndarray:
    """``[23, 2]`` float from a ``{label: [x, y]}`` dict or its JSON string (unknown labels ignored, missing
    ones NaN; None or NaN -> all NaN). A malformed value is a RunDataError naming ``where``."""
    out = np.full((len(KEYPOINT_LABELS), 2), np.nan)
    if obj is None or (isinstance(obj, float) and np.isnan(obj)):
        return out
    try:
        d = json.loads(obj) if isinstance(obj, (str, bytes)) else obj
        if d is None:
            return out
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object {{label: [x, y]}}, got {type(d).__name__}")
        for i, name in enumerate(KEYPOINT_LABELS):
            if name in d and d[name] is not None:
                x, y = d[name]
                out[i] = float(x), float(y)
    except (ValueError, TypeError) as err:
        raise RunDataError(f"{where}: unreadable keypoints: {err}") from None
    return out
