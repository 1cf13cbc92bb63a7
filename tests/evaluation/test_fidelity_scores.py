"""Unit tests of the fidelity arithmetic (evaluation.fidelity_scores) and label parsing (evaluation.fidelity_data)
on hand-made inputs whose answers are worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cspine.rundata import RunDataError
from evaluation import fidelity_scores as fs
from cspine.labels import CURVATURE_CLASSES, KEYPOINT_LABELS
from cspine.rundata import curvature_value, keypoint_array
from evaluation.small_models import shift_batch, standardise


def test_the_released_pipeline_carries_the_core_vocabulary():
    """cspine/generation/hub_pipeline.py ships to the Hub and cannot import the core: its copy must agree."""
    from cspine.generation import hub_pipeline

    assert CURVATURE_CLASSES == hub_pipeline.CLASS_NAMES


def test_confusion_and_recalls():
    cm = fs.confusion([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], 3)
    assert cm.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    r = fs.recalls(cm)
    assert r[0] == 0.5 and r[1] == pytest.approx(2 / 3) and math.isnan(r[2])
    s = fs.classification_summary([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], 3)
    assert s["accuracy"] == 0.6 and s["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2) and s["recall"][2] is None


def test_wilson_interval_matches_the_textbook_value():
    lo, hi = fs.wilson(8, 10)  # Wilson 95% for 8/10: 0.490-0.943 (Newcombe 1998, table I style)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert fs.wilson(0, 10)[0] == 0.0 and all(math.isnan(v) for v in fs.wilson(0, 0))


def test_accuracy_ratio_compares_at_the_synthetic_class_mix():
    # holdout: class 0 always right (8 images), class 1 right half the time (2 images): plain accuracy 0.9
    h_true = np.array([0] * 8 + [1] * 2)
    h_pred = np.array([0] * 8 + [1, 0])
    # synthetic: all requested as class 1, half classified so: exactly as good as real class-1 images
    s_true = np.array([1] * 10)
    s_pred = np.array([1] * 5 + [0] * 5)
    r = fs.accuracy_ratio(h_true, h_pred, s_true, s_pred, 3, boot=200, seed=0)
    assert r["holdout_accuracy_at_synthetic_mix"] == 0.5 and r["synthetic_accuracy"] == 0.5
    assert r["ratio"] == 1.0  # plain holdout accuracy (0.9) would have given 0.56
    assert r["ci95"][0] <= 1.0 <= r["ci95"][1] and r["bootstrap"] > 0
    # a class the holdout set lacks is left out on both sides
    r2 = fs.accuracy_ratio(h_true, h_pred, np.array([1] * 10 + [2] * 10), np.concatenate([s_pred, [0] * 10]), 3, boot=0)
    assert r2["classes_left_out"] == [3] and r2["ratio"] == 1.0


def _ladder(height: float = 6.0, x0: float = 30.0) -> np.ndarray:
    """Keypoints of upright rectangular bodies C3-C7 of ``height`` px, 8 px deep, 2 px discs; C2 above."""
    kp = np.zeros((len(KEYPOINT_LABELS), 2))
    pos = {n: i for i, n in enumerate(KEYPOINT_LABELS)}
    kp[pos["C2 centroid"]] = (x0 + 4, 5)
    kp[pos["C2 bottom left"]], kp[pos["C2 bottom right"]] = (x0, 10), (x0 + 8, 10)
    y = 12.0
    for v in range(3, 8):
        kp[pos[f"C{v} top left"]], kp[pos[f"C{v} top right"]] = (x0, y), (x0 + 8, y)
        kp[pos[f"C{v} bottom left"]], kp[pos[f"C{v} bottom right"]] = (x0, y + height), (x0 + 8, y + height)
        y += height + 2
    return kp


def test_vertebral_height_and_mre_share():
    ref = np.stack([_ladder(6.0), _ladder(4.0)])
    h = fs.vertebral_heights(ref, KEYPOINT_LABELS)
    assert h.tolist() == [6.0, 4.0]
    pred = ref.copy()
    pred[:, :, 0] += 3.0
    pred[:, :, 1] += 4.0  # every point off by 5 px
    err = fs.radial_errors(pred, ref)
    assert np.allclose(err, 5.0)
    s = fs.mre_summary(err, h, KEYPOINT_LABELS)
    assert s["mre_px"] == 5.0 and s["mre_share_of_vertebral_height"] == pytest.approx((5 / 6 + 5 / 4) / 2)
    assert s["share_within_quarter_height"] == 0.0 and s["mre_px_by_point"]["C7 bottom right"] == 5.0
    # a missing reference point is left out, not counted as 0
    ref2 = ref.copy()
    ref2[0, 5] = np.nan
    err2 = fs.radial_errors(pred, ref2)
    assert fs.mre_summary(err2, fs.vertebral_heights(ref2, KEYPOINT_LABELS), KEYPOINT_LABELS)["n_points"] == 45


def test_mre_ratio():
    h = np.array([0.1, 0.2, 0.15, 0.12])
    assert fs.mre_ratio(h, h, boot=100)["ratio"] == 1.0
    r = fs.mre_ratio(h, 2 * h, boot=300, seed=1)
    assert r["ratio"] == pytest.approx(2.0) and r["ci95"][0] > 1.0
    assert math.isnan(fs.mre_ratio(np.array([np.nan]), h)["ratio"])


def test_keypoint_and_curvature_parsing():
    d = {"C2 centroid": [1.5, 2.5], "C7 bottom right": [3, 4], "not a label": [0, 0]}
    a = keypoint_array(json.dumps(d), "x")
    assert a[0].tolist() == [1.5, 2.5] and a[-1].tolist() == [3.0, 4.0] and np.isnan(a[1:-1]).all()
    assert np.isnan(keypoint_array(None, "x")).all() and np.isnan(keypoint_array(float("nan"), "x")).all()
    with pytest.raises(RunDataError, match="samples.parquet \\(sample s1\\): unreadable keypoints"):
        keypoint_array("{not json", "samples.parquet (sample s1)")
    with pytest.raises(RunDataError, match="unreadable keypoints"):
        keypoint_array(json.dumps({"C2 centroid": [1]}), "where")
    assert curvature_value(3.0, "w") == 3 and curvature_value(None, "w") == 0 and curvature_value(float("nan"), "w") == 0
    with pytest.raises(RunDataError, match="w: curvature 6"):
        curvature_value(6, "w")


def test_standardise_and_shift():
    imgs = np.stack([np.arange(16, dtype=np.uint16).reshape(4, 4) * 1000, np.full((4, 4), 7, np.uint16)])
    x = standardise(imgs)
    assert x.shape == (2, 1, 4, 4) and abs(float(x[0].mean())) < 1e-6 and float(x[0].std(unbiased=False)) == pytest.approx(1, abs=1e-5)
    assert float(x[1].abs().max()) == 0.0  # a flat image stays finite
    y = shift_batch(x, np.array([[1, 0], [0, 0]]))
    assert np.allclose(y[0, 0, :, 1:], x[0, 0, :, :-1]) and np.allclose(y[0, 0, :, 0], x[0, 0, :, 0])  # edge replicated


def test_json_ready_makes_strict_json():
    from evaluation.fidelity import json_ready

    out = json_ready({"a": np.float64(0.5), "b": [np.int64(3), float("nan")], "c": (np.bool_(True), math.inf), "d": "x"})
    assert out == {"a": 0.5, "b": [3, None], "c": [True, None], "d": "x"}
    json.dumps(out, allow_nan=False)
