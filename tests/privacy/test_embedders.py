"""Each embedder carries its absolute floor and its distance scale, and the audit uses what it carries."""

from __future__ import annotations

import numpy as np
import pytest

from cspine.feature_cache import FeatureCache
from privacy.audit import audit_arrays
from privacy.config import AuditConfig
from privacy.embedders import COSINE, HAMMING_BITS, PEARSON, PixelEmbedder, build_embedders
from privacy.inputs import AuditInputs


def test_floors_come_from_the_config_in_distance_units():
    cfg = AuditConfig(methods=["inception", "phash", "dhash", "pixel"],
                      phash_floor=7, dhash_floor=3, pixel_floor=0.95)
    floors = {e.name: e.floor for e in build_embedders(cfg, [])}
    assert floors == {"inception": None, "phash": 7.0, "dhash": 3.0, "pixel": pytest.approx(0.05)}


def test_scales_label_and_format_distances():
    embs = {e.name: e for e in build_embedders(AuditConfig(methods=["inception", "phash", "dhash", "pixel"]), [])}
    assert {n: e.scale.label for n, e in embs.items()} == {
        "inception": "1 - cosine similarity", "phash": "Hamming bits", "dhash": "Hamming bits",
        "pixel": "1 - Pearson correlation",
    }
    assert all((e.metric == "hamming") == (e.scale is HAMMING_BITS) for e in embs.values())
    assert COSINE.format(0.25) == "cos=0.7500"
    assert PEARSON.format(0.0125) == "r=0.9875"
    assert HAMMING_BITS.format(6.6) == "7 bits" and HAMMING_BITS.format(0.0) == "0 bits"


def _noise_inputs(n_train: int = 20, n_holdout: int = 20, n_synth: int = 5) -> AuditInputs:
    rng = np.random.default_rng(3)
    imgs = (rng.random((n_train + n_holdout + n_synth, 32, 32)) * 65535).astype(np.uint16)
    tr, ho, sy = np.split(imgs, [n_train, n_train + n_holdout])
    return AuditInputs(
        train_ids=[f"t{i}" for i in range(n_train)], train=tr, holdout_ids=[f"h{i}" for i in range(n_holdout)],
        holdout=ho, synth_ids=[f"s{i}" for i in range(n_synth)], synth=sy, synth_files=[""] * n_synth,
    )


@pytest.mark.parametrize("floor", [None, 1.5])
def test_audit_flags_by_the_embedders_own_floor(tmp_path, floor):
    """Independent noise images are ~1 - r = 1 apart: a floor of 1.5 covers every pair, no floor none."""
    inputs = _noise_inputs()
    cfg = AuditConfig(methods=["pixel"], floor_max_holdout_share=1.0)  # keep the floor though holdout lies inside
    emb = PixelEmbedder(size=16, align_steps=0, floor=floor)
    res = audit_arrays(inputs, [emb], cfg, FeatureCache(tmp_path), exclude_flagged=False, progress=False)
    (m,) = res.methods
    thr = res.summary["thresholds"]["pixel"]
    assert thr["floor"] == floor and thr["distance"] == "1 - Pearson correlation"
    if floor is None:
        assert not m.floor_hits.any()
    else:
        assert m.floor_hits.all() and res.table["flagged"].all()
