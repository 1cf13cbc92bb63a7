"""Scores of the utility evaluation: classification and landmark scores per training seed, their intervals
over seeds and holdout images, ratios, group shares and the C2-C7 angle comparison.

Where it sits: evaluation/, pure arithmetic under evaluation.utility and evaluation.coverage (which train
the networks and hand their predictions here). Arrays in, numbers and JSON-ready dicts out; no I/O, no torch.

Decisions:
- Intervals cover both sources of chance: which networks training produced (seeds) and which real images
  the holdout happens to hold. One bootstrap replicate draws the seeds with replacement and the holdout
  images with replacement (within each true class for classification, so no class vanishes from a
  balanced accuracy), and averages the score over the drawn seeds on the drawn images. The point estimate
  is the mean over seeds on all holdout images; the 95% interval is the replicates' 2.5 / 97.5
  percentiles. Scores compared with one another (TSTR and TRTR, the points of the augmentation curve) use
  the same draws, so a ratio or a difference gets its interval from paired replicates (seed i of one arm
  is paired with seed i of the other: they share the seed, not the training images).
- Balanced accuracy and macro F1 are over the classes the holdout set has (a class no holdout image has
  cannot be scored); a class the network never predicts counts with F1 = 0.
- Shares get Wilson 95% intervals; the C2-C7 angle distributions are compared per class by the two-sample
  Kolmogorov-Smirnov test, Holm-corrected over the classes (statsmodels), beside the means with t
  intervals, the sds with chi-square intervals and the Welch interval of the mean difference.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats as sps

from evaluation.fidelity_scores import wilson

Stat = Callable[[int, np.ndarray], float]


def class_scores(true: np.ndarray, pred: np.ndarray, classes: int) -> tuple[float, float]:
    """(balanced accuracy, macro F1) of integer labels 0..classes-1 over the classes present in ``true``."""
    t, p = np.asarray(true, np.int64), np.asarray(pred, np.int64)
    if not t.size:
        return math.nan, math.nan
    cm = np.bincount(t * classes + p, minlength=classes * classes).reshape(classes, classes)
    rows, cols, tp = cm.sum(1), cm.sum(0), np.diag(cm)
    present = rows > 0
    recall = tp[present] / rows[present]
    f1 = 2 * tp[present] / (rows[present] + cols[present])
    return float(recall.mean()), float(f1.mean())


def resample(rng: np.random.Generator, n: int, strata: np.ndarray | None = None) -> np.ndarray:
    """Indices 0..n-1 drawn with replacement (within each stratum when ``strata`` is given)."""
    if strata is None:
        return rng.integers(0, n, n)
    strata = np.asarray(strata)
    return np.concatenate([rng.choice(ix, ix.size) for ix in (np.flatnonzero(strata == s) for s in np.unique(strata))])


def paired_bootstrap(stats: dict[str, Stat], n_seeds: int, n_items: int, boot: int, seed: int,
                     strata: np.ndarray | None = None) -> dict[str, dict]:
    """Per named statistic ``stat(seed_index, holdout_indices) -> float``: ``point`` (mean over seeds on all
    items), ``per_seed`` and ``reps`` (one value per replicate, the same seed and item draws for every stat)."""
    rng = np.random.default_rng(seed)
    everything = np.arange(n_items)
    out = {}
    for name, stat in stats.items():
        per_seed = [stat(s, everything) for s in range(n_seeds)]
        out[name] = {"point": float(np.mean(per_seed)), "per_seed": [float(v) for v in per_seed], "reps": []}
    for _ in range(boot if n_items else 0):
        seeds = rng.integers(0, n_seeds, n_seeds)
        idx = resample(rng, n_items, strata)
        for name, stat in stats.items():
            out[name]["reps"].append(float(np.mean([stat(int(s), idx) for s in seeds])))
    for v in out.values():
        v["reps"] = np.asarray(v["reps"], np.float64)
    return out


def percentile_ci(reps) -> list[float | None]:
    """2.5 / 97.5 percentiles of the finite replicates ([nan, nan] without any)."""
    r = np.asarray(reps, np.float64)
    r = r[np.isfinite(r)]
    return [float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))] if r.size else [math.nan, math.nan]


def summary(b: dict) -> dict:
    """JSON entry of one bootstrapped statistic: mean over seeds, its 95% interval, per-seed values, seed sd."""
    ps = np.asarray(b["per_seed"])
    return {"mean": b["point"], "ci95": percentile_ci(b["reps"]), "per_seed": b["per_seed"],
            "seed_sd": float(ps.std(ddof=1)) if ps.size > 1 else None}


def ratio(a: dict, b: dict) -> dict:
    """a / b of two bootstrapped statistics with the interval of the paired replicate ratios."""
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = a["reps"] / b["reps"]
    return {"ratio": a["point"] / b["point"] if b["point"] else math.nan, "ci95": percentile_ci(reps)}


def difference(a: dict, b: dict) -> dict:
    """a - b of two bootstrapped statistics with the interval of the paired replicate differences."""
    return {"difference": a["point"] - b["point"], "ci95": percentile_ci(a["reps"] - b["reps"])}


def shares(labels: np.ndarray, groups: list) -> dict:
    """Per group: count, share of the labelled items (entries not in ``groups`` are left out) and Wilson 95% interval."""
    lab = list(labels)
    known = [x for x in lab if x in groups]
    n = len(known)
    out = {}
    for g in groups:
        k = sum(1 for x in known if x == g)
        out[str(g)] = {"n": k, "share": k / n if n else math.nan, "ci95": list(wilson(k, n))}
    return out


def mean_ci(x: np.ndarray) -> list[float]:
    """t-based 95% interval of the mean ([nan, nan] below 2 values)."""
    x = np.asarray(x, np.float64)
    if x.size < 2:
        return [math.nan, math.nan]
    h = sps.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return [float(x.mean() - h), float(x.mean() + h)]


def sd_ci(x: np.ndarray) -> list[float]:
    """Chi-square 95% interval of the standard deviation ([nan, nan] below 2 values)."""
    x = np.asarray(x, np.float64)
    if x.size < 2:
        return [math.nan, math.nan]
    df, var = x.size - 1, x.var(ddof=1)
    return [float(math.sqrt(df * var / sps.chi2.ppf(0.975, df))), float(math.sqrt(df * var / sps.chi2.ppf(0.025, df)))]


def welch_diff_ci(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Welch 95% interval of mean(a) - mean(b)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size < 2 or b.size < 2:
        return [math.nan, math.nan]
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        d = float(a.mean() - b.mean())
        return [d, d]
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    h = sps.t.ppf(0.975, df) * se
    d = float(a.mean() - b.mean())
    return [d - h, d + h]


def describe(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return {"n": int(x.size), "mean": float(x.mean()) if x.size else math.nan, "mean_ci95": mean_ci(x),
            "sd": float(x.std(ddof=1)) if x.size > 1 else math.nan, "sd_ci95": sd_ci(x)}


def angle_distributions(real: np.ndarray, real_class: np.ndarray, synth: np.ndarray, synth_class: np.ndarray,
                        classes: list[int], alpha: float = 0.05) -> dict:
    """Per class: the real and synthetic C2-C7 angles described, the Welch interval of the mean difference
    (synthetic - real) and the two-sample KS test, p-values Holm-corrected over the classes tested (both
    sets need >= 2 finite angles)."""
    from statsmodels.stats.multitest import multipletests

    out, tested = {}, []
    for c in classes:
        r = np.asarray(real, np.float64)[np.asarray(real_class) == c]
        s = np.asarray(synth, np.float64)[np.asarray(synth_class) == c]
        r, s = r[np.isfinite(r)], s[np.isfinite(s)]
        row = {"real": describe(r), "synthetic": describe(s)}
        if r.size >= 2 and s.size >= 2:
            ks = sps.ks_2samp(s, r)
            row.update({"mean_difference": float(s.mean() - r.mean()), "mean_difference_ci95": welch_diff_ci(s, r),
                        "ks_statistic": float(ks.statistic), "p_value": float(ks.pvalue)})
            tested.append(str(c))
        else:
            row["test"] = "skipped: fewer than 2 angles in a set"
        out[str(c)] = row
    if tested:
        reject, p_holm, _, _ = multipletests([out[c]["p_value"] for c in tested], alpha=alpha, method="holm")
        for c, p, rj in zip(tested, p_holm, reject):
            out[c]["p_holm"] = float(p)
            out[c]["differs"] = bool(rj)
    return {"by_class": out, "test": "two-sample Kolmogorov-Smirnov (scipy), Holm-corrected over classes "
            f"(statsmodels), alpha {alpha}", "classes_tested": tested}
