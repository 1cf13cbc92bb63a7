"""Each statistic of reader_study.stats against an independent implementation and a published worked example."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.weightstats import DescrStatsW

from reader_study import stats

# Fleiss (1971) worked example as given in Wikipedia's "Fleiss' kappa" article: 10 subjects, 14 raters, 5 categories.
FLEISS_TABLE = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])


def _fleiss_by_hand(counts) -> float:
    """Fleiss (1971), eq. by eq.: the independent reference for stats.fleiss_kappa (which calls statsmodels)."""
    counts = np.asarray(counts, dtype=float)
    m = counts.sum(axis=1)[0]
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = ((counts**2).sum(axis=1) - m) / (m * (m - 1))
    return float((p_i.mean() - (p_j**2).sum()) / (1 - (p_j**2).sum()))


def _cohen_by_hand(table) -> float:
    n = table.sum()
    p_o, p_e = np.trace(table) / n, (table.sum(axis=1) * table.sum(axis=0)).sum() / n**2
    return float((p_o - p_e) / (1 - p_e))


def _holm_by_hand(p):
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def test_fleiss_kappa_published_example_and_by_hand():
    assert stats.fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.210, abs=5e-4)
    assert stats.fleiss_kappa(FLEISS_TABLE) == pytest.approx(_fleiss_by_hand(FLEISS_TABLE), abs=1e-12)
    rng = np.random.default_rng(1)
    for _ in range(5):  # random tables with 6 raters per subject
        labels = rng.integers(0, 4, size=(30, 6))
        table = np.stack([np.bincount(r, minlength=4) for r in labels])
        assert stats.fleiss_kappa(table) == pytest.approx(_fleiss_by_hand(table), abs=1e-12)


def test_cohen_kappa_published_example_and_by_hand():
    # Wikipedia "Cohen's kappa" example: 50 proposals, both yes 20, A yes B no 5, A no B yes 10, both no 15 -> 0.4
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert stats.cohen_kappa(a, b, 2) == pytest.approx(0.4, abs=1e-12)
    rng = np.random.default_rng(2)
    for _ in range(5):
        x = rng.integers(0, 4, 40)
        y = np.where(rng.random(40) < 0.5, x, rng.integers(0, 4, 40))
        table = np.zeros((4, 4))
        np.add.at(table, (x, y), 1)
        assert stats.cohen_kappa(list(x), list(y), 4) == pytest.approx(_cohen_by_hand(table), abs=1e-12)


def test_holm_reproduces_the_papers_adjusted_p_values():
    adjusted = stats.holm([0.1277, 0.2357, 1.0])
    assert [round(p, 3) for p in adjusted] == [0.383, 0.471, 1.000]
    rng = np.random.default_rng(5)
    for m in (3, 12):  # (statsmodels runs gc.collect() per call: keep the calls few)
        p = list(rng.random(m) ** 3)
        assert stats.holm(p) == pytest.approx(_holm_by_hand(p), abs=1e-12)
    # an undefined test stays undefined and does not count towards the family
    assert stats.holm([0.01, None, 0.04]) == pytest.approx([0.02, None, 0.04])


def test_clopper_pearson_against_scipy_and_closed_form():
    for x, n in [(0, 10), (3, 10), (116, 400), (50, 50), (7, 23)]:
        lo, hi = stats.clopper_pearson(x, n, 0.05)
        sp = sps.binomtest(x, n).proportion_ci(0.95, method="exact")
        assert (lo, hi) == pytest.approx((sp.low, sp.high), abs=1e-10)
    # 0 of n: the upper bound has the closed form 1 - (alpha/2)^(1/n)
    assert stats.clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12)


def _binom_pmf(i: int, n: int, p: float) -> float:
    return math.comb(n, i) * p**i * (1 - p) ** (n - i)


def test_accuracy_test_binomial_and_chi_square_by_hand():
    # the paper's pooled result: 29.0% of 8 x 50 = 400 choices correct, chance 1/4
    n, c, k = 400, 116, 4
    r = stats.accuracy_test(c, n, k)
    pmf = [_binom_pmf(i, n, 0.25) for i in range(n + 1)]
    greater = sum(pmf[c:])
    two_sided = sum(q for q in pmf if q <= pmf[c] * (1 + 1e-7))  # scipy's "minlike" definition
    assert r["p_binomial_greater"] == pytest.approx(greater, rel=1e-9)
    assert r["p_binomial_two_sided"] == pytest.approx(two_sided, rel=1e-6)
    e1, e2 = n / k, n * (k - 1) / k
    chi2 = (c - e1) ** 2 / e1 + (n - c - e2) ** 2 / e2
    assert r["chi2"] == pytest.approx(chi2)
    assert r["p_chi2"] == pytest.approx(sps.chi2.sf(chi2, 1))
    assert r["accuracy"] == pytest.approx(0.29) and r["chance"] == 0.25
    assert 0.05 < r["p_binomial_two_sided"] < 0.1  # the paper: not significant


def test_wilcoxon_against_exact_enumeration_and_t_against_statsmodels():
    rng = np.random.default_rng(3)
    x = rng.normal(3.0, 0.5, 12)
    y = x - rng.normal(0.3, 0.4, 12)
    r = stats.paired_tests(x, y)
    d = x - y
    ranks = sps.rankdata(np.abs(d))
    w_plus = ranks[d > 0].sum()
    null = [sum(r_ for r_, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(d))]
    t_obs = min(w_plus, ranks.sum() - w_plus)
    p_exact = min(1.0, 2 * np.mean([w <= t_obs for w in null]))
    assert r["wilcoxon_p"] == pytest.approx(p_exact, rel=1e-9)
    t, p, _ = DescrStatsW(d).ttest_mean(0)
    assert r["t_statistic"] == pytest.approx(t) and r["ttest_p"] == pytest.approx(p)
    assert r["n_pairs"] == 12 and r["mean_difference"] == pytest.approx(d.mean())


def test_paired_tests_degenerate_cases():
    same = stats.paired_tests([3, 2, 4], [3, 2, 4])
    assert same["wilcoxon_p"] == 1.0 and same["ttest_p"] == 1.0
    assert stats.paired_tests([3], [2])["wilcoxon_p"] is None


def test_chi2_homogeneity_and_position_bias_against_scipy():
    r = stats.chi2_homogeneity([10, 20, 15], [50, 50, 50])
    ref = sps.chi2_contingency(np.array([[10, 40], [20, 30], [15, 35]]), correction=False)
    assert r["chi2"] == pytest.approx(ref.statistic) and r["p"] == pytest.approx(ref.pvalue) and r["dof"] == 2
    assert stats.chi2_homogeneity([50, 50], [50, 50])["p"] is None  # all correct: undefined, not a crash
    pb = stats.position_bias([0, 0, 0, 1, 2, 3, 0, 1], 4)
    assert pb["counts"] == [4, 2, 1, 1]
    e = 2.0
    assert pb["chi2"] == pytest.approx(sum((o - e) ** 2 / e for o in [4, 2, 1, 1]))


def test_mrmc_bootstrap_properties():
    # one rater: the two-way bootstrap is a case bootstrap, SE ~ sqrt(p(1-p)/T)
    rng = np.random.default_rng(4)
    m = (rng.random((1, 400)) < 0.3).astype(float)
    b = stats.mrmc_bootstrap({"acc": m}, 2000, seed=0)["acc"]
    p = m.mean()
    assert b["se"] == pytest.approx(math.sqrt(p * (1 - p) / 400), rel=0.1)
    assert b["ci_low"] < p < b["ci_high"]
    # perfect raters: a degenerate interval at 1
    ones = stats.mrmc_bootstrap({"acc": np.ones((5, 20))}, 500, seed=0)["acc"]
    assert ones["ci_low"] == ones["ci_high"] == 1.0
    # raters who differ widen the interval beyond what resampling cases alone gives
    raters = np.array([0.1, 0.5, 0.9])[:, None]
    m2 = (rng.random((3, 100)) < raters).astype(float)
    two_way = stats.mrmc_bootstrap({"a": m2}, 1000, seed=0)["a"]
    cases_only = stats.mrmc_bootstrap({"a": m2.mean(axis=0, keepdims=True)}, 1000, seed=0)["a"]
    assert two_way["se"] > 2 * cases_only["se"]
    # missing cells (NaN) are left out, not counted as wrong
    m3 = np.array([[1.0, np.nan], [1.0, 1.0]])
    assert stats.mrmc_bootstrap({"a": m3}, 100, seed=0)["a"]["estimate"] == 1.0
