"""The flag-rate ceiling of the release gate (issue 9 item 5): --exclude-flagged drops a few chance flags, but
when far more images are flagged than chance explains, the gate closes for images and weights alike.

The derived ceiling is checked against a binomial quantile computed here from math.comb (not scipy); the
audit is run on phantom radiographs (tests/privacy/planted.py) with chance-level and memorising-level numbers
of planted copies of training images.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from privacy.audit import audit_arrays
from privacy.config import AuditConfig
from privacy.embedders import build_embedders
from cspine.feature_cache import FeatureCache
from cspine.gate import flag_ceiling, gate_from_summary
from privacy.inputs import AuditInputs
from tests.privacy.planted import phantoms, plant


def _binom_quantile(n: int, p: float, conf: float) -> int:
    """Smallest k with P(X <= k) >= conf for X ~ Binomial(n, p), by summing the pmf."""
    acc = 0.0
    for k in range(n + 1):
        acc += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if acc >= conf - 1e-12:
            return k
    return n


@pytest.mark.parametrize("n, rates", [(64, {"a": 1 / 65, "b": 1 / 65, "c": 1 / 65, "d": 1 / 65}),
                                      (500, {"pixel": 0.001, "phash": 0.001 + 0.004}),
                                      (24, {"x": 1 / 13, "y": 1 / 13, "z": 1 / 13})])
def test_derived_ceiling_is_the_binomial_upper_bound_of_chance_flags(n, rates):
    c = flag_ceiling(rates, n)
    p = sum(rates.values())
    k = _binom_quantile(n, p, 0.999)
    assert c.max_flagged == k and c.rate == pytest.approx(k / n) and c.chance_rate == pytest.approx(p)
    assert not c.exceeded(k) and c.exceeded(k + 1)
    assert k > n * p  # above the mean number of chance flags
    assert "binomial" in c.rule and "99.9%" in c.rule


def test_demo_sized_ceiling():
    """The demo: 4 methods (CLIP skipped), 64 holdout images, 64 samples: 11 flags (17%) still pass."""
    c = flag_ceiling({m: 1 / 65 for m in ("inception", "phash", "dhash", "pixel")}, 64)
    assert (c.max_flagged, round(c.rate, 3)) == (11, 0.172)


def test_configured_ceiling_overrides():
    c = flag_ceiling({"pixel": 0.5}, 40, configured=0.05)
    assert c.max_flagged == 2 and c.rate == 0.05 and c.chance_rate is None and "max_flag_rate" in c.rule
    assert not c.exceeded(2) and c.exceeded(3)
    assert flag_ceiling({"pixel": 0.5}, 40, configured=0.0).max_flagged == 0


def test_gate_message_when_the_ceiling_closes_it():
    c = flag_ceiling({"pixel": 0.01}, 50)
    fields = c.summary(30)
    summary = {"passed": False, "n_flagged": 30, "n_samples": 50, "excluded": ["a"], **fields}
    g = gate_from_summary(summary, "run/audit/summary.json")
    assert not g.passed
    assert "memorises" in g.reason and "neither images nor weights" in g.reason and "30 of 50" in g.reason
    assert "--exclude-flagged` to release the rest" not in g.reason
    assert fields["flag_rate"] == 0.6 and fields["max_flag_rate"] == c.rate and fields["flag_rate_exceeded"]


@pytest.fixture(scope="module")
def images():
    train = phantoms(60, seed=11)
    holdout = phantoms(99, seed=22)
    distinct = phantoms(60, seed=33)
    return train, holdout, distinct


def _audit(images, n_copies: int, tmp_path, **cfg_kw):
    train, holdout, distinct = images
    copies, _, _ = plant(train, n_copies, seed=44)
    synth = np.concatenate([copies, distinct[: 60 - n_copies]])
    inputs = AuditInputs(
        train_ids=[f"train-{i}" for i in range(len(train))], train=train,
        holdout_ids=[f"holdout-{i}" for i in range(len(holdout))], holdout=holdout,
        synth_ids=[f"syn-{i}" for i in range(len(synth))], synth=synth, synth_files=[""] * len(synth),
    )
    cfg = AuditConfig(methods=["pixel", "phash", "dhash"], exclude_flagged=True, **cfg_kw)
    return audit_arrays(inputs, build_embedders(cfg, []), cfg, FeatureCache(tmp_path / "cache"),
                        exclude_flagged=True, progress=False).summary


def test_chance_level_flags_pass_with_exclude_flagged(images, tmp_path):
    s = _audit(images, 2, tmp_path)  # 2 copies of 60: what chance could give
    assert s["n_flagged"] >= 2 and s["passed"] is True and s["flag_rate_exceeded"] is False
    assert s["flag_rate"] == s["n_flagged"] / 60 <= s["max_flag_rate"]
    # the chance per image: 3 methods at 1/100 each (99 holdout images) plus any floor the holdout lies within
    assert s["chance_flag_rate"] >= 3 / 100
    g = gate_from_summary(s)
    assert g.passed and set(s["excluded"]) == g.excluded


def test_memorising_level_flags_close_the_gate_even_with_exclude_flagged(images, tmp_path):
    s = _audit(images, 40, tmp_path)  # two thirds of the samples are copies
    assert s["n_flagged"] >= 40 and s["exclude_flagged"] is True
    assert s["passed"] is False and s["flag_rate_exceeded"] is True and s["flag_rate"] > s["max_flag_rate"]
    assert "memorises" in s["flag_rate_reason"] and any("memorises" in n for n in s["notes"])
    assert not gate_from_summary(s).passed


def test_configured_ceiling_in_the_audit(images, tmp_path):
    s = _audit(images, 2, tmp_path, max_flag_rate=0.0)  # an explicit ceiling of zero: no flag may pass
    assert s["max_flag_rate"] == 0.0 and s["passed"] is False and s["flag_rate_exceeded"] is True
