"""Config sections of the training package: data (prepare), model, train and sample."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cspine.config import SamplerName, Strict
from cspine.rundir import checkpoint_step


class PhantomConfig(Strict):
    """The procedural phantom generator (`cspine demo-data`)."""

    count: int = Field(240, ge=1, description="Number of phantom radiographs.")
    cases: int = Field(
        120, ge=1, le=8999,
        description="Number of distinct cases (patients, 4-digit ids): each gets one image, the remaining "
        "count - cases images go to seeded random cases (so some cases have two or more, like follow-ups).",
    )
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
    resolution: int = Field(64, ge=8, description="Model resolution: images are cropped square around the spine (never padded) and resized to this.")
    holdout_fraction: float = Field(0.15, ge=0.0, lt=1.0, description="Share of cases kept out of training.")
    max_bad_fraction: float = Field(0.05, ge=0.0, le=1.0, description="Fail when more than this share of files is bad.")
    max_image_pixels: int = Field(100_000_000, ge=1, description="Larger images are rejected as decompression bombs.")
    phantom: PhantomConfig = Field(default_factory=PhantomConfig)


class ConditionConfig(Strict):
    """What the U-Net is conditioned on (cspine/generation/hub_pipeline.py says why this design)."""

    curvature: bool = Field(False, description="Class-conditional on the curvature class 1-5 (class embedding with a "
                            "null class 0; images without a class train as null).")
    keypoints: bool = Field(False, description="Also conditional on a landmark layout (2 extra input channels: blobs at "
                            "the 23 keypoints, filled vertebral bodies); samples draw layouts from a shape model "
                            "fitted to the training keypoints and ship them as labels. Needs curvature.")
    drop_prob: float = Field(0.1, ge=0.0, lt=1.0, description="Share of training images whose class and layout are "
                             "dropped together (null/zeros), so one model also samples unconditionally (CFG).")
    map_sigma: float = Field(1.0, gt=0.0, description="Gaussian blob radius (sigma) of a keypoint in pixels at 64 px "
                             "(scaled with the resolution).")
    shape_modes: int = Field(8, ge=0, description="At most this many PCA modes per class in the shape model.")
    min_class_images: int = Field(10, ge=2, description="A class with fewer labelled training images uses the pooled "
                                  "shape model of all classes (the shape model ships with the weights: it must "
                                  "summarise many patients, never describe one).")

    @model_validator(mode="after")
    def _keypoints_need_classes(self) -> "ConditionConfig":
        if self.keypoints and not self.curvature:
            raise ValueError("condition.keypoints needs condition.curvature (layouts are drawn per class)")
        return self


class ModelConfig(Strict):
    """diffusers UNet2DModel (1 channel, sample_size = data.resolution) and DDPMScheduler settings."""

    block_out_channels: list[int] = Field([32, 64, 64], description="Channels per U-Net level (one per down/up block).")
    down_block_types: list[str] = Field(
        ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"], description="diffusers down block class per level."
    )
    up_block_types: list[str] = Field(
        ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], description="diffusers up block class per level (deepest first)."
    )
    layers_per_block: int = Field(1, ge=1, description="ResNet layers per U-Net block.")
    norm_num_groups: int = Field(32, ge=1, description="GroupNorm groups; must divide every entry of block_out_channels.")
    attention_head_dim: int = Field(8, ge=1, description="Channels per attention head in Attn* blocks.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the ResNet blocks.")
    num_train_timesteps: int = Field(1000, ge=1, description="Diffusion steps of the forward process (DDPM T).")
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field(
        "linear", description="Noise (beta) schedule of the DDPMScheduler."
    )
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = Field(
        "epsilon", description="What the U-Net predicts: the noise (epsilon), v, or the clean sample."
    )
    zero_terminal_snr: bool = Field(
        False, description="Rescale the betas so the last timestep is pure noise (Lin et al. 2024); needs "
        "v_prediction (epsilon is undefined at zero SNR)."
    )
    condition: ConditionConfig = Field(default_factory=ConditionConfig,
                                       description="Curvature-class and landmark-layout conditioning (off by default).")

    @model_validator(mode="after")
    def _check_blocks(self) -> "ModelConfig":
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(
                f"block_out_channels, down_block_types and up_block_types need the same length "
                f"(got {n}, {len(self.down_block_types)}, {len(self.up_block_types)})"
            )
        if self.zero_terminal_snr and self.prediction_type == "epsilon":
            raise ValueError("zero_terminal_snr: true needs prediction_type v_prediction or sample "
                             "(at zero SNR the noise cannot be predicted from the image)")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"norm_num_groups={self.norm_num_groups} does not divide block_out_channels {bad}")
        return self


class EMAConfig(Strict):
    """diffusers EMAModel settings; warm-up makes EMA usable on short runs.

    With warm-up the decay at step s is min(decay, 1 - (1 + s / inv_gamma) ** -power): about 0.95 after
    50 steps and 0.99 after 500 with power 3/4, so a short run's EMA tracks the model instead of the init.
    """

    decay: float = Field(0.9999, gt=0.0, lt=1.0, description="Maximum EMA decay.")
    use_warmup: bool = Field(True, description="Ramp the decay up (inv_gamma, power), as short runs need.")
    inv_gamma: float = Field(1.0, gt=0.0, description="Warm-up time scale in steps (diffusers' inv_gamma).")
    power: float = Field(0.75, gt=0.0, description="Warm-up exponent: 2/3 suits long runs, 3/4 short ones (diffusers' note).")


class TimestepConfig(Strict):
    """Which training timesteps each step draws (training/loss.py says why the lognormal)."""

    distribution: Literal["uniform", "lognormal"] = Field(
        "uniform", description="uniform: t uniform over the chain (DDPM); lognormal: EDM's ln sigma ~ N(mean, std), "
        "mapped to the nearest timestep.")
    mean: float = Field(-1.2, description="Mean of ln sigma (lognormal; EDM's P_mean).")
    std: float = Field(1.2, gt=0, description="Standard deviation of ln sigma (lognormal; EDM's P_std).")


class TrainConfig(Strict):
    """Training loop settings (`cspine train`)."""

    batch_size: int = Field(16, ge=1, description="Per-process batch size.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    max_steps: int = Field(300, ge=1, description="Optimizer steps.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak AdamW learning rate (after warm-up).")
    lr_schedule: Literal["constant_with_warmup", "cosine", "linear"] = Field(
        "cosine", description="diffusers.optimization.get_scheduler schedule after the warm-up."
    )
    warmup_steps: int = Field(50, ge=0, description="Linear learning-rate warm-up steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping (global L2 norm).")
    min_snr_gamma: float | None = Field(
        None, gt=0, description="Min-SNR-gamma loss weighting (Hang et al. 2023; 5 is their choice); null = plain MSE."
    )
    timesteps: TimestepConfig = Field(default_factory=TimestepConfig, description="Training timestep distribution.")
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto",
        description='auto: time a few steps of fp32, bf16, fp16 (CUDA only), channels_last and (CUDA only) '
        'torch.compile on this machine at start-up and keep the fastest, fp32 unless another is faster beyond '
        'the noise (training/precision.py); or exactly "no" (also "fp32"), "bf16" or "fp16" (CUDA; bf16 on a CPU).',
    )
    checkpoint_every: int = Field(100, ge=1, description="Save a resumable checkpoint every N steps.")
    keep_checkpoints: int = Field(3, ge=1, description="Keep the newest N checkpoints (plus those in keep_steps).")
    keep_steps: list[int] = Field(
        [], description="Checkpoint steps never pruned: every step-N that sample.checkpoints names must be here "
        "(the composed config checks it), so training keeps what sampling will read.",
    )
    sample_every: int = Field(100, ge=1, description="Write a sample grid PNG (model/grids/) every N steps and at the end.")
    grid_images: int = Field(16, ge=1, description="Images in each grid (EMA weights).")
    grid_steps: int = Field(25, ge=1, description="DDPM (ancestral) steps used for the periodic grids.")
    ema: EMAConfig = Field(default_factory=EMAConfig, description="Exponential moving average of the weights.")
    tensorboard: bool = Field(False, description="Also log to TensorBoard (model/tensorboard/; needs the tensorboard package).")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice).")

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _full_precision_spellings(cls, v):
        """YAML reads a bare ``no`` (and ``off``, ``false``) as False; "fp32" is the natural name for it."""
        if v is False or (isinstance(v, str) and v.strip().lower() in ("fp32", "no", "none", "off", "false")):
            return "no"
        return v


class SampleConfig(Strict):
    """Sampling settings (`cspine sample`)."""

    num_images: int = Field(64, ge=1, description="Images per checkpoint.")
    batch_size: int = Field(16, ge=1, description="Images denoised together (does not change any image).")
    scheduler: SamplerName = Field("ddim", description="Sampler.")
    steps: int = Field(50, ge=1, description="Sampler steps (for ddpm set it to model.num_train_timesteps for the full chain).")
    checkpoints: list[str] = Field(
        ["final"], description='"final" (the EMA pipeline) and/or "step-N" checkpoints; the reader study uses three.'
    )
    shard_size: int = Field(64, ge=1, description="Images per resumable shard.")
    bit_depth: Literal[8, 16] = Field(16, description="PNG bit depth of the written samples.")
    seed: int | None = Field(None, description="Sampling seed (default: the run seed).")
    per_class: Literal["train", "balanced", "unconditional"] | dict[int, int] = Field(
        "train", description="Conditional models: images of each curvature class per checkpoint. train: num_images in "
        "the training images' class proportions; balanced: split evenly; unconditional: null class only; or a "
        "table {class: count} (then num_images is not used). Unconditional models ignore it.")
    guidance_scale: float = Field(1.0, ge=0.0, description="Classifier-free guidance w: eps_u + w (eps_c - eps_u); 1 is "
                                  "the plain conditional model (one U-Net pass a step; other values take two).")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads while sampling (default: torch's choice).")

    @field_validator("per_class")
    @classmethod
    def _check_per_class(cls, v):
        if isinstance(v, dict):
            bad = [k for k in v if k not in range(1, 6)]
            if bad or any(n < 0 for n in v.values()) or not sum(v.values()):
                raise ValueError(f"per_class table needs classes 1-5 and counts >= 0, not all 0 (got {v})")
        return v

    @field_validator("checkpoints")
    @classmethod
    def _check_checkpoints(cls, v: list[str]) -> list[str]:
        for name in v:
            if name != "final" and checkpoint_step(name) is None:
                raise ValueError(f'checkpoint {name!r} must be "final" or "step-N"')
        if len(set(v)) != len(v):
            raise ValueError(f"checkpoints listed twice: {v}")
        return v
