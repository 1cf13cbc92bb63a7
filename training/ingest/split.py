"""Deterministic train/holdout split by case, so no patient is on both sides.

Part of ingestion (``cspine prepare``). Each case id is hashed with the run seed to a number in [0, 1);
cases below ``holdout_fraction`` are held out. A case's side depends only on (seed, case id), so adding
images or cases never moves an existing case; the privacy audit calibrates on the holdout side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def case_score(case_id: str, seed: int) -> float:
    """A uniform number in [0, 1) from (seed, case id)."""
    h = hashlib.sha256(f"cspine-split\x00{seed}\x00{case_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def assign_splits(case_ids: Iterable[str], holdout_fraction: float, seed: int) -> dict[str, str]:
    """Map each case id to "train" or "holdout".

    With at least two cases and a positive fraction, both sides get at least one case (the case with
    the lowest score is held out, the highest trained on), so tiny runs still have a holdout set.
    """
    cases = sorted(set(case_ids))
    scores = {c: case_score(c, seed) for c in cases}
    out = {c: ("holdout" if scores[c] < holdout_fraction else "train") for c in cases}
    if len(cases) >= 2 and holdout_fraction > 0:
        ranked = sorted(cases, key=lambda c: scores[c])
        if "holdout" not in out.values():
            out[ranked[0]] = "holdout"
        if "train" not in out.values():
            out[ranked[-1]] = "train"
    return out
