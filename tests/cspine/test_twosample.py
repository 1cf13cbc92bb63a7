"""cspine.twosample: the classifier two-sample test finds no difference between two draws of one
distribution and a clear one against noise or a copy with planted zero bars; the rules and AUCs of the
simple statistics against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from cspine.twosample import auc, c2st, delong_interval, extreme_rules, image_statistics, statistic_aucs
from tests.fakerun import blob_image


def _blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([blob_image(rng) for _ in range(n)])


def test_c2st_is_about_half_for_two_draws_of_one_distribution():
    r = c2st(_blobs(60, 1), _blobs(64, 2), seed=0)
    assert r.ci_low < 0.5 < r.ci_high, r.to_json()
    assert abs(r.auc - 0.5) < 0.15
    assert len(r.scores_a) == 60 and len(r.scores_b) == 64 and ((0 <= r.scores_b) & (r.scores_b <= 1)).all()


def test_c2st_is_about_one_against_noise_and_against_zero_bars():
    real = _blobs(40, 3)
    noise = (np.random.default_rng(4).random((30, 64, 64)) * 65535).astype(np.uint16)
    r = c2st(real[:30], noise, folds=3, epochs=10)
    assert r.auc > 0.95 and r.ci_low > 0.85, r.to_json()
    barred = _blobs(40, 5)
    barred[:, :, :6] = 0  # the old `prepare` padding: exact-zero bars left and right
    barred[:, :, -6:] = 0
    r = c2st(real, barred, folds=4, epochs=15)
    assert r.auc > 0.95, r.to_json()


def test_c2st_refuses_too_few_images():
    with pytest.raises(ValueError, match="at least 5 images"):
        c2st(_blobs(3, 0), _blobs(10, 1))


def test_statistics_see_planted_borders():
    img = np.full((32, 32), 30000, np.uint16)
    img[:, :4] = 0
    s = image_statistics([img, np.full((32, 32), 30000, np.uint16)], file_sizes=[10, 10])
    assert s["border_mean"][0] < s["border_mean"][1]
    assert s["corner_mean"][0] == pytest.approx(0.5 * s["corner_mean"][1])  # the two left corners are black
    assert s["black_share"][0] == pytest.approx(4 / 32) and s["black_share"][1] == 0
    assert s["saturated_share"].tolist() == [0.0, 0.0] and s["file_size"].tolist() == [10, 10]
    assert s["mean"][1] == pytest.approx(30000 / 65535) and s["std"][1] == 0


@pytest.mark.parametrize("dtype,top", [(np.uint8, 255), (np.uint16, 65535)])
def test_histogram_statistics_match_references_and_depend_on_the_histogram_only(dtype, top):
    rng = np.random.default_rng(0)
    img = rng.integers(0, top + 1, (37, 41)).astype(dtype)
    img[:5], img[-3:] = 0, top
    u = img.astype(np.float64) / top
    h = np.histogram(u, bins=256, range=(0, 1))[0] / u.size
    ref = {"mean": u.mean(), "std": u.std(), "skewness": sps.skew(u.ravel()), "entropy": -(h[h > 0] * np.log2(h[h > 0])).sum(),
           "black_share": (img == 0).mean(), "saturated_share": (img == top).mean()}
    shuffled = rng.permutation(img.ravel()).reshape(img.shape)  # the same histogram, pixels elsewhere
    s = image_statistics([img, shuffled])
    for k, v in ref.items():
        assert s[k][0] == pytest.approx(v, rel=1e-9, abs=1e-12), k
        assert s[k][0] == s[k][1], k  # exactly: a rule on them can only tie between equal histograms


def test_extreme_rules_count_hits_split_ties_and_adjust():
    # 12 trials of 4 images; the real image (position 0) always has the highest "a"; "b" ties everywhere
    trials = [list(range(4 * t, 4 * t + 4)) for t in range(12)]
    a = np.tile([9.0, 1.0, 2.0, 3.0], 12)
    b = np.ones(48)
    rows = {(r["statistic"], r["rule"]): r for r in extreme_rules({"a": a, "b": b}, trials, [0] * 12)}
    hi = rows[("a", "pick the highest")]
    assert hi["hits"] == 12 and hi["hit_rate"] == 1.0 and hi["chance"] == 0.25
    assert hi["p_binomial"] == pytest.approx(0.25 ** 12)
    assert hi["p_holm"] == pytest.approx(4 * 0.25 ** 12)  # four rules, the smallest p times 4
    assert rows[("a", "pick the lowest")]["hits"] == 0
    tie = rows[("b", "pick the highest")]
    assert tie["hits"] == 3 and tie["p_binomial"] == pytest.approx(sps.binomtest(3, 12, 0.25, alternative="greater").pvalue)


def test_auc_and_delong_against_mann_whitney():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, 50), rng.normal(0, 1, 40)
    u = sps.mannwhitneyu(pos, neg).statistic
    assert auc(pos, neg) == pytest.approx(u / (50 * 40))
    a, lo, hi = delong_interval(pos, neg)
    assert a == pytest.approx(u / (50 * 40)) and lo < a < hi and 0.05 < hi - lo < 0.5
    s = statistic_aucs({"x": np.r_[pos, neg]}, np.r_[np.ones(50, bool), np.zeros(40, bool)])
    assert s["x"]["auc_real_higher"] == pytest.approx(a) and s["x"]["separation"] == pytest.approx(max(a, 1 - a))
