"""The audit measures its own power (privacy/power.py): recall of planted copies per change family, at the
calibrated thresholds, in summary.json and summary.md. The pHash column is recomputed here independently
(imagehash objects compared pair by pair against every training image, the threshold applied by hand), and a
method that cannot see a change must show a low recall for it (the table can say "weak")."""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

from cspine.feature_cache import FeatureCache
from cspine.images import to_unit
from privacy import power
from privacy.audit import audit_arrays
from privacy.config import AuditConfig
from privacy.embedders import build_embedders
from privacy.inputs import AuditInputs
from privacy.outputs import render_markdown
from tests.privacy.planted import phantoms

N_TRAIN, N_HOLDOUT, N_SYN, PER_FAMILY = 60, 80, 8, 10


def _inputs() -> AuditInputs:
    train, holdout, synth = phantoms(N_TRAIN, seed=11), phantoms(N_HOLDOUT, seed=22), phantoms(N_SYN, seed=33)
    return AuditInputs(
        train_ids=[f"t{i}" for i in range(N_TRAIN)], train=train,
        holdout_ids=[f"h{i}" for i in range(N_HOLDOUT)], holdout=holdout,
        synth_ids=[f"s{i}" for i in range(N_SYN)], synth=synth, synth_files=[""] * N_SYN,
    )


def _phash(a: np.ndarray) -> imagehash.ImageHash:
    return imagehash.phash(Image.fromarray(np.rint(to_unit(a) * 255).astype(np.uint8), mode="L"))


def test_power_table_matches_an_independent_recount(tmp_path):
    inputs = _inputs()
    cfg = AuditConfig(methods=["phash", "pixel"], power_copies=PER_FAMILY)
    result = audit_arrays(inputs, build_embedders(cfg, []), cfg, FeatureCache(tmp_path / "c"), exclude_flagged=True,
                          progress=False, seed=5)
    p = result.summary["power"]
    assert p["copies_per_family"] == PER_FAMILY and set(p["families"]) == set(power.FAMILIES)
    assert all(r["n"] == PER_FAMILY for r in p["families"].values())

    # the same copies (same seed), hashed and compared here without the audit's search code
    images, sources, names = power.plant(inputs.train, PER_FAMILY, 5 + 1)
    thr = next(m for m in result.methods if m.name == "phash").threshold
    train_h = [_phash(a) for a in inputs.train]
    dist = np.array([min(_phash(c) - h for h in train_h) for c in images], dtype=float)
    mine = (dist < thr.calibrated) | ((dist <= thr.floor) if thr.floor is not None else False)
    for fam, row in p["families"].items():
        sel = np.array(names) == fam
        assert row["phash"] == round(float(mine[sel].mean()), 4), fam
    # the audit's own rule (any method, here min_methods=1) flags at least what each method flags
    for row in p["families"].values():
        assert row["audit"] >= max(row["phash"], row["pixel"])
    # and the table reaches the summary the dataset card includes
    md = render_markdown(result)
    assert "How strong this check is" in md and "brightness contrast" in md and "held-out real images flagged" in md


def test_a_blind_method_shows_low_recall(tmp_path):
    """On these phantoms held-out images sit almost on top of training ones, so dHash's calibrated threshold
    is 0 bits and, without its floor, it flags next to nothing: an audit that weak must not look strong in its
    own table (measured: 0% for every family, where phash+dhash+pixel reach 100%)."""
    inputs = _inputs()
    cfg = AuditConfig(methods=["dhash"], power_copies=PER_FAMILY, dhash_floor=0)
    result = audit_arrays(inputs, build_embedders(cfg, []), cfg, FeatureCache(tmp_path / "c"), exclude_flagged=True,
                          progress=False, seed=5)
    rec = {fam: r["dhash"] for fam, r in result.summary["power"]["families"].items()}
    assert min(rec.values()) < 0.9, rec


def test_zero_copies_skips_the_measurement(tmp_path):
    cfg = AuditConfig(methods=["phash"], power_copies=0)
    result = audit_arrays(_inputs(), build_embedders(cfg, []), cfg, FeatureCache(tmp_path / "c"),
                          exclude_flagged=True, progress=False)
    assert result.summary["power"] == {"copies_per_family": 0}
    assert "How strong" not in render_markdown(result)
