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


@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
def test_lognormal_timesteps_pick_the_nearest_noise_level(beta_schedule):
    """Each drawn sigma maps to the timestep whose sqrt((1 - alpha_bar) / alpha_bar) is nearest in log space:
    checked against a brute-force argmin over the whole chain, and the drawn levels follow EDM's lognormal."""
    from diffusers import DDPMScheduler

    from training.loss import lognormal_timesteps, noise_levels

    ab = DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule).alphas_cumprod.double()
    log_sigma = 0.5 * torch.log((1 - ab) / ab)
    z = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    t = lognormal_timesteps(z, noise_levels(ab), -1.2, 1.2)
    brute = (log_sigma[None, :] - (-1.2 + 1.2 * z.double())[:, None]).abs().argmin(1)
    assert (log_sigma[t] - log_sigma[brute]).abs().max() < 1e-5  # ties may pick either neighbour
    inside = (-1.2 + 1.2 * z > log_sigma[1]) & (-1.2 + 1.2 * z < log_sigma[-2])
    drawn = log_sigma[t][inside]
    assert abs(drawn.mean().item() - (-1.2 + 1.2 * z[inside].double()).mean().item()) < 0.02


def test_training_timestep_distribution_changes_only_the_timesteps():
    """`train.timesteps` lognormal: same noise as uniform (the generator draws it first), timesteps
    concentrated at low-to-middle noise levels, and still a pure function of (seed, micro-batch, rank)."""
    from training.config import TrainConfig
    from training.loss import noised_batch

    train = TrainConfig.model_validate({"timesteps": {"distribution": "lognormal"}})
    sched = build_noise_scheduler(ModelConfig())
    clean = torch.rand(256, 1, 8, 8) * 2 - 1
    uni = noised_batch(clean, sched, "epsilon", 0, 3)
    ln = noised_batch(clean, sched, "epsilon", 0, 3, timesteps=train.timesteps)
    again = noised_batch(clean, sched, "epsilon", 0, 3, timesteps=train.timesteps)
    assert torch.equal(uni.target, ln.target)
    assert torch.equal(ln.timesteps, again.timesteps)
    assert ln.timesteps.float().median() < 200 < uni.timesteps.float().median()
