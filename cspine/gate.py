"""The release gate: how packaging and publishing ask whether a run's privacy audit lets its samples out.

It is in the core because the audit (privacy/) writes it and the release (release/) reads it, and a stage
never imports another's internals. ``cspine audit`` writes ``audit/summary.json``; :func:`read_gate` reads
it back into a :class:`Gate`. Whether the audit is still current (same samples, weights and data) is the
provenance records' job (cspine.stages, release.coverage), not this module's.
A run may be released when its audit passed, i.e. no synthetic image was flagged as too close to a
training image, or the flagged ones were excluded (``--exclude-flagged`` / ``audit.exclude_flagged``),
in which case ``excluded`` holds the image ids that packaging must drop. A missing or unreadable audit is
a failed gate whose ``reason`` says what to run.

Excluding flagged images is only for the few that a model which does not memorise gets flagged by chance.
When far more are flagged than chance explains, the model itself reproduces training images, the weights
would leak them however many images are dropped, and the gate closes for images and weights alike
(:func:`flag_ceiling`, ``audit.max_flag_rate``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cspine.rundir import RunDir

#: One-sided confidence of the derived flag-rate ceiling: an audit of a model that does not memorise exceeds
#: it by chance at most 1 - CEILING_CONFIDENCE of the time (0.1%).
CEILING_CONFIDENCE = 0.999


@dataclass(frozen=True)
class FlagCeiling:
    """The most flagged images the gate allows (``max_flagged`` of ``n_samples``, i.e. ``rate``) and why."""

    rate: float
    max_flagged: int
    n_samples: int
    chance_rate: float | None  # per-image chance of a flag for a model that does not memorise (None: configured)
    rule: str

    def exceeded(self, n_flagged: int) -> bool:
        return n_flagged > self.max_flagged

    def summary(self, n_flagged: int) -> dict:
        """The summary.json fields: the flag rate, the ceiling, whether it closed the gate and why."""
        over = self.exceeded(n_flagged)
        rate = n_flagged / self.n_samples if self.n_samples else 0.0
        out = {
            "flag_rate": rate,
            "max_flag_rate": self.rate,
            "max_flagged": self.max_flagged,
            "chance_flag_rate": self.chance_rate,
            "max_flag_rate_rule": self.rule,
            "flag_rate_exceeded": over,
        }
        if over:
            out["flag_rate_reason"] = (
                f"{n_flagged} of {self.n_samples} synthetic images ({rate:.1%}) are flagged, above the ceiling of "
                f"{self.max_flagged} ({self.rate:.1%}; {self.rule}): the model looks like it memorises its training "
                "images, and dropping the flagged ones (--exclude-flagged) would still release weights that "
                "reproduce them"
            )
        return out


def flag_ceiling(chance_rates: dict[str, float], n_samples: int, configured: float | None = None,
                 confidence: float = CEILING_CONFIDENCE) -> FlagCeiling:
    """The flag-rate ceiling for ``n_samples`` synthetic images.

    ``configured`` (``audit.max_flag_rate``), when given, is the ceiling. Otherwise it is derived from the
    calibration: ``chance_rates`` holds, per method, the chance that an image from the real distribution that
    the model never copied is flagged (the calibrated quantile, at least 1/(n_holdout+1), plus the share of
    holdout images within the method's absolute floor). An image is flagged when any method flags it, so its
    chance is at most the sum (union bound, capped at 1; with ``min_methods`` > 1 the true chance is lower, so
    the bound only errs towards letting chance flags pass). The number of chance flags among ``n_samples``
    independent samples is then at most Binomial(n_samples, p), and the ceiling is its one-sided
    ``confidence`` upper quantile: a model that does not memorise exceeds it with probability at most
    1 - confidence, while a memorising one, whose samples are flagged far more often than 1 in n_holdout, is
    caught. Chosen over "2x chance + noise" because it holds at every n: for the demo (4 methods, 64
    holdout images, so p = 4/65, and 64 samples) it allows 11 flags (17%) where the mean is 3.9.
    """
    if configured is not None:
        k = int(np.floor(configured * n_samples + 1e-9))
        return FlagCeiling(float(configured), k, n_samples, None, f"audit.max_flag_rate = {configured:g}")
    from scipy.stats import binom

    p = float(min(1.0, sum(chance_rates.values())))
    k = int(binom.ppf(confidence, n_samples, p)) if n_samples else 0
    parts = " + ".join(f"{name} {r:.3g}" for name, r in chance_rates.items())
    rule = (f"the {confidence:.1%} one-sided binomial bound of chance flags among {n_samples} samples at a "
            f"per-image chance of at most {p:.3g} ({parts})")
    return FlagCeiling(k / n_samples if n_samples else 0.0, k, n_samples, p, rule)


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
    if summary.get("flag_rate_exceeded"):
        return Gate(
            False,
            excluded,
            "audit failed: the model looks like it memorises, so neither images nor weights ship. "
            f"{summary.get('flag_rate_reason') or 'Far more synthetic images are flagged than chance allows'}. "
            "Retrain it (more training images, fewer steps, a smaller model), then sample and audit again; "
            f"see {Path(source).parent / 'report.html'}",
        )
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
