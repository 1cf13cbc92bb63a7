"""`cspine prepare`: radiographs in ``data.path`` to the run's data/ folder.

Reads only the input folder; writes only ``data/``:

    data/pixels.npy          uint16 [N, R, R], every kept image cropped square around the spine (its keypoints'
                             centre, else the image centre; never padded, see ``resize``) and resized to R = data.resolution
    data/index.parquet       INDEX_COLUMNS; ``cache_row`` is the row of pixels.npy; ``labels`` is JSON
    data/ingest_report.json  skipped files with reasons, duplicates, warnings, counts

Steps: list the inputs (``csxa.list_csxa`` for csxa/phantom, ``folder.list_folder`` for folder), decode
each once (in worker processes: ``decode.decode_file``, then ``resize.fit_square``), keep the first of
each group of byte-identical files, decide cases (from the file name for csxa/phantom, by
``folder.folder_cases`` for folder) and the split (``split.assign_splits``), map keypoints into cache
coordinates, then write the three files atomically, the report last. The run fails (after writing the
report) only when the share of bad files exceeds ``data.max_bad_fraction``. Whether data/ is up to date
is the stage table's provenance record (data/record.json), not this module's business: this always ingests.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cspine import atomic
from cspine.parallel import map_with_progress
from cspine.rundir import INDEX_COLUMNS, RunDir
from training.ingest.csxa import Item, list_csxa
from training.ingest.decode import decode_file
from training.ingest.errors import BadFile, IngestError
from training.ingest.folder import folder_cases, list_folder
from training.ingest.report import build_report
from training.ingest.resize import anatomy_centre, fit_square
from training.ingest.split import assign_splits

log = logging.getLogger("cspine.prepare")


def _process(job: tuple[str, int, int, tuple[float, float] | None]) -> dict[str, Any]:
    """Worker: decode one file and fit it into the cache resolution (pure in its arguments)."""
    path, max_pixels, size, centre = job
    try:
        dec = decode_file(path, max_pixels)
    except BadFile as bad:
        return {"ok": False, "reason": bad.code, "detail": bad.detail}
    except MemoryError:
        return {"ok": False, "reason": "decompression_bomb", "detail": "out of memory while decoding"}
    except Exception as err:  # a decoder bug must not take the whole run down
        return {"ok": False, "reason": "unreadable_image", "detail": f"{type(err).__name__}: {err}"}
    cached, fit = fit_square(dec.pixels, size, centre)
    return {"ok": True, "sha256": dec.sha256, "pixels": cached, "fit": fit, "kind": dec.kind, "group": dec.group,
            "width": dec.width, "height": dec.height}


def _decode_all(items: list[Item], max_pixels: int, size: int, workers: int, progress: bool) -> list[dict]:
    jobs = [(str(it.path), max_pixels, size, anatomy_centre(it.keypoints)) for it in items]
    return map_with_progress(_process, jobs, workers, "prepare", progress, min_parallel=32)


def _list_inputs(source: str, root: Path, phantom_cfg=None) -> tuple[list[Item], list[str], dict]:
    """Items, ignored files, and listing info."""
    if not root.is_dir():
        hint = " (run `cspine demo-data` first)" if source == "phantom" else ""
        raise IngestError(f"data.path {root} is not a folder{hint}")
    if source == "folder":
        items, ignored = list_folder(root)
        return items, ignored, {}
    if source == "phantom":
        from training.phantom.folder import MANIFEST, is_complete

        if not (root / MANIFEST).is_file():
            raise IngestError(f"{root} has no finished phantom data ({MANIFEST} missing): run `cspine demo-data` first")
        if phantom_cfg is not None and not is_complete(root, phantom_cfg):
            raise IngestError(f"the phantom data in {root} was made with another data.phantom config (or is missing "
                              "files): run `cspine demo-data` with this config first")
    items, info = list_csxa(root)
    return items, [], info


def _assign_cases(items: list[Item], results: list[dict], keep: list[int]) -> dict[str, int]:
    """Folder source: set each kept item's case id (``folder.folder_cases``); return the per-rule counts."""
    ids, counts = folder_cases([items[i].rel for i in keep], [results[i].get("group") for i in keep])
    for i, case_id in zip(keep, ids):
        items[i].case_id = case_id
    return counts


def _labels(item: Item, fit) -> str:
    out: dict[str, Any] = {}
    if item.keypoints is not None:
        out["keypoints"] = {k: [round(v, 3) for v in fit.point(x, y)] for k, (x, y) in item.keypoints.items()}
    for key in ("curvature", "sex", "age"):
        if key in item.meta:
            out[key] = item.meta[key]
    return json.dumps(out, sort_keys=False)


def prepare(cfg, run: RunDir, workers: int | None = None, progress: bool = True) -> dict:
    """Ingest ``cfg.data`` into ``run.data``; return the report."""
    t0 = time.time()
    data = cfg.data
    root = Path(data.path)
    items, ignored, info = _list_inputs(data.source, root, data.phantom)
    if not items:
        raise IngestError(f"no input images found under {root} (data.path, data.source={data.source})")
    run.data.mkdir(parents=True, exist_ok=True)
    atomic.clean_temporaries(run.data)
    # while this run works, data/ is not finished: no index or report from an older run may be read
    for old in (run.ingest_report, run.index):
        old.unlink(missing_ok=True)

    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    results = _decode_all(items, data.max_image_pixels, data.resolution, workers, progress)

    skipped, duplicates, warnings, keep = [], [], [], []
    first_by_sha: dict[str, str] = {}
    json_mismatch = 0
    for i, (item, res) in enumerate(zip(items, results)):
        if not res["ok"]:
            skipped.append({"file": item.rel, "reason": res["reason"], "detail": res["detail"]})
            continue
        if res["sha256"] in first_by_sha:
            duplicates.append({"file": item.rel, "duplicate_of": first_by_sha[res["sha256"]], "sha256": res["sha256"]})
            continue
        first_by_sha[res["sha256"]] = item.rel
        warnings.extend(item.warnings)
        if item.json_size is not None and item.json_size != (res["width"], res["height"]):
            json_mismatch += 1
            warnings.append({"file": item.rel, "warning": "json_size_mismatch",
                             "detail": f"JSON says {item.json_size[0]}x{item.json_size[1]}, image is "
                                       f"{res['width']}x{res['height']}; keypoints kept in image pixels"})
        keep.append(i)

    n_files = len(items)
    bad_fraction = len(skipped) / n_files
    extra = {**info, "json_size_mismatch": json_mismatch}

    def fail(message: str) -> None:
        report = build_report(source=data.source, path=str(root), resolution=data.resolution,
                              n_files=n_files, skipped=skipped, duplicates=duplicates, ignored=ignored,
                              warnings=warnings, splits={}, cases={}, max_bad_fraction=data.max_bad_fraction,
                              seconds=time.time() - t0, status="failed", extra=extra)
        for stale in (run.index, run.pixels):  # never leave a cache that disagrees with the report
            if stale.exists():
                stale.unlink()
        atomic.write_json(run.ingest_report, report)
        raise IngestError(f"{message}; see {run.ingest_report}")

    if bad_fraction > data.max_bad_fraction:
        fail(f"{len(skipped)} of {n_files} input files ({bad_fraction:.1%}) are bad, more than "
             f"data.max_bad_fraction={data.max_bad_fraction:g}")
    if not keep:
        fail(f"none of the {n_files} input files under {root} could be used")

    if data.source == "folder":
        extra["cases_by_rule"] = _assign_cases(items, results, keep)
    splits = assign_splits([items[i].case_id for i in keep], data.holdout_fraction, cfg.seed)

    keep.sort(key=lambda i: items[i].image_id)
    size = data.resolution
    pixels = np.empty((len(keep), size, size), np.uint16)
    rows = []
    for row, i in enumerate(keep):
        item, res = items[i], results[i]
        pixels[row] = res["pixels"]
        fit = res["fit"]
        outside = [k for k, (x, y) in (item.keypoints or {}).items() if not fit.inside(x, y)]
        if outside:
            warnings.append({"file": item.rel, "warning": "keypoints_outside_crop",
                             "detail": f"{len(outside)} keypoints outside the square crop ({', '.join(outside[:3])}"
                                       f"{', ...' if len(outside) > 3 else ''}); kept with coordinates outside 0..{size}"})
        rows.append({
            "image_id": item.image_id,
            "source": item.rel,
            "sha256": res["sha256"],
            "split": splits[item.case_id],
            "case_id": item.case_id,
            "labels": _labels(item, fit),
            "width": res["width"],
            "height": res["height"],
            "cache_row": row,
        })
    index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    index["width"] = index["width"].astype("int64")
    index["height"] = index["height"].astype("int64")
    index["cache_row"] = index["cache_row"].astype("int64")

    with atomic.atomic_path(run.pixels) as tmp:
        np.save(tmp, pixels)
    with atomic.atomic_path(run.index) as tmp:
        index.to_parquet(tmp, index=False)
    split_counts = index["split"].value_counts().to_dict()
    case_counts = index.drop_duplicates("case_id")["split"].value_counts().to_dict()
    report = build_report(source=data.source, path=str(root), resolution=size, n_files=n_files,
                          skipped=skipped, duplicates=duplicates, ignored=ignored, warnings=warnings,
                          splits=split_counts, cases=case_counts, max_bad_fraction=data.max_bad_fraction,
                          seconds=time.time() - t0, status="ok", extra=extra)
    atomic.write_json(run.ingest_report, report)
    log.info("prepare: %d images (%d train, %d holdout, %d cases), %d skipped, %d duplicates in %.1fs",
             len(index), split_counts.get("train", 0), split_counts.get("holdout", 0), index.case_id.nunique(),
             len(skipped), len(duplicates), time.time() - t0)
    return report
