"""The statistics of a visual Turing test, as pure functions of arrays (no files): used by reader_study.analyze.

- identification accuracy: exact binomial test against chance 1/k, Clopper-Pearson interval, chi-square
  goodness of fit against chance, chi-square homogeneity across raters, chi-square test of position bias;
- agreement: Fleiss' kappa across raters, Cohen's kappa for each pair of raters;
- realism scores: description per group, paired Wilcoxon signed-rank and paired t-tests, Holm correction;
- multi-reader multi-case (MRMC) bootstrap: raters and cases resampled together, percentile intervals.

scipy does the tests; statsmodels gives the kappas, the Clopper-Pearson interval and Holm's correction.
This module adds only the study's bookkeeping around them (undefined cases, JSON-ready floats), and
tests/reader_study checks each number against published worked examples and independent formulas.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
from scipy import stats
from statsmodels.stats.inter_rater import cohens_kappa as _sm_cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as _sm_fleiss_kappa
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint


def _f(x) -> float | None:
    """float for JSON (None for NaN)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def clopper_pearson(x: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 1 - alpha interval for a binomial proportion x / n."""
    if n <= 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(x, n, alpha=alpha, method="beta")
    return float(lo), float(hi)


def accuracy_test(correct: int, n: int, k: int, alpha: float = 0.05) -> dict:
    """Accuracy of picking the real image among k, against chance 1/k."""
    chance = 1.0 / k
    out = {"n": int(n), "correct": int(correct), "accuracy": _f(correct / n) if n else None, "chance": chance}
    if n == 0:
        return out
    lo, hi = clopper_pearson(correct, n, alpha)
    chi = stats.chisquare([correct, n - correct], [n * chance, n * (1 - chance)])
    out |= {
        "ci_low": lo, "ci_high": hi, "ci_level": 1 - alpha, "ci_method": "Clopper-Pearson",
        "p_binomial_two_sided": _f(stats.binomtest(correct, n, chance, alternative="two-sided").pvalue),
        "p_binomial_greater": _f(stats.binomtest(correct, n, chance, alternative="greater").pvalue),
        "chi2": _f(chi.statistic), "p_chi2": _f(chi.pvalue),
    }
    return out


def chi2_homogeneity(correct: list[int], n: list[int]) -> dict:
    """Chi-square test that all raters have the same accuracy (raters x {correct, wrong} table)."""
    table = np.array([[c, m - c] for c, m in zip(correct, n) if m > 0])
    if len(table) < 2 or (table.sum(axis=0) == 0).any():
        return {"chi2": None, "dof": None, "p": None, "note": "undefined: fewer than 2 raters, or every answer right (or wrong)"}
    res = stats.chi2_contingency(table, correction=False)
    return {"chi2": _f(res.statistic), "dof": int(res.dof), "p": _f(res.pvalue)}


def position_bias(choices: list[int], k: int) -> dict:
    """Chi-square goodness of fit of the chosen positions against uniform (do raters favour a position?)."""
    counts = np.bincount(np.asarray(choices, dtype=int), minlength=k)
    if counts.sum() == 0:
        return {"counts": counts.tolist(), "chi2": None, "p": None}
    res = stats.chisquare(counts)
    return {"counts": counts.tolist(), "chi2": _f(res.statistic), "p": _f(res.pvalue)}


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of a subjects x categories table of rating counts (the same number of raters per subject)."""
    counts = np.asarray(counts, dtype=float)
    n_rat = counts.sum(axis=1)
    if counts.shape[0] == 0 or not np.allclose(n_rat, n_rat[0]) or n_rat[0] < 2:
        raise ValueError("Fleiss' kappa needs >= 1 subject and the same number (>= 2) of ratings per subject")
    p_j = counts.sum(axis=0) / counts.sum()
    if math.isclose((p_j**2).sum(), 1.0):
        return math.nan  # every rating in one category: agreement beyond chance undefined
    return float(_sm_fleiss_kappa(counts, method="fleiss"))


def cohen_kappa(a: list[int], b: list[int], categories: int) -> float:
    """Cohen's kappa of two raters' labels (ints 0..categories-1) on the same subjects."""
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    if len(a) != len(b) or len(a) == 0:
        raise ValueError("Cohen's kappa needs two equally long, non-empty label lists")
    table = np.zeros((categories, categories))
    np.add.at(table, (a, b), 1)
    n = table.sum()
    if math.isclose((table.sum(axis=1) * table.sum(axis=0)).sum() / n**2, 1.0):
        return math.nan  # both raters used one category only: chance agreement is 1, kappa undefined
    return float(_sm_cohens_kappa(table, return_results=False))


def agreement(labels: dict[str, list[int]], categories: int) -> dict:
    """Fleiss' kappa across raters and Cohen's kappa per pair; ``labels`` maps rater -> labels of the same subjects."""
    raters = sorted(labels)
    if len(raters) < 2 or not labels[raters[0]]:
        return {"raters": raters, "subjects": 0, "fleiss_kappa": None, "cohen_kappa": {}, "note": "needs >= 2 raters with the same trials"}
    mat = np.array([labels[r] for r in raters])  # raters x subjects
    counts = np.stack([np.bincount(mat[:, s], minlength=categories) for s in range(mat.shape[1])])
    pairs = {f"{a}~{b}": _f(cohen_kappa(labels[a], labels[b], categories)) for a, b in combinations(raters, 2)}
    vals = [v for v in pairs.values() if v is not None]
    return {
        "raters": raters, "subjects": int(mat.shape[1]),
        "fleiss_kappa": _f(fleiss_kappa(counts)),
        "cohen_kappa": pairs,
        "cohen_kappa_mean": _f(np.mean(vals)) if vals else None,
    }


def describe(scores) -> dict:
    """Mean and spread of Likert scores."""
    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return {"n": 0}
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return {
        "n": int(x.size), "mean": _f(x.mean()), "sd": _f(x.std(ddof=1)) if x.size > 1 else None,
        "median": _f(med), "q1": _f(q1), "q3": _f(q3), "min": _f(x.min()), "max": _f(x.max()),
    }


def paired_tests(real, synthetic) -> dict:
    """Paired Wilcoxon signed-rank (zeros dropped, scipy's default) and paired t-test of real vs synthetic."""
    x, y = np.asarray(real, dtype=float), np.asarray(synthetic, dtype=float)
    d = x - y
    out = {"n_pairs": int(d.size), "mean_difference": _f(d.mean()) if d.size else None}
    if d.size < 2:
        return out | {"wilcoxon_p": None, "ttest_p": None, "note": "fewer than 2 pairs"}
    if np.all(d == 0):  # no evidence of any difference: both tests are degenerate, p = 1
        return out | {"wilcoxon_statistic": None, "wilcoxon_p": 1.0, "t_statistic": 0.0, "ttest_p": 1.0,
                      "note": "all differences are zero"}
    w = stats.wilcoxon(x, y)
    if np.allclose(d, d[0]):  # constant non-zero difference: t undefined (sd 0), the effect is certain
        t_stat, t_p = math.copysign(math.inf, d[0]), 0.0
    else:
        t = stats.ttest_rel(x, y)
        t_stat, t_p = t.statistic, t.pvalue
    return out | {"wilcoxon_statistic": _f(w.statistic), "wilcoxon_p": _f(w.pvalue), "t_statistic": _f(t_stat), "ttest_p": _f(t_p)}


def holm(pvalues: list[float | None], alpha: float = 0.05) -> list[float | None]:
    """Holm (1979) step-down adjusted p-values (statsmodels' multipletests); None kept where a test was
    undefined, and not counted in the family."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if idx:
        adjusted = multipletests([float(pvalues[i]) for i in idx], alpha=alpha, method="holm")[1]
        for i, p in zip(idx, adjusted):
            out[i] = float(p)
    return out


def mrmc_bootstrap(matrices: dict[str, np.ndarray], n_boot: int, seed: int, alpha: float = 0.05) -> dict:
    """Two-way bootstrap over raters and cases: each resample draws raters and trials with replacement.

    ``matrices`` maps a statistic's name to a raters x trials array (NaN = not observed); the statistic of a
    resample is the mean of the observed cells. Returns point estimate, percentile interval, bootstrap SE.
    """
    rng = np.random.default_rng([seed, 0xB007])
    any_m = next(iter(matrices.values()))
    n_r, n_t = any_m.shape
    out = {}
    if n_boot == 0 or n_r == 0 or n_t == 0:
        return {name: {"estimate": _f(np.nanmean(m)) if np.isfinite(m).any() else None} for name, m in matrices.items()}
    rs = rng.integers(0, n_r, size=(n_boot, n_r))
    ts = rng.integers(0, n_t, size=(n_boot, n_t))
    for name, m in matrices.items():
        boot = np.empty(n_boot)
        for s in range(0, n_boot, 256):  # chunks keep the [B, R, T] gather small for large studies
            samples = m[rs[s:s + 256, :, None], ts[s:s + 256, None, :]]
            obs = np.isfinite(samples).sum(axis=(1, 2))
            boot[s:s + 256] = np.where(obs > 0, np.nansum(samples, axis=(1, 2)) / np.maximum(obs, 1), np.nan)
        boot = boot[np.isfinite(boot)]
        est = np.nanmean(m) if np.isfinite(m).any() else np.nan
        lo, hi = (np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if boot.size else (np.nan, np.nan))
        out[name] = {"estimate": _f(est), "ci_low": _f(lo), "ci_high": _f(hi), "se": _f(boot.std(ddof=1)) if boot.size > 1 else None,
                     "resamples": int(boot.size), "method": "percentile, raters and trials resampled with replacement"}
    return out
