"""`cspine study simulate`: simulated raters that answer a built study, for demos and for testing the analysis.

A simulated rater is flagged in responses.sqlite (``raters.simulated = 1``); the analysis ignores simulated
answers as soon as a human has answered and labels results from simulated answers as such. Policies:
``chance`` (picks uniformly, scores uniformly), ``perfect`` (always picks the real image, scores it the top of
the scale and every synthetic image 1), or a number p in [0, 1] (picks the real image with probability p,
otherwise a synthetic one; scores uniformly).
"""

from __future__ import annotations

import json

import numpy as np

from reader_study import store
from reader_study.build import StudyPaths, add_raters, load_study


def answer(policy: str | float, real_position: int, k: int, likert: int, rng: np.random.Generator) -> tuple[int, list[int]]:
    """One simulated answer: (chosen position, scores per position)."""
    if policy == "perfect":
        return real_position, [likert if p == real_position else 1 for p in range(k)]
    scores = [int(s) for s in rng.integers(1, likert + 1, size=k)]
    if policy == "chance":
        return int(rng.integers(k)), scores
    p = float(policy)
    if not 0 <= p <= 1:
        raise ValueError(f"policy must be 'chance', 'perfect' or a probability in [0, 1], got {policy}")
    if rng.random() < p:
        return real_position, scores
    others = [q for q in range(k) if q != real_position]
    return int(others[rng.integers(len(others))]), scores


def simulate(paths: StudyPaths, n_raters: int, policy: str | float, seed: int, answers: int | None = None) -> list[str]:
    """Add ``n_raters`` simulated raters and let each answer ``answers`` trials (default: all); returns their ids."""
    study = load_study(paths)
    key = {t["trial"]: t["real_position"] for t in json.loads(paths.answer_key.read_text())["trials"]}
    k, likert = study["alternatives"], study["likert_points"]
    new = add_raters(paths, seed, study["n_trials"], n_raters, names=[f"simulated {policy}"] * n_raters, simulated=True)
    with store.connect(paths.db) as conn:
        for rater in new:
            rng = np.random.default_rng([seed, 0x5111, rater.number])
            for step, trial in enumerate(rater.trial_order[: answers if answers is not None else None]):
                choice, scores = answer(policy, key[trial], k, likert, rng)
                store.submit(conn, rater, step, choice, scores, k, likert, elapsed_ms=None)
    return [r.rater_id for r in new]
