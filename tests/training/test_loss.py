"""The loss weighting and noise-schedule options of the training recipe (issue 14), against textbook formulas."""

import numpy as np
import pytest
import torch

from training.config import ModelConfig
from training.loss import denoising_loss, min_snr_weights
from training.model import build_noise_scheduler


def _alpha_bar_linear(T=1000, b0=1e-4, b1=0.02):
    return np.cumprod(1.0 - np.linspace(b0, b1, T, dtype=np.float64))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weights_follow_hang_et_al(prediction_type):
    sched = build_noise_scheduler(ModelConfig(prediction_type=prediction_type))
    t = torch.tensor([0, 10, 100, 300, 999])
    ab = _alpha_bar_linear()[t.numpy()]
    snr = ab / (1 - ab)
    clipped = np.minimum(snr, 5.0)
    expect = {"epsilon": clipped / snr, "v_prediction": clipped / (snr + 1), "sample": clipped}[prediction_type]
    got = min_snr_weights(sched, t, prediction_type, 5.0).numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-3)  # the scheduler keeps alpha_bar in float32
    if prediction_type == "epsilon":
        assert got[0] < 0.01 and got[-1] == pytest.approx(1.0)  # easy, low-noise steps down-weighted


def test_weighted_loss_is_the_weighted_mean_of_per_sample_errors():
    g = torch.Generator().manual_seed(0)
    pred, tgt = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    assert denoising_loss(pred, tgt, torch.ones(4)).item() == pytest.approx(denoising_loss(pred, tgt).item(), rel=1e-6)
    w = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert denoising_loss(pred, tgt, w).item() == pytest.approx(((pred[0] - tgt[0]) ** 2).mean().item() / 4, rel=1e-6)


def test_zero_terminal_snr_ends_in_pure_noise_and_needs_v():
    sched = build_noise_scheduler(ModelConfig(prediction_type="v_prediction", zero_terminal_snr=True))
    assert float(sched.alphas_cumprod[-1]) < 1e-6
    assert float(build_noise_scheduler(ModelConfig()).alphas_cumprod[-1]) > 1e-6
    with pytest.raises(ValueError, match="zero_terminal_snr"):
        ModelConfig(prediction_type="epsilon", zero_terminal_snr=True)
