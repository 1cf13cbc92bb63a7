"""Trial design of the visual Turing test: which images go into which trial, at which position, and each
rater's trial order. Pure functions of their inputs and a seed; `reader_study.build` turns the result into
served files and the answer key.

A trial holds k alternatives, exactly one of them a held-out real image. The k-1 synthetic slots are filled
from the synthetic groups (training checkpoints) in a cyclic order, so with k-1 == number of groups every
trial holds one image of each group (the paper's design) and otherwise the groups are used equally often.
No image is used twice in a study.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REAL = "real"

#: Salts that separate the study's random streams from other uses of the run's master seed.
_DESIGN_SALT = 0x57D1
_ORDER_SALT = 0x0DE2


@dataclass(frozen=True)
class Alternative:
    """One image of a trial: where it came from (never served to raters)."""

    kind: str  # "real" | "synthetic"
    group: str  # "real" or the synthetic checkpoint name
    image_id: str


@dataclass(frozen=True)
class Trial:
    """A trial: its alternatives in display order (position 0..k-1) and the real image's position."""

    index: int
    alternatives: tuple[Alternative, ...]

    @property
    def real_position(self) -> int:
        return next(i for i, a in enumerate(self.alternatives) if a.kind == REAL)


class DesignError(ValueError):
    """The images cannot fill the requested design."""


def group_slots(groups: list[str], trials: int, k: int) -> list[list[str]]:
    """The group of each synthetic slot of each trial: a cyclic sequence over ``groups`` cut into k-1 chunks."""
    if not groups:
        raise DesignError("no synthetic groups to draw from")
    per = k - 1
    seq = [groups[i % len(groups)] for i in range(trials * per)]
    return [seq[t * per:(t + 1) * per] for t in range(trials)]


def capacity(n_real: int, synth_counts: dict[str, int], groups: list[str], k: int) -> int:
    """The most trials the images allow without reusing any image."""
    best = 0
    lo, hi = 0, n_real
    while lo <= hi:  # need per group is monotone in T: binary search the largest feasible T
        mid = (lo + hi) // 2
        need: dict[str, int] = {}
        for slot in group_slots(groups, mid, k):
            for g in slot:
                need[g] = need.get(g, 0) + 1
        if all(synth_counts.get(g, 0) >= n for g, n in need.items()):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def make_trials(
    real_ids: list[str],
    synthetic: dict[str, list[str]],
    trials: int,
    k: int,
    seed: int,
    allow_fewer: bool = False,
) -> tuple[list[Trial], list[str]]:
    """Draw ``trials`` trials of ``k`` alternatives; returns (trials, warnings).

    ``synthetic`` maps group name -> image ids (group order = slot order). Images are drawn without
    replacement from shuffled pools; positions within each trial are shuffled. Raises DesignError when the
    images cannot fill ``trials`` (unless ``allow_fewer``, which builds as many as they allow).
    """
    if k < 2:
        raise DesignError(f"alternatives must be at least 2, got {k}")
    groups = [g for g in synthetic if synthetic[g]]
    warnings: list[str] = []
    cap = capacity(len(real_ids), {g: len(v) for g, v in synthetic.items()}, groups, k) if groups else 0
    if cap < trials:
        counts = ", ".join(f"{g}: {len(v)}" for g, v in synthetic.items()) or "none"
        msg = (
            f"{trials} trials of {k} need {trials} held-out real images and {trials * (k - 1)} synthetic images "
            f"spread over the groups; there are {len(real_ids)} real and synthetic {{{counts}}}, enough for {cap} trials"
        )
        if not allow_fewer or cap == 0:
            raise DesignError(msg + ("" if cap == 0 else " (set study.allow_fewer_trials: true, or study.trials, to build fewer)"))
        warnings.append(msg + f"; building {cap}")
        trials = cap

    rng = np.random.default_rng([seed, _DESIGN_SALT])
    real_pool = [real_ids[i] for i in rng.permutation(len(real_ids))]
    pools = {g: [synthetic[g][i] for i in rng.permutation(len(synthetic[g]))] for g in groups}
    taken = {g: 0 for g in groups}
    out: list[Trial] = []
    for t, slots in enumerate(group_slots(groups, trials, k)):
        alts = [Alternative("real", REAL, real_pool[t])]
        for g in slots:
            alts.append(Alternative("synthetic", g, pools[g][taken[g]]))
            taken[g] += 1
        order = rng.permutation(k)
        out.append(Trial(t, tuple(alts[i] for i in order)))
    return out, warnings


def rater_order(seed: int, rater_number: int, n_trials: int) -> list[int]:
    """Rater ``rater_number``'s order of the trials: a permutation seeded by (seed, rater number)."""
    rng = np.random.default_rng([seed, _ORDER_SALT, rater_number])
    return [int(i) for i in rng.permutation(n_trials)]
