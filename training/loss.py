"""The DDPM training loss of `cspine train` (as EDM keeps its loss in loss.py): noise, timesteps, target, MSE.

For micro-batch ``micro`` on process ``rank`` the Gaussian noise and the timesteps come from one CPU
generator seeded by (seed, 2, micro, rank) (cspine.generation.seeds) (noise first, then timesteps), so they are a pure function of
those numbers and the same on any device: a resumed run draws what an uninterrupted one would.

The target follows the model's ``prediction_type``: the noise (epsilon), the velocity v (diffusers'
``get_velocity``) or the clean sample. The loss is the plain mean squared error, computed in float32
whatever precision the forward pass ran in: the DDPM "simple" loss, or with ``train.min_snr_gamma`` the
Min-SNR-gamma weighting (Hang et al., 2023): each sample's squared error is weighted by min(SNR(t), gamma)
divided by what the prediction target makes of the SNR (SNR for epsilon, SNR + 1 for v, 1 for the clean
sample), which stops the many easy low-noise timesteps from dominating the gradient of a short run.

Which timesteps are trained (``train.timesteps``): ``uniform`` draws t uniformly from the training chain
(DDPM); ``lognormal`` draws a noise level sigma from EDM's training distribution, ln sigma ~ N(mean, std)
(Karras et al. 2022: mean -1.2, std 1.2 for data of std 0.5, as images in [-1, 1] are), and trains the
timestep whose equivalent noise level sqrt((1 - alpha_bar) / alpha_bar) is nearest. Uniform t under linear
betas puts half of a short run's steps at sigma > 3 (SNR below 0.03, where the image is a smudge), and
only ~9% below sigma 0.3 where detail is decided; the lognormal spends the budget in between. The sampler
and the chain stay DDPM's, so every scheduler still applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cspine.generation.seeds import stream_seed


@dataclass
class NoisedBatch:
    """What the U-Net sees (``noisy`` at ``timesteps``) and what it must predict (``target``)."""

    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


def noise_levels(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """ln sigma_t = ln sqrt((1 - alpha_bar_t) / alpha_bar_t) of every training timestep (increasing in t)."""
    ab = alphas_cumprod.double().clamp(1e-20, 1.0 - 1e-12)
    return (0.5 * (torch.log1p(-ab) - torch.log(ab))).float()


def lognormal_timesteps(z: torch.Tensor, log_sigmas: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Timesteps whose ln sigma is nearest to ``mean + std * z`` (``log_sigmas`` from :func:`noise_levels`)."""
    target = (mean + std * z).float()
    right = torch.searchsorted(log_sigmas.contiguous(), target).clamp(1, len(log_sigmas) - 1)
    left = right - 1
    nearer_left = (target - log_sigmas[left]).abs() <= (log_sigmas[right] - target).abs()
    return torch.where(nearer_left, left, right)


def draw_noise(seed: int, micro: int, rank: int, shape: torch.Size, num_train_timesteps: int, timesteps=None,
               log_sigmas: torch.Tensor | None = None):
    """(noise [shape], timesteps [shape[0]]) of one micro-batch, from its own CPU generator. ``timesteps`` is
    the ``train.timesteps`` config (None or distribution "uniform": uniform t; "lognormal": see the module
    docstring, which then needs the chain's ``log_sigmas`` from :func:`noise_levels`)."""
    gen = torch.Generator("cpu").manual_seed(stream_seed(seed, 2, micro, rank))
    noise = torch.randn(shape, generator=gen)
    if timesteps is None or timesteps.distribution == "uniform":
        t = torch.randint(0, num_train_timesteps, (shape[0],), generator=gen)
    else:
        z = torch.randn(shape[0], generator=gen)
        t = lognormal_timesteps(z, log_sigmas, timesteps.mean, timesteps.std)
    return noise, t


def target(noise_scheduler, prediction_type: str, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    """What the U-Net is trained to output for ``prediction_type``."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(clean, noise, t)
    if prediction_type == "sample":
        return clean
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def noised_batch(clean: torch.Tensor, noise_scheduler, prediction_type: str, seed: int, micro: int,
                 rank: int = 0, timesteps=None) -> NoisedBatch:
    """The forward-process sample of ``clean`` (already on its device) for micro-batch ``micro``; ``timesteps``
    is the ``train.timesteps`` config (None: uniform)."""
    log_sigmas = None
    if timesteps is not None and timesteps.distribution == "lognormal":
        log_sigmas = noise_levels(noise_scheduler.alphas_cumprod)
    noise, t = draw_noise(seed, micro, rank, clean.shape, noise_scheduler.config.num_train_timesteps, timesteps,
                          log_sigmas)
    noise, t = noise.to(clean.device), t.to(clean.device)
    return NoisedBatch(noise_scheduler.add_noise(clean, noise, t), t,
                       target(noise_scheduler, prediction_type, clean, noise, t))


def snr(noise_scheduler, t: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) of the forward process at timesteps ``t``."""
    ab = noise_scheduler.alphas_cumprod.to(t.device)[t].float()
    return ab / (1.0 - ab).clamp_min(1e-12)


def min_snr_weights(noise_scheduler, t: torch.Tensor, prediction_type: str, gamma: float) -> torch.Tensor:
    """Per-sample Min-SNR-gamma loss weights for the target ``prediction_type`` (see the module docstring)."""
    s = snr(noise_scheduler, t)
    clipped = torch.minimum(s, torch.full_like(s, gamma))
    if prediction_type == "epsilon":
        return clipped / s.clamp_min(1e-12)
    if prediction_type == "v_prediction":
        return clipped / (s + 1.0)
    if prediction_type == "sample":
        return clipped
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def denoising_loss(pred: torch.Tensor, tgt: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error in float32; with ``weights`` [batch], the weighted mean of per-sample errors."""
    if weights is None:
        return F.mse_loss(pred.float(), tgt.float())
    per_sample = F.mse_loss(pred.float(), tgt.float(), reduction="none").flatten(1).mean(1)
    return (weights.float() * per_sample).mean()
