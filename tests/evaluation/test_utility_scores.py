"""Unit tests of the utility arithmetic (evaluation.utility_scores), the vectorised C2-C7 angle, the
augmentation plan and the age bands, against hand-computed or independent references."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from evaluation import utility_scores as us
from evaluation.config import UtilityConfig
from evaluation.coverage import age_band_names, age_bands
from evaluation.fidelity_data import KEYPOINT_LABELS
from evaluation.measurements import c2c7_angle, c2c7_angles_array
from evaluation.utility import augment_plan, steps_taken


def test_class_scores_by_hand():
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    ba, f1 = us.class_scores(true, pred, 4)  # class 3 absent from the truth: not scored
    # recalls 2/3, 1/2, 1/1; F1: class 0 2*2/(3+2)=0.8, class 1 2*1/(2+2)=0.5, class 2 2*1/(1+2)=2/3
    assert ba == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # a class the network never predicts counts with F1 = 0
    assert us.class_scores(np.array([0, 1]), np.array([0, 0]), 2) == pytest.approx((0.5, (2 / 3 + 0) / 2))


def test_paired_bootstrap_identical_arms_give_ratio_one_and_intervals_cover_the_truth():
    rng = np.random.default_rng(0)
    err = [rng.exponential(1.0, 200) for _ in range(3)]
    stats = {"a": lambda s, ix: float(err[s][ix].mean()), "b": lambda s, ix: float(err[s][ix].mean()),
             "c": lambda s, ix: 2 * float(err[s][ix].mean())}
    b = us.paired_bootstrap(stats, 3, 200, 300, seed=1)
    assert b["a"]["point"] == pytest.approx(np.mean([e.mean() for e in err]))
    assert len(b["a"]["reps"]) == 300
    r = us.ratio(b["a"], b["b"])
    assert r["ratio"] == 1.0 and r["ci95"] == [1.0, 1.0]  # paired draws: identical arms agree in every replicate
    assert us.ratio(b["c"], b["a"])["ci95"] == pytest.approx([2.0, 2.0])
    lo, hi = us.summary(b["a"])["ci95"]
    assert lo < 1.0 < hi and hi - lo < 0.4  # true mean 1 inside a sensible interval
    d = us.difference(b["c"], b["a"])
    assert d["difference"] == pytest.approx(b["a"]["point"])


def test_stratified_resample_keeps_every_class():
    rng = np.random.default_rng(0)
    strata = np.array([0] * 50 + [1] * 2)
    for _ in range(50):
        idx = us.resample(rng, 52, strata)
        assert len(idx) == 52 and (strata[idx] == 1).sum() == 2


def test_shares_and_wilson():
    s = us.shares(["1", "1", "2", None, "9"], ["1", "2", "3"])  # None and unknown groups left out
    assert s["1"]["n"] == 2 and s["1"]["share"] == pytest.approx(2 / 3) and s["3"]["share"] == 0
    lo, hi = s["1"]["ci95"]
    assert 0.2 < lo < 2 / 3 < hi < 1.0


def test_angle_distributions_find_a_shift_and_holm_corrects():
    rng = np.random.default_rng(0)
    real = np.concatenate([rng.normal(20, 5, 80), rng.normal(0, 5, 80)])
    rc = np.array([1] * 80 + [2] * 80)
    synth = np.concatenate([rng.normal(20, 5, 60), rng.normal(8, 5, 60)])  # class 2 shifted by 8 degrees
    sc = np.array([1] * 60 + [2] * 60)
    out = us.angle_distributions(real, rc, synth, sc, [1, 2, 3])
    by = out["by_class"]
    assert not by["1"]["differs"] and by["2"]["differs"]
    assert by["2"]["mean_difference_ci95"][0] < 8 < by["2"]["mean_difference_ci95"][1]
    assert "test" in by["3"] and out["classes_tested"] == ["1", "2"]
    p = sorted([by["1"]["p_value"], by["2"]["p_value"]])
    assert by["2"]["p_holm"] == pytest.approx(min(1.0, 2 * p[0]))  # Holm: smallest p times the number of tests
    assert by["1"]["p_value"] == pytest.approx(sps.ks_2samp(synth[:60], real[:80]).pvalue)
    lo, hi = by["1"]["real"]["sd_ci95"]
    assert lo < 5 < hi


def test_vectorised_angle_matches_the_dict_version():
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 64, (10, len(KEYPOINT_LABELS), 2))
    dicts = [{name: list(p) for name, p in zip(KEYPOINT_LABELS, k)} for k in kp]
    np.testing.assert_allclose(c2c7_angles_array(kp, KEYPOINT_LABELS), [c2c7_angle(json.dumps(d)) for d in dicts])
    kp[0, KEYPOINT_LABELS.index("C7 bottom left")] = np.nan
    assert np.isnan(c2c7_angles_array(kp, KEYPOINT_LABELS)[0])


def test_augment_plan_and_steps():
    uc = UtilityConfig()
    assert augment_plan(236, 64, uc) == (16, [0.0, 1.0, 2.0, 4.0], [])  # the demo: base shrinks so 4x fits
    assert augment_plan(236, 2000, uc) == (236, [0.0, 1.0, 2.0, 4.0], [])
    assert augment_plan(236, 40, uc) == (16, [0.0, 1.0, 2.0], [4.0])  # 4 x 16 > 40
    assert augment_plan(236, 40, UtilityConfig(augment_real=30)) == (30, [0.0, 1.0], [2.0, 4.0])
    # equal compute: about classifier_steps whatever the set size
    for n in (16, 64, 80, 236, 1000):
        assert abs(steps_taken(uc, 150, n) - 150) <= max(8, -(-n // 32) / 2)


def test_age_bands():
    assert age_band_names([40, 60]) == ["<40", "40-59", ">=60"]
    assert age_bands([18, 39, 40, 59, 60, None, 88], [60, 40]) == ["<40", "<40", "40-59", "40-59", ">=60", None, ">=60"]
