"""The data subcommands of `cspine`: ``demo-data`` (phantom radiographs) and ``prepare`` (ingestion).

Thin wrappers: they validate the config (``cspine.stage.open_run``), call
``training.phantom.write_phantom_folder`` or ``training.ingest.prepare.prepare``, and turn an
ingestion failure into a one-line error and exit status 1. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import sys
import time

from cspine.stage import add_run_options

DEMO_HELP = """\
Write the procedural phantom data set: lateral cervical-spine radiographs (skull base, C1, C2 with the
dens to C7 with posterior elements, along a lordotic, straight, sigmoid, reverse-sigmoid or kyphotic
curve; soft tissue, airway, 16-bit, Poisson-like noise, blur and exposure variation) in the CSXA layout
at data.path: datasets-PNG/, datasets-JSON/ (LabelMe, 23 keypoints), CSXA-metadata.xlsx (sex, age,
curvature class 1-5). Sizes and seed come from data.phantom. Deterministic by seed; skipped when the
folder is already complete for the same config. Only for data.source: phantom."""

PREPARE_HELP = """\
Ingest the radiographs at data.path into the run's data/ folder: data/pixels.npy (uint16 [N, R, R],
aspect kept and padded to R = data.resolution), data/index.parquet (image_id, source, sha256, split,
case_id, labels, width, height, cache_row) and data/ingest_report.json. data.source picks the reader:
phantom or csxa (datasets-PNG/ + datasets-JSON/ LabelMe keypoints + metadata sheet; case = first 4
digits of the file name) or folder (DICOM with modality/VOI LUTs, MONOCHROME1 inversion and JPEG 2000;
PNG/JPEG 8/16-bit gray or RGB). The train/holdout split is by case (data.holdout_fraction, seed).
Exact duplicates are kept once; bad files (empty, truncated, not an image, unreadable DICOM, wrong
extension, over data.max_image_pixels) are skipped with their reason in the report, and the command
fails only when their share exceeds data.max_bad_fraction. Re-running with the same inputs and config
does nothing."""


def _demo_data(args: argparse.Namespace) -> int:
    from cspine.stage import open_run
    from training.phantom import write_phantom_folder

    cfg, _run = open_run(args)
    if cfg.data.source != "phantom" and args.out is None:
        print(f"cspine demo-data: data.source is {cfg.data.source!r} in {args.config}; demo-data writes phantom "
              "data only for data.source: phantom (or give --out FOLDER)", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else cfg.data.path
    t0 = time.time()
    manifest = write_phantom_folder(out, cfg.data.phantom, workers=args.workers, progress=not args.no_progress)
    state = "already complete" if manifest.get("skipped") else f"written in {time.time() - t0:.1f}s"
    print(f"demo-data: {manifest['images']} phantom radiographs of {manifest['cases']} cases in {out} ({state})")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from cspine.stage import open_run
    from training.ingest.errors import IngestError
    from training.ingest.prepare import prepare

    cfg, run = open_run(args)
    try:
        report = prepare(cfg, run, workers=args.workers, progress=not args.no_progress, force=args.force)
    except IngestError as err:
        print(f"cspine prepare: {err}", file=sys.stderr)
        return 1
    c = report["counts"]
    state = "up to date, nothing done" if report.get("skipped_run") else f"{report['seconds']:.1f}s"
    print(f"prepare: {c['ok']} images ({c['train']} train / {c['holdout']} holdout, {c['cases']} cases), "
          f"{c['skipped']} skipped, {c['duplicates']} duplicates -> {run.data} ({state})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("demo-data", help="write the procedural phantom radiographs (CSXA layout)",
                       description=DEMO_HELP, formatter_class=fmt)
    add_run_options(p)
    p.add_argument("--out", default=None, help="write here instead of data.path")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: min(4, CPUs))")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_demo_data)

    p = sub.add_parser("prepare", help="ingest radiographs (DICOM, PNG/JPEG, CSXA) into data/",
                       description=PREPARE_HELP, formatter_class=fmt)
    add_run_options(p)
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: min(4, CPUs))")
    p.add_argument("--force", action="store_true", help="redo even when data/ is up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare)
