"""The release gate: how packaging and publishing ask whether a run's privacy audit lets its samples out.

It is in the core because the audit (privacy/) writes it and the release (release/) reads it, and a stage
never imports another's internals. ``cspine audit`` writes ``audit/summary.json``; :func:`read_gate` reads
it back into a :class:`Gate`. Whether the audit is still current (same samples, weights and data) is the
provenance records' job (cspine.stages, release.coverage), not this module's.
A run may be released when its audit passed, i.e. no synthetic image was flagged as too close to a
training image, or the flagged ones were excluded (``--exclude-flagged`` / ``audit.exclude_flagged``),
in which case ``excluded`` holds the image ids that packaging must drop. A missing or unreadable audit is
a failed gate whose ``reason`` says what to run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cspine.rundir import RunDir


@dataclass(frozen=True)
class Gate:
    """``passed``: release allowed; ``excluded``: synthetic image ids to leave out; ``reason``: one line."""

    passed: bool
    excluded: set[str] = field(default_factory=set)
    reason: str = ""


def gate_from_summary(summary: dict, source: str = "summary.json") -> Gate:
    """Decide the gate from a parsed ``audit/summary.json``."""
    for key in ("passed", "n_flagged", "excluded"):
        if key not in summary:
            return Gate(False, set(), f"{source} has no {key!r}: rerun `cspine audit`")
    excluded = set(map(str, summary.get("excluded") or []))
    n_flagged = int(summary["n_flagged"])
    if summary["passed"]:
        if excluded:
            return Gate(True, excluded, f"audit passed after excluding {len(excluded)} flagged image(s)")
        return Gate(True, set(), f"audit passed: none of {summary.get('n_samples', '?')} synthetic images flagged")
    return Gate(
        False,
        excluded,
        f"audit failed: {n_flagged} of {summary.get('n_samples', '?')} synthetic images are too close to a "
        f"training image (see {Path(source).parent / 'report.html'}); inspect them, then rerun "
        "`cspine audit --exclude-flagged` to release the rest",
    )


def read_gate(run: RunDir | str | Path) -> Gate:
    """The gate of a run directory; a missing or broken ``audit/summary.json`` fails it with a reason."""
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    path = run.audit_summary
    if not path.is_file():
        return Gate(False, set(), f"{path} not found: run `cspine audit` first")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        return Gate(False, set(), f"{path} is unreadable ({err}): rerun `cspine audit`")
    if not isinstance(summary, dict):
        return Gate(False, set(), f"{path} is not a JSON object: rerun `cspine audit`")
    return gate_from_summary(summary, str(path))
