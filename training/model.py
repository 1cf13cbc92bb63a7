"""Model construction for `cspine train`: the diffusers U-Net and noise scheduler a run's config describes.

One place turns :class:`training.config.ModelConfig` into a 1-channel ``UNet2DModel`` (sample size =
``data.resolution``) and the matching ``DDPMScheduler``, so training, the benchmarks and the tests build
exactly the same objects. With ``model.condition`` the U-Net also gets a class embedding
(``num_class_embeds`` = 6: the null class 0 and the curvature classes 1-5) and, for layouts,
``in_channels`` = 1 + MAP_CHANNELS (cspine/generation/hub_pipeline.py).
"""

from __future__ import annotations

from training.config import ModelConfig
from cspine.generation.hub_pipeline import CLASS_NAMES, MAP_CHANNELS
from cspine.generation.sampling import noise_scheduler_kwargs


def build_unet(model_cfg: ModelConfig, resolution: int):
    """A randomly initialised single-channel ``UNet2DModel`` at ``resolution`` x ``resolution``."""
    from diffusers import UNet2DModel

    levels = len(model_cfg.block_out_channels)
    if resolution % (2 ** (levels - 1)):
        raise ValueError(
            f"data.resolution={resolution} must be divisible by 2**{levels - 1} "
            f"for a U-Net with {levels} levels (model.block_out_channels)"
        )
    cond = model_cfg.condition
    return UNet2DModel(
        sample_size=resolution,
        in_channels=1 + (MAP_CHANNELS if cond.keypoints else 0),
        num_class_embeds=len(CLASS_NAMES) + 1 if cond.curvature else None,
        out_channels=1,
        layers_per_block=model_cfg.layers_per_block,
        block_out_channels=tuple(model_cfg.block_out_channels),
        down_block_types=tuple(model_cfg.down_block_types),
        up_block_types=tuple(model_cfg.up_block_types),
        norm_num_groups=model_cfg.norm_num_groups,
        attention_head_dim=model_cfg.attention_head_dim,
        dropout=model_cfg.dropout,
    )


def build_noise_scheduler(model_cfg: ModelConfig):
    """The training ``DDPMScheduler`` (also saved in the pipeline; clips x0 to [-1, 1] when sampling)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**noise_scheduler_kwargs(model_cfg))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def conditioned_forward(unet, class_labels, maps):
    """A module that calls a conditional U-Net as ``model(x, t)`` with fixed conditions: what the precision
    probe (training/precision_probe.py, which times ``model(noisy, t)``) needs to time this run's real
    forward pass, layout channels and class embedding included."""
    import torch

    from cspine.generation.hub_pipeline import model_input

    class Conditioned(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet
            self.register_buffer("class_labels", class_labels, persistent=False)
            self.register_buffer("maps", maps, persistent=False)

        def forward(self, x, t):
            return self.unet(model_input(x, self.maps), t, class_labels=self.class_labels)

    return Conditioned()
