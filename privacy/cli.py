"""`cspine audit`: the privacy audit of samples/ against the training images, and the release gate.

Reads data/ and samples/ of the run (privacy/inputs.py), runs every configured method
(privacy/embedders.py -> search.py -> calibrate.py via audit.py) and writes audit/ (privacy/outputs.py).
An audit whose inputs and settings are unchanged is skipped. Exit status: 0 when the gate passes, 1 when
a synthetic image is flagged (and not excluded), so scripts and `cspine release` stop there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time

from cspine.stage import add_run_options, open_run

log = logging.getLogger("cspine.audit")

DESCRIPTION = """\
Privacy audit: for every synthetic image in samples/, find its nearest training images under each method
(CLIP, Inception-v3, pHash, dHash, pixel correlation), calibrate thresholds on held-out real images
(flag a synthetic image closer to training than nearly all real unseen images are, or within an absolute
floor), report DCR statistics, and write audit/ (audit.parquet, summary.json, summary.md, figures/,
report.html with the most similar pairs side by side). The audit passes only when no synthetic image is
flagged; --exclude-flagged releases the rest and records each exclusion. Exit status 1 when it fails.
Training/holdout features are cached by pixel hash under $CSPINE_CACHE (default runs/.cache/features)."""


def settings_fingerprint(audit_cfg, exclude: bool, inputs_fp: dict) -> str:
    blob = json.dumps({"audit": audit_cfg.model_dump(mode="json"), "exclude": exclude, "inputs": inputs_fp},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def quick_inputs_fingerprint(run) -> dict:
    from cspine.hashing import sha256_file

    return {
        "index_sha256": sha256_file(run.index) if run.index.is_file() else "",
        "pixels_size": str(run.pixels.stat().st_size) if run.pixels.is_file() else "",
        "samples_sha256": sha256_file(run.samples_table) if run.samples_table.is_file() else "",
    }


def cmd_audit(args: argparse.Namespace) -> int:
    cfg, run = open_run(args)
    acfg = cfg.audit
    if args.methods:
        from pydantic import ValidationError

        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        try:
            acfg = type(acfg).model_validate(acfg.model_dump() | {"methods": methods})
        except ValidationError:
            raise SystemExit(f"--methods {args.methods!r}: choose from clip,inception,phash,dhash,pixel") from None
    exclude = bool(args.exclude_flagged or acfg.exclude_flagged)
    summary_path = run.audit / "summary.json"
    fp = settings_fingerprint(acfg, exclude, quick_inputs_fingerprint(run))
    if summary_path.is_file() and not args.force:
        try:
            old = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("fingerprint") == fp:
            print(f"audit: up to date ({summary_path}); passed={old.get('passed')} (use --force to redo)")
            return 0 if old.get("passed") else 1

    import torch

    from cspine.feature_cache import FeatureCache
    from privacy.audit import audit_arrays
    from privacy.embedders import build_embedders
    from privacy.inputs import load_inputs
    from privacy.outputs import write_outputs

    torch.set_num_threads(os.cpu_count() or 1)  # embedding runs batched on every core
    t0 = time.perf_counter()
    from privacy.inputs import AuditInputError

    try:
        inputs = load_inputs(run)
    except AuditInputError as err:
        print(f"cspine audit: {err}", file=sys.stderr)
        return 2
    notes: list[str] = []
    embedders = build_embedders(acfg, notes)
    progress = not args.no_progress
    result = audit_arrays(inputs, embedders, acfg, FeatureCache(), exclude, notes, progress=progress, seed=cfg.seed)
    result.summary["fingerprint"] = fp
    result.summary["inputs"] = inputs.fingerprint
    result.summary["seconds"] = round(time.perf_counter() - t0, 2)
    write_outputs(run, result, inputs, acfg.report_pairs)
    s = result.summary
    print(f"audit: {s['n_samples']} synthetic vs {s['n_train']} training ({', '.join(s['methods_run'])}) "
          f"in {s['seconds']:.0f} s: {s['n_flagged']} flagged, {s['n_excluded']} excluded -> "
          f"{'PASSED' if s['passed'] else 'FAILED'}; report {run.audit / 'report.html'}")
    for note in s["notes"]:
        print(f"  note: {note}")
    if not s["passed"]:
        print("  the release gate is closed: inspect report.html, then rerun with --exclude-flagged to release the rest")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="privacy audit of samples/ against the training images (the release gate)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p)
    p.add_argument("--exclude-flagged", action="store_true",
                   help="exclude flagged images from the release (recorded in summary.json) instead of failing")
    p.add_argument("--methods", default=None,
                   help="comma-separated subset of clip,inception,phash,dhash,pixel (default: audit.methods)")
    p.add_argument("--force", action="store_true", help="redo the audit even if its inputs are unchanged")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_audit)
