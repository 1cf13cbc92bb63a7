"""Config sections of the training package: data (prepare), model, train and sample."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from cspine.schema import Strict


class PhantomConfig(Strict):
    """The procedural phantom generator (`cspine demo-data`)."""

    count: int = Field(240, ge=1, description="Number of phantom radiographs.")
    cases: int = Field(120, ge=1, description="Number of distinct cases (patients); images per case = count/cases.")
    height: int = Field(512, ge=64, description="Height of each phantom PNG in pixels.")
    width: int = Field(400, ge=64, description="Width of each phantom PNG in pixels.")
    seed: int = Field(1234, description="Seed of the generator; same seed, same files.")


class DataConfig(Strict):
    """Where the radiographs are and how `cspine prepare` turns them into a pixel cache."""

    source: Literal["phantom", "csxa", "folder"] = Field(
        description="phantom: CSXA-shaped folder written by `cspine demo-data`; csxa: the real CSXA layout; "
        "folder: any folder of DICOM/PNG/JPEG files."
    )
    path: Path = Field(description="Input folder (for phantom, where demo-data writes it).")
    resolution: int = Field(64, ge=8, description="Model resolution: images are padded to square and resized to this.")
    holdout_fraction: float = Field(0.15, ge=0.0, lt=1.0, description="Share of cases kept out of training.")
    max_bad_fraction: float = Field(0.05, ge=0.0, le=1.0, description="Fail when more than this share of files is bad.")
    max_image_pixels: int = Field(100_000_000, ge=1, description="Larger images are rejected as decompression bombs.")
    phantom: PhantomConfig = Field(default_factory=PhantomConfig)


class ModelConfig(Strict):
    """diffusers UNet2DModel and DDPMScheduler settings."""

    block_out_channels: list[int] = Field([32, 64, 64], description="Channels per U-Net level.")
    down_block_types: list[str] = Field(["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"])
    up_block_types: list[str] = Field(["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"])
    layers_per_block: int = Field(1, ge=1)
    num_train_timesteps: int = Field(1000, ge=1)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"


class EMAConfig(Strict):
    """diffusers EMAModel settings; warm-up makes EMA usable on short runs."""

    decay: float = Field(0.9999, gt=0.0, lt=1.0, description="Maximum EMA decay.")
    use_warmup: bool = Field(True, description="Ramp the decay up (inv_gamma, power), as short runs need.")
    inv_gamma: float = 1.0
    power: float = Field(0.75, description="2/3 suits long runs, 3/4 short ones (diffusers' note).")


class TrainConfig(Strict):
    """Training loop settings (`cspine train`)."""

    batch_size: int = Field(16, ge=1, description="Per-process batch size.")
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_steps: int = Field(300, ge=1, description="Optimizer steps.")
    learning_rate: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = Field("bf16", description="accelerate mixed precision.")
    checkpoint_every: int = Field(100, ge=1, description="Save a resumable checkpoint every N steps.")
    keep_checkpoints: int = Field(3, ge=1, description="Keep the newest N checkpoints (plus any listed in sample.checkpoints).")
    sample_every: int = Field(100, ge=1, description="Write a sample grid PNG every N steps.")
    grid_images: int = Field(16, ge=1)
    grid_steps: int = Field(25, ge=1, description="DDIM steps used for the periodic grids.")
    ema: EMAConfig = Field(default_factory=EMAConfig)
    tensorboard: bool = False
    num_threads: int | None = Field(None, description="torch threads (default: all cores).")


class SampleConfig(Strict):
    """Sampling settings (`cspine sample`)."""

    num_images: int = Field(64, ge=1, description="Images per checkpoint.")
    batch_size: int = Field(16, ge=1)
    scheduler: Literal["ddpm", "ddim", "dpmsolver++"] = "ddim"
    steps: int = Field(50, ge=1, description="Sampler steps (DDPM uses its training timesteps unless set lower).")
    checkpoints: list[str] = Field(
        ["final"], description='"final" (the EMA pipeline) and/or "step-N" checkpoints; the reader study uses three.'
    )
    shard_size: int = Field(64, ge=1, description="Images per resumable shard.")
    bit_depth: Literal[8, 16] = 16
    seed: int | None = Field(None, description="Sampling seed (default: the run seed).")
