"""`cspine audit`: the privacy audit of samples/ against the training images, and the release gate.

Reads data/ and samples/ of the run (privacy/inputs.py), runs every configured method
(privacy/embedders.py -> search.py -> calibrate.py via audit.py) and writes audit/ (privacy/outputs.py).
The stage table keeps audit/record.json: the sha256 of every sample image audited, of the weights that
made them and of the training data, which is what packaging and publishing check the release against.
Exit status: 0 when the gate passes, 1 when it is closed, 2 for missing or bad inputs.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import typing

from cspine.command import Command
from cspine.errors import StageError
from privacy.config import Method

log = logging.getLogger("cspine.audit")

DESCRIPTION = """\
Privacy audit: for every synthetic image in samples/, find its nearest training images under each method
(default: pHash, dHash, pixel correlation and copydetect, which aligns SSCD-style candidates to find
rotated, cropped, filtered or annotated copies; CLIP and Inception-v3 on request), measure what each method
catches of training images copied under every change of privacy/power.py (in memory, never released),
calibrate thresholds on held-out real images (flag a synthetic image closer to training than nearly all real
unseen images are, or within an absolute floor), report DCR statistics, and write audit/ (audit.parquet,
summary.json, summary.md, figures/, report.html with the power table and the most similar pairs side by
side). The audit passes only when no synthetic image is flagged; --exclude-flagged releases the rest and
records each exclusion, unless so many are flagged that the model looks like it memorises
(audit.max_flag_rate). Exit status 1 when the gate is closed, 2 for missing or bad inputs.
Training/holdout features are cached by pixel hash under $CSPINE_CACHE (default runs/.cache/features)."""

METHODS = typing.get_args(Method)  # every method the config accepts


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exclude-flagged", action="store_true",
                   help="exclude flagged images from the release (recorded in summary.json) instead of failing")
    p.add_argument("--methods", default=None, help=f"comma-separated subset of {','.join(METHODS)} "
                   "(default: audit.methods)")
    p.add_argument("--force", action="store_true", help="redo the audit even if its inputs are unchanged")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _configure(cfg, args):
    """--methods and --exclude-flagged are audit config: the audit's record keeps them."""
    from pydantic import ValidationError

    update = {}
    if args.exclude_flagged:
        update["exclude_flagged"] = True
    if args.methods:
        update["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not update:
        return cfg
    try:
        audit = type(cfg.audit).model_validate(cfg.audit.model_dump() | update)
    except ValidationError:
        raise StageError(f"--methods {args.methods!r}: choose from {','.join(METHODS)}") from None
    return cfg.model_copy(update={"audit": audit})


def _run(cfg, run, args) -> dict:
    import torch

    from cspine.feature_cache import FeatureCache
    from privacy.audit import audit_arrays
    from privacy.embedders import build_embedders
    from privacy.inputs import load_inputs
    from privacy.outputs import write_outputs

    acfg = cfg.audit
    torch.set_num_threads(os.cpu_count() or 1)  # embedding runs batched on every core
    t0 = time.perf_counter()
    inputs = load_inputs(run)
    notes: list[str] = []
    embedders = build_embedders(acfg, notes)
    result = audit_arrays(inputs, embedders, acfg, FeatureCache(), acfg.exclude_flagged, notes,
                          progress=not args.no_progress, seed=cfg.seed)
    result.summary["seconds"] = round(time.perf_counter() - t0, 2)
    write_outputs(run, result, inputs, acfg.report_pairs)
    return result.summary


def _summary(s, cfg, run) -> str:
    if s is None:
        s = {}
    lines = [f"audit: {s.get('n_samples')} synthetic vs {s.get('n_train')} training "
             f"({', '.join(s.get('methods_run', []))}) in {s.get('seconds', 0):.0f} s: {s.get('n_flagged')} flagged, "
             f"{s.get('n_excluded')} excluded -> {'PASSED' if s.get('passed') else 'FAILED'}; "
             f"report {run.audit / 'report.html'}"]
    lines += [f"  note: {note}" for note in s.get("notes", [])]
    return "\n".join(lines)


def _verdict(cfg, run) -> str | None:
    from cspine.gate import read_gate

    gate = read_gate(run)
    return None if gate.passed else f"the release gate is closed: {gate.reason}"


AUDIT = Command(DESCRIPTION, _run, _summary, _arguments, _configure, _verdict)
