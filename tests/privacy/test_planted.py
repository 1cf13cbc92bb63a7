"""Done-when of the audit: planted near-copies of training images are flagged, distinct images are not.

Training, holdout (calibration) and distinct "synthetic" images are phantom radiographs of different
patients (training/phantom, 64 px); planted copies are training images after one small change each
(crop of 2-5%, brightness/contrast, noise, JPEG, down-and-up resize; tests/privacy/planted.py). The fast
methods run (pixel, pHash, dHash); CLIP and Inception are too slow on this CPU for hundreds of images
in a test and are exercised in test_audit_cli.py. Both rates are printed and asserted.
"""

from __future__ import annotations

import numpy as np

from cspine.feature_cache import FeatureCache
from privacy.audit import audit_arrays
from privacy.config import AuditConfig
from privacy.embedders import build_embedders
from privacy.inputs import AuditInputs
from privacy.power import combined
from tests.privacy.planted import TRANSFORMS, phantoms, plant

N_TRAIN, N_HOLDOUT, N_DISTINCT, N_PLANTED, N_COMBINED = 300, 400, 300, 300, 60


def test_planted_copies_flagged_distinct_images_not(tmp_path, capsys):
    train = phantoms(N_TRAIN, seed=11)
    holdout = phantoms(N_HOLDOUT, seed=22)
    distinct = phantoms(N_DISTINCT, seed=33)
    planted, src, names = plant(train, N_PLANTED, seed=44)
    hard, hard_src, _ = plant(train, N_COMBINED, seed=55, transforms=(combined,))
    synth = np.concatenate([distinct, planted, hard])
    inputs = AuditInputs(
        train_ids=[f"train-{i}" for i in range(N_TRAIN)], train=train,
        holdout_ids=[f"holdout-{i}" for i in range(N_HOLDOUT)], holdout=holdout,
        synth_ids=[f"syn-{i}" for i in range(len(synth))], synth=synth, synth_files=[""] * len(synth),
    )
    cfg = AuditConfig(methods=["pixel", "phash", "dhash"])
    result = audit_arrays(inputs, build_embedders(cfg, []), cfg, FeatureCache(tmp_path / "cache"),
                          exclude_flagged=False, progress=False)
    flagged = result.table["flagged"].to_numpy()
    is_distinct = np.arange(len(synth)) < N_DISTINCT
    is_planted = (np.arange(len(synth)) >= N_DISTINCT) & (np.arange(len(synth)) < N_DISTINCT + N_PLANTED)
    fpr = flagged[is_distinct].mean()
    recall = flagged[is_planted].mean()
    hard_recall = flagged[N_DISTINCT + N_PLANTED :].mean()
    per = {t.__name__: round(float(flagged[is_planted][np.array(names) == t.__name__].mean()), 3) for t in TRANSFORMS}
    # the nearest training image of a flagged copy is its source
    nn = result.table["pixel_nn_id"].to_numpy()[is_planted]
    source_found = np.mean(nn == np.array([f"train-{i}" for i in src]))
    with capsys.disabled():
        print(f"\n[planted] recall {recall:.2%} of {N_PLANTED} planted copies {per}; false-flag rate "
              f"{fpr:.2%} of {N_DISTINCT} distinct phantoms; source found {source_found:.1%}; "
              f"combined changes (extra, not required) {hard_recall:.1%} of {N_COMBINED}")
    assert recall >= 0.99, per
    assert fpr <= 0.01
    assert source_found >= 0.99
    assert result.summary["passed"] is False and result.summary["n_flagged"] == int(flagged.sum())
