"""Parquet shards in the layout and schema that Hugging Face ``datasets`` reads natively.

Rows are planned into shards by the size of their PNGs (so the shard count N, and the names
``data/train-0000k-of-0000N.parquet``, are known before anything is written). Each image goes in byte for
byte as the sample stage wrote it, so the sha256 of every released image is the sha256 the privacy audit
recorded (release.coverage checks exactly that); :func:`release_png` refuses a file carrying anything but
image data (text, EXIF or time chunks). Each shard is written to a ``.tmp-`` name and renamed when complete,
and carries a fingerprint of its rows in its schema metadata so a re-run skips shards that are already right.
The ``image`` column is the ``datasets`` Image feature (struct of ``bytes`` and ``path``) and the schema
holds the ``huggingface`` feature metadata, so ``load_dataset`` decodes it without a loading script.

The label columns of conditional samples are typed features, not strings: ``curvature`` is a ``ClassLabel``
whose integer is the CSXA class number (names :data:`CURVATURE_NAMES`, index 0 "unconditional" for an image
drawn without a class, so 1-5 keep the numbering of the CSXA metadata sheet), and ``keypoints`` a list of
named points ``{"label", "x", "y"}`` in KEYPOINT_LABELS order, in the image's pixels (empty without a layout).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from cspine import atomic
from cspine.labels import CURVATURE_CLASSES

FORMAT_VERSION = 1
META_KEY = b"cspine"

#: ClassLabel names of the ``curvature`` column: the index is the CSXA class number; 0 = drawn without a class.
CURVATURE_NAMES = ("unconditional", *CURVATURE_CLASSES.values())


def shard_name(k: int, n: int, split: str = "train") -> str:
    return f"{split}-{k:05d}-of-{n:05d}.parquet"


def plan_shards(sizes: Iterable[int], target_bytes: float) -> list[range]:
    """Cut rows, in order, into consecutive ranges whose summed sizes stay near ``target_bytes``."""
    out: list[range] = []
    start, acc = 0, 0
    sizes = list(sizes)
    for i, s in enumerate(sizes):
        if i > start and acc + s > target_bytes:
            out.append(range(start, i))
            start, acc = i, 0
        acc += s
    if sizes:
        out.append(range(start, len(sizes)))
    return out


#: PNG chunks a released image may hold: image data only (no tEXt/iTXt/zTXt, eXIf, tIME, ...).
PNG_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"sBIT", b"gAMA", b"cHRM", b"sRGB", b"tRNS", b"pHYs"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk_types(data: bytes) -> list[bytes]:
    """The chunk types of a PNG byte string, in order (ValueError when it is not a well-formed PNG)."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    out, pos = [], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        out.append(data[pos + 4:pos + 8])
        pos += 12 + length
        if out[-1] == b"IEND":
            return out
    raise ValueError("truncated PNG (no IEND chunk)")


def release_png(path: str) -> bytes:
    """The bytes of a sample PNG, unchanged, after checking they hold image data only."""
    data = Path(path).read_bytes()
    try:
        extra = sorted({c.decode("latin-1") for c in png_chunk_types(data)} - {c.decode() for c in PNG_CHUNKS})
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if extra:
        raise ValueError(f"{path}: PNG carries metadata chunks {extra}; only image data is released")
    return data


def features_for(columns: pd.DataFrame):
    """The ``datasets.Features`` of a shard: an Image column plus the metadata columns of ``columns``."""
    import datasets

    feats = {"image": datasets.Image()}
    for name, dtype in columns.dtypes.items():
        if name == "curvature":
            feats[name] = datasets.ClassLabel(names=list(CURVATURE_NAMES))
        elif name == "keypoints":
            feats[name] = datasets.List({"label": datasets.Value("string"), "x": datasets.Value("float32"),
                                         "y": datasets.Value("float32")})
        elif pd.api.types.is_bool_dtype(dtype):
            feats[name] = datasets.Value("bool")
        elif pd.api.types.is_integer_dtype(dtype):
            feats[name] = datasets.Value("int64")
        elif pd.api.types.is_float_dtype(dtype):
            feats[name] = datasets.Value("float32")
        else:
            feats[name] = datasets.Value("string")
    return datasets.Features(feats)


def label_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """samples.parquet's ``curvature`` (1-5 or null) and ``keypoints`` (JSON or null) as the shard columns:
    the ClassLabel index (0 for null) and a list of {label, x, y} (empty for null)."""
    out = rows.copy()
    if "curvature" in out:
        out["curvature"] = [0 if pd.isna(v) else int(v) for v in out["curvature"]]
        out["curvature"] = out["curvature"].astype("int64")
    if "keypoints" in out:
        out["keypoints"] = [
            [] if not isinstance(v, str) or not v else
            [{"label": k, "x": float(x), "y": float(y)} for k, (x, y) in json.loads(v).items()]
            for v in out["keypoints"]
        ]
    return out


def arrow_schema(features) -> pa.Schema:
    """Arrow schema with the ``huggingface`` metadata that ``datasets`` uses to restore the features."""
    schema = features.arrow_schema
    meta = dict(schema.metadata or {})
    meta.setdefault(b"huggingface", json.dumps({"info": {"features": features.to_dict()}}).encode())
    return schema.with_metadata(meta)


def fingerprint(rows: pd.DataFrame, file_sha: list[str], settings: dict) -> str:
    """Hash of everything a shard's bytes depend on: its rows, their source files and the settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": FORMAT_VERSION, **settings}, sort_keys=True).encode())
    h.update(rows.to_json(orient="records", double_precision=10).encode())
    h.update("".join(file_sha).encode())
    return h.hexdigest()


def shard_fingerprint(path: Path) -> str | None:
    """The fingerprint stored in a finished shard, or None when it is unreadable or has none."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return None
    raw = meta.get(META_KEY)
    return json.loads(raw).get("fingerprint") if raw else None


@dataclass
class ShardJob:
    path: Path
    rows: pd.DataFrame  # metadata columns, in output order (no image)
    files: list[str]  # image file per row
    fingerprint: str


def write_shard(job: ShardJob, images: list[bytes], features, rows_per_group: int) -> None:
    """Write one shard atomically: temp name, row groups of ``rows_per_group``, rename."""
    schema = arrow_schema(features)
    meta = dict(schema.metadata)
    meta[META_KEY] = json.dumps({"fingerprint": job.fingerprint, "format": FORMAT_VERSION}).encode()
    schema = schema.with_metadata(meta)
    cols = {"image": pa.array([{"bytes": b, "path": None} for b in images], type=schema.field("image").type)}
    for name in job.rows.columns:
        cols[name] = pa.array(job.rows[name].tolist(), type=schema.field(name).type)
    table = pa.Table.from_pydict(cols, schema=schema)
    with atomic.atomic_path(job.path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=True) as w:
            w.write_table(table, row_group_size=rows_per_group)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())


def write_shards(jobs: list[ShardJob], features, rows_per_group: int) -> int:
    """Write the shards that are missing or stale; return how many were written. Images are read in this
    process: they are copied as they are, not encoded, so worker processes would only add their start-up."""
    todo = [j for j in jobs if not (j.path.is_file() and shard_fingerprint(j.path) == j.fingerprint)]
    if not todo:
        return 0
    bar = tqdm(total=sum(len(j.files) for j in todo), desc="package: shards", unit="img")
    for job in todo:
        images = [release_png(f) for f in job.files]
        write_shard(job, images, features, rows_per_group)
        bar.update(len(images))
    bar.close()
    return len(todo)


def uncompressed_bytes(path: Path) -> int:
    """In-memory size of a shard's data (the Hub's dataset_info num_bytes)."""
    md = pq.read_metadata(path)
    return sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
