"""The DDPM training loss of `cspine train` (as EDM keeps its loss in loss.py): noise, timesteps, target, MSE.

For micro-batch ``micro`` on process ``rank`` the Gaussian noise and the timesteps come from one CPU
generator seeded by (seed, 2, micro, rank) (training.seeds) (noise first, then timesteps), so they are a pure function of
those numbers and the same on any device: a resumed run draws what an uninterrupted one would.

The target follows the model's ``prediction_type``: the noise (epsilon), the velocity v (diffusers'
``get_velocity``) or the clean sample. The loss is the plain mean squared error, computed in float32
whatever precision the forward pass ran in: the DDPM "simple" loss, or with ``train.min_snr_gamma`` the
Min-SNR-gamma weighting (Hang et al., 2023): each sample's squared error is weighted by min(SNR(t), gamma)
divided by what the prediction target makes of the SNR (SNR for epsilon, SNR + 1 for v, 1 for the clean
sample), which stops the many easy low-noise timesteps from dominating the gradient of a short run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.seeds import stream_seed


@dataclass
class NoisedBatch:
    """What the U-Net sees (``noisy`` at ``timesteps``) and what it must predict (``target``)."""

    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


def draw_noise(seed: int, micro: int, rank: int, shape: torch.Size, num_train_timesteps: int):
    """(noise [shape], timesteps [shape[0]]) of one micro-batch, from its own CPU generator."""
    gen = torch.Generator("cpu").manual_seed(stream_seed(seed, 2, micro, rank))
    noise = torch.randn(shape, generator=gen)
    timesteps = torch.randint(0, num_train_timesteps, (shape[0],), generator=gen)
    return noise, timesteps


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
                 rank: int = 0) -> NoisedBatch:
    """The forward-process sample of ``clean`` (already on its device) for micro-batch ``micro``."""
    noise, t = draw_noise(seed, micro, rank, clean.shape, noise_scheduler.config.num_train_timesteps)
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
