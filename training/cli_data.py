"""The data commands of `cspine`: ``demo-data`` (phantom radiographs) and ``prepare`` (ingestion).

Thin: they call ``training.phantom.write_phantom_folder`` and ``training.ingest.prepare.prepare``; the stage
table (cspine.stages) runs them under their provenance records. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import argparse

from cspine.command import Command

DEMO_HELP = """\
Write the procedural phantom data set: lateral cervical-spine radiographs (skull base, C1, C2 with the
dens to C7 with posterior elements, along a lordotic, straight, sigmoid, reverse-sigmoid or kyphotic
curve) that vary as real films do: per patient neck build, shoulders, age-related degeneration and, in
some, an anterior plate with screws; per image flexion/extension, head nod, rotation, magnification and
position, collimator edges, exposure, noise and display curve, lead L/R markers and burned-in text
(training/phantom/, distributions in its docstrings). Written in the CSXA layout at data.path:
datasets-PNG/ (16-bit), datasets-JSON/ (LabelMe, 23 keypoints), CSXA-metadata.xlsx (sex, age,
curvature class 1-5). Sizes and seed come from data.phantom. Deterministic by seed; skipped when the
folder is already complete for the same config. Only for data.source: phantom."""

PREPARE_HELP = """\
Ingest the radiographs at data.path into the run's data/ folder: data/pixels.npy (uint16 [N, R, R],
aspect kept and padded to R = data.resolution), data/index.parquet (image_id, source, sha256, split,
case_id, labels, width, height, cache_row) and data/ingest_report.json. data.source picks the reader:
phantom or csxa (datasets-PNG/ + datasets-JSON/ LabelMe keypoints + metadata sheet; case = first 4
digits of the file name) or folder (DICOM with modality/VOI LUTs, MONOCHROME1 inversion and JPEG 2000;
PNG/JPEG 8/16-bit gray or RGB; case = DICOM PatientID, else the parent folder, else the file). The
train/holdout split is by case, a pure function of the case and the seed (data.holdout_fraction), so
adding cases never moves an existing one. Exact duplicates are kept once; bad files (empty, truncated,
not an image, unreadable DICOM, wrong extension, over data.max_image_pixels) are skipped with their
reason in the report, and the command fails only when their share exceeds data.max_bad_fraction."""


def _progress_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--workers", type=int, default=None, help=f"{what} processes (default: min(4, CPUs))")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    _progress_options(p, "worker")


def _demo_run(cfg, run, args):
    from cspine.errors import StageError
    from training.phantom import write_phantom_folder

    if cfg.data.source != "phantom":
        raise StageError(f"data.source is {cfg.data.source!r}; demo-data writes phantom data only for "
                         "data.source: phantom")
    return write_phantom_folder(cfg.data.path, cfg.data.phantom, workers=args.workers,
                                progress=not args.no_progress)


def _demo_summary(manifest, cfg, run) -> str:
    state = "already complete" if manifest.get("skipped") else "written"
    return f"demo-data: {manifest['images']} phantom radiographs of {manifest['cases']} cases in {cfg.data.path} ({state})"


def _prepare_arguments(p: argparse.ArgumentParser) -> None:
    _progress_options(p, "decoding")
    p.add_argument("--force", action="store_true", help="redo even when data/ is up to date")


def _prepare_run(cfg, run, args):
    from training.ingest.prepare import prepare

    return prepare(cfg, run, workers=args.workers, progress=not args.no_progress)


def _prepare_summary(report, cfg, run) -> str:
    c = report["counts"]
    return (f"prepare: {c['ok']} images ({c['train']} train / {c['holdout']} holdout, {c['cases']} cases), "
            f"{c['skipped']} skipped, {c['duplicates']} duplicates -> {run.data} ({report['seconds']:.1f}s)")


DEMO = Command(DEMO_HELP, _demo_run, _demo_summary, _demo_arguments)
PREPARE = Command(PREPARE_HELP, _prepare_run, _prepare_summary, _prepare_arguments)
