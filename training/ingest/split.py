"""Deterministic train/holdout split by case (patient), so no patient is on both sides.

Part of ingestion (``cspine prepare``), after the cases are known (``csxa.case_of`` for csxa/phantom,
``folder.folder_cases`` for folder). The privacy audit calibrates on the holdout side, so a holdout
image must come from a patient the model never saw.

The rule, exactly (``f`` = ``data.holdout_fraction``, ``n`` = number of distinct cases):

1. Each case gets a score ``s = int(sha256("cspine-split\\0<seed>\\0<case id>")[:8 bytes]) / 2**64``, a
   uniform number in [0, 1) that depends on nothing but (seed, case id).
2. A case is held out when ``s < f``, else it is trained on.
3. Both sides, when ``n >= 2`` and ``f > 0``: if step 2 held out no case, the case with the lowest score
   is held out; if it held out every case, the case with the highest score is trained on.
   ``f = 0`` is an explicit "no holdout": every case is trained on.

Stability: under step 2 a case's side never depends on the other cases, so adding or removing cases,
files or folders never moves an existing case. Step 3 is the one exception and acts only while the
threshold alone leaves a side empty (a run of a handful of cases): then the forced case is the one with
the lowest (highest) score, which can change when a case is added or removed. No rule that is a function
of the set of cases can be fully stable and still always fill both sides (three cases, each pair must be
split: impossible), so this one moves at most that one case, and none once the threshold has put a case on
each side.

Share: step 2 holds out each case independently with probability ``f``, so the number of holdout cases is
Binomial(n, f): the realised share of cases is ``f`` within about ``2*sqrt(f*(1-f)/n)`` (e.g. 0.15 +- 0.07
for 100 cases, +- 0.02 for 1000). The share of images can differ more when cases have unequal numbers of
images. An exact share would need rank-based cut-offs, which move cases whenever the set changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def case_score(case_id: str, seed: int) -> float:
    """A uniform number in [0, 1) from (seed, case id)."""
    h = hashlib.sha256(f"cspine-split\x00{seed}\x00{case_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def assign_splits(case_ids: Iterable[str], holdout_fraction: float, seed: int) -> dict[str, str]:
    """Map each distinct case id to "train" or "holdout" by the module docstring's rule."""
    cases = sorted(set(case_ids))
    scores = {c: case_score(c, seed) for c in cases}
    out = {c: ("holdout" if scores[c] < holdout_fraction else "train") for c in cases}
    if len(cases) >= 2 and holdout_fraction > 0:
        ranked = sorted(cases, key=lambda c: (scores[c], c))
        if "holdout" not in out.values():
            out[ranked[0]] = "holdout"
        if "train" not in out.values():
            out[ranked[-1]] = "train"
    return out
