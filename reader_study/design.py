"""Trial design of the visual Turing test: which images go into which trial, at which position, and each
rater's trial order. Pure functions of their inputs and a seed; `reader_study.build` turns the result into
served files and the answer key.

A trial holds k alternatives, exactly one of them a held-out real image. The k-1 synthetic slots are filled
from the synthetic groups (training checkpoints) in a cyclic order, so with k-1 == number of groups every
trial holds one image of each group (the paper's design) and otherwise the groups are used equally often.
No image is used twice in a study.

With strata (``make_stratified_trials``: the curvature class of conditional samples and of the real
images' labels) every trial draws its real image and its synthetic alternatives from one stratum, so a
rater compares like with like (a kyphotic real film is never picked out among lordotic synthetic ones for
its curvature), and the answer key records each trial's class. Trials are split over the strata in
proportion to their held-out real images, as far as each stratum's images allow.
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
    stratum: str | None = None

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


def _allocate(trials: int, shares: dict[str, int], caps: dict[str, int]) -> dict[str, int]:
    """Trials per stratum: proportional to ``shares`` (largest remainder, one trial at a time), never above ``caps``."""
    total = sum(shares.values()) or 1
    given = {c: 0 for c in shares}
    for _ in range(trials):
        open_ = [c for c in shares if given[c] < caps.get(c, 0)]
        if not open_:
            break
        best = max(open_, key=lambda c: (trials * shares[c] / total - given[c], shares[c], c))
        given[best] += 1
    return given


def make_stratified_trials(
    real_ids: list[str],
    synthetic: dict[str, list[str]],
    strata: dict[str, str],
    trials: int,
    k: int,
    seed: int,
    allow_fewer: bool = False,
) -> tuple[list[Trial], list[str]]:
    """Like :func:`make_trials`, but each trial's images share a stratum (``strata``: image id -> stratum).

    Images without a stratum are left out (with a warning). Trials are numbered after a seeded shuffle, so
    the strata are interleaved in the served order as well as in each rater's own order.
    """
    if k < 2:
        raise DesignError(f"alternatives must be at least 2, got {k}")
    groups = [g for g in synthetic if synthetic[g]]
    warnings: list[str] = []
    unlabelled = sum(1 for i in real_ids if i not in strata) + sum(1 for g in groups for i in synthetic[g] if i not in strata)
    if unlabelled:
        warnings.append(f"{unlabelled} images have no stratum (class) and are left out of the stratified study")
    names = sorted({strata[i] for i in real_ids if i in strata})
    real_by = {c: [i for i in real_ids if strata.get(i) == c] for c in names}
    synth_by = {c: {g: [i for i in synthetic[g] if strata.get(i) == c] for g in groups} for c in names}
    caps = {c: capacity(len(real_by[c]), {g: len(v) for g, v in synth_by[c].items()},
                        [g for g in groups if synth_by[c][g]], k) if any(synth_by[c].values()) else 0 for c in names}
    plan = _allocate(trials, {c: len(real_by[c]) for c in names}, caps)
    built = sum(plan.values())
    if built < trials:
        msg = (f"{trials} stratified trials of {k} need images of each class on both sides; the classes allow "
               f"{built} ({', '.join(f'{c}: {caps[c]}' for c in names) or 'none'})")
        if not allow_fewer or built == 0:
            raise DesignError(msg + ("" if built == 0 else " (set study.allow_fewer_trials: true, or study.trials, to build fewer)"))
        warnings.append(msg + f"; building {built}")
    out: list[Trial] = []
    for n, c in enumerate(names):
        if not plan[c]:
            continue
        part, _ = make_trials(real_by[c], {g: v for g, v in synth_by[c].items() if v}, plan[c], k, seed + 7919 * (n + 1))
        out += [Trial(0, t.alternatives, c) for t in part]
    rng = np.random.default_rng([seed, _DESIGN_SALT, 1])
    return [Trial(i, out[j].alternatives, out[j].stratum) for i, j in enumerate(rng.permutation(len(out)))], warnings


def rater_order(seed: int, rater_number: int, n_trials: int) -> list[int]:
    """Rater ``rater_number``'s order of the trials: a permutation seeded by (seed, rater number)."""
    rng = np.random.default_rng([seed, _ORDER_SALT, rater_number])
    return [int(i) for i in rng.permutation(n_trials)]
