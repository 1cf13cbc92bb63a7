"""FID/KID/precision-recall/diversity on real Inception features of small blob image sets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cspine.inception import inception_features
from evaluation import metrics
from evaluation.curves import recommend_sampler
from tests.fakerun import blob_image

N = 16


@pytest.fixture(scope="module")
def blobs():
    """Two independent sets of N blob images (float [0, 1], 64 px)."""
    rng = np.random.default_rng(3)
    a = np.stack([blob_image(rng, 64) for _ in range(N)]).astype(np.float32) / 65535
    b = np.stack([blob_image(rng, 64) for _ in range(N)]).astype(np.float32) / 65535
    return a, b


@pytest.fixture(scope="module")
def feats(blobs):
    return inception_features(blobs[0]), inception_features(blobs[1])


def test_fid_of_a_set_against_itself_is_zero(feats):
    a, _ = feats
    assert abs(metrics.fid(a, a)) < 1e-6  # torchmetrics, 2048-d features
    assert abs(metrics.frechet_distance_lowrank(a, a)) < 1e-6


def test_torchmetrics_fid_agrees_with_direct_frechet_distance(feats):
    a, b = feats
    tm = metrics.fid(a, b)
    assert tm > 1.0
    # exact low-rank form on the full 2048-d features
    assert metrics.frechet_distance_lowrank(a, b) == pytest.approx(tm, rel=1e-6)
    # scipy.linalg.sqrtm on the first 300 features (sqrtm of 2048x2048 takes minutes on this CPU);
    # also checks that the affine-hull projection leaves torchmetrics' value unchanged
    a2, b2 = a[:, :300], b[:, :300]
    direct = metrics.frechet_distance(a2, b2)
    assert metrics.fid(a2, b2, project=False) == pytest.approx(direct, rel=1e-4)
    assert metrics.fid(a2, b2, project=True) == pytest.approx(direct, rel=1e-4)
    assert metrics.frechet_distance_lowrank(a2, b2) == pytest.approx(direct, rel=1e-4)


def _degrade(imgs, kind, level, seed=0):
    if kind == "blur":
        return np.stack([gaussian_filter(im, level) for im in imgs]) if level else imgs
    rng = np.random.default_rng(seed)
    return np.clip(imgs + rng.normal(0, level, imgs.shape).astype(np.float32), 0, 1)


@pytest.mark.parametrize("kind,levels", [("blur", [0, 1.0, 2.5]), ("noise", [0, 0.08, 0.25])])
def test_fid_and_kid_grow_monotonically_with_degradation(blobs, feats, kind, levels):
    real_f = feats[0]
    fids, kids = [], []
    for lvl in levels:
        f = feats[1] if lvl == 0 else inception_features(_degrade(blobs[1], kind, lvl))
        fids.append(metrics.frechet_distance_lowrank(real_f, f))
        kids.append(metrics.kid(real_f, f, subset_size=N, subsets=10)["mean"])
    assert all(x < y for x, y in zip(fids, fids[1:])), (kind, fids)
    assert all(x < y for x, y in zip(kids, kids[1:])), (kind, kids)


def test_precision_recall_identical_and_disjoint():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 8))
    same = metrics.precision_recall(a, a.copy(), k=3)
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    far = metrics.precision_recall(a, a + 100.0, k=3)
    assert far["precision"] == 0.0 and far["recall"] == 0.0
    # a collapsed generator (all samples near one real point) is precise but has low recall
    collapsed = metrics.precision_recall(a, a[:1] + rng.normal(0, 1e-3, size=(40, 8)), k=3)
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.3


def test_diversity_ms_ssim(blobs):
    same = np.repeat(blobs[0][:1], 6, axis=0)
    assert metrics.diversity(same, pairs=10)["mean"] == pytest.approx(1.0, abs=1e-4)
    d_blob = metrics.diversity(blobs[0], pairs=30)
    noise = np.random.default_rng(0).random((8, 64, 64), dtype=np.float32)
    assert metrics.diversity(noise, pairs=20)["mean"] < d_blob["mean"]
    assert d_blob["scales"] == 3 and metrics.ms_ssim_scales(32) == 2 and metrics.ms_ssim_scales(256) == 5


def test_recommend_sampler_fewest_steps_within_noise():
    rows = [
        {"scheduler": "ddpm", "steps": 1000, "kid": 0.010, "kid_std": 0.002, "images_per_s": 1.0},
        {"scheduler": "ddim", "steps": 10, "kid": 0.030, "kid_std": 0.002, "images_per_s": 90.0},
        {"scheduler": "ddim", "steps": 25, "kid": 0.013, "kid_std": 0.002, "images_per_s": 40.0},
        {"scheduler": "dpmsolver++", "steps": 25, "kid": 0.011, "kid_std": 0.001, "images_per_s": 45.0},
        {"scheduler": "ddim", "steps": 50, "kid": 0.010, "kid_std": 0.002, "images_per_s": 20.0},
    ]
    rec = recommend_sampler(rows)
    assert (rec["scheduler"], rec["steps"]) == ("dpmsolver++", 25)  # 25 steps; faster of the two at 25
    assert rec["reference"]["steps"] == 1000 and rec["speedup"] == pytest.approx(45.0)
    # better than the reference beyond noise also qualifies
    better = {"scheduler": "dpmsolver++", "steps": 10, "kid": 0.002, "kid_std": 0.001, "images_per_s": 80.0}
    assert (recommend_sampler(rows + [better])["steps"]) == 10
    # overlapping intervals are not enough: the mean must lie inside the reference interval
    near = {"scheduler": "unipc", "steps": 5, "kid": 0.0135, "kid_std": 0.003, "images_per_s": 99.0}
    assert (recommend_sampler(rows + [near])["scheduler"], recommend_sampler(rows + [near])["steps"]) == ("dpmsolver++", 25)
    # nothing within noise: the reference itself
    rec = recommend_sampler([rows[0], rows[1]])
    assert (rec["scheduler"], rec["steps"]) == ("ddpm", 1000)


def test_metric_input_errors_name_the_problem():
    with pytest.raises(ValueError, match="synthetic set has 1 images"):
        metrics.kid(np.zeros((5, 4)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="feature sizes differ"):
        metrics.frechet_distance(np.zeros((5, 4)), np.zeros((5, 3)))
