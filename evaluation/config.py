"""Config section of quality evaluation (`cspine evaluate`).

Sample counts are small by default so the demo runs on a CPU in minutes; a real release raises them
(FID needs thousands of images to be unbiased; KID does not, but its spread shrinks with more).
"""

from __future__ import annotations

from pydantic import Field

from cspine.config import SamplerName, Strict
from cspine.twosample import C2STConfig


class SamplerPoint(Strict):
    """One sampler setting of the speed-quality curve."""

    scheduler: SamplerName = Field(description="Sampler (cspine.generation.sampling.make_scheduler).")
    steps: int = Field(ge=1, description="Number of denoising steps.")


class CheckpointCurveConfig(Strict):
    """`cspine evaluate --checkpoints`: score every saved checkpoint on a small sample."""

    num_images: int = Field(32, ge=2, description="Images generated per checkpoint.")
    scheduler: SamplerName = Field("ddim", description="Sampler for the checkpoint curve.")
    steps: int = Field(25, ge=1, description="Sampler steps for the checkpoint curve.")


class SamplerCurveConfig(Strict):
    """`cspine evaluate --samplers`: KID/FID against images/s for several samplers and step counts."""

    num_images: int = Field(32, ge=2, description="Images generated per sampler setting (same indices for all).")
    checkpoint: str = Field("final", description='Checkpoint sampled ("final" or "step-N").')
    points: list[SamplerPoint] = Field(
        default_factory=lambda: [
            SamplerPoint(scheduler="ddpm", steps=1000),
            *[SamplerPoint(scheduler="ddpm", steps=s) for s in (50, 100)],
            *[SamplerPoint(scheduler="ddim", steps=s) for s in (10, 25, 50, 100)],
            *[SamplerPoint(scheduler="dpmsolver++", steps=s) for s in (10, 20, 50)],
            # the candidates at <= 25 network evaluations (issue 14): stochastic solvers, UniPC's corrector,
            # Karras sigmas, and ancestral DDPM itself
            SamplerPoint(scheduler="ddpm", steps=25),
            *[SamplerPoint(scheduler=n, steps=s) for n in ("dpmsolver++-sde", "unipc") for s in (10, 25)],
            *[SamplerPoint(scheduler=n, steps=25) for n in ("dpmsolver++-sde-karras", "unipc-karras", "dpmsolver++-karras")],
        ],
        description="Sampler settings to compare; the one with the most DDPM steps is the reference.",
    )


class FidelityConfig(Strict):
    """Control and label fidelity of conditional samples (evaluation.fidelity): a curvature classifier and a
    landmark detector trained on real training images score the synthetic images against the class they
    were asked for and the keypoints they were released with, beside real holdout images."""

    enabled: bool = Field(True, description="Measure fidelity when samples/ has conditional samples "
                          "(curvature, keypoints columns); skipped with a note otherwise.")
    max_train: int = Field(2000, ge=4, description="Cap on real training images the two networks train on.")
    classifier_epochs: int = Field(20, ge=1, description="Training epochs of the curvature classifier.")
    classifier_size: int = Field(32, ge=16, description="Images are area-resized to this size for the classifier.")
    classifier_width: int = Field(16, ge=4, description="Channels of the classifier's first block.")
    detector_epochs: int = Field(30, ge=1, description="Training epochs of the landmark detector.")
    detector_width: int = Field(8, ge=4, description="Channels of the landmark detector's first block.")
    batch_size: int = Field(32, ge=2, description="Training batch size of both networks.")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (AdamW, one-cycle) of both networks.")
    shift: int = Field(3, ge=0, description="Training augmentation: random shifts of up to this many pixels.")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples of the ratio intervals (0: no interval).")
    grid_images: int = Field(8, ge=1, description="Synthetic images per class in figures/fidelity_class_N.png.")
    min_class_images: int = Field(2, ge=2, description="Fewest images per set for a class's FID/KID.")
    target_accuracy_ratio: float = Field(0.9, description="Target: synthetic / holdout classifier accuracy at least this.")
    target_mre_ratio: float = Field(1.5, description="Target: synthetic / holdout landmark MRE at most this.")
    seed: int = Field(0, description="Seed of the networks' initialisation, batches, augmentation and bootstrap.")


class UtilityConfig(Strict):
    """Downstream utility and coverage of conditional samples (evaluation.utility): train-synthetic-test-real
    against train-real-test-real, the augmentation curve, C2-C7 angle agreement and coverage by group.
    Written to eval/utility.json. Training length is in optimiser steps, not epochs, so every arm and every
    point of the augmentation curve gets the same compute whatever its training-set size."""

    enabled: bool = Field(True, description="Run the utility evaluation when samples/ has conditional samples "
                          "(curvature, keypoints columns); skipped with a note otherwise.")
    max_train: int = Field(2000, ge=4, description="Cap on real training images (the TRTR pool and augmentation base).")
    seeds: int = Field(3, ge=1, description="Training seeds per TSTR / TRTR arm (the interval covers them).")
    augment_seeds: int = Field(2, ge=1, description="Training seeds per point of the augmentation curve.")
    augment_multipliers: list[float] = Field(default_factory=lambda: [0, 1, 2, 4], description=(
        "Synthetic images added per real training image on the augmentation curve; points needing more "
        "synthetic images than the samples hold are dropped (noted in utility.json)."))
    augment_real: int | None = Field(None, ge=2, description=(
        "Real training images of the augmentation base (None: as many as let the largest multiplier fit "
        "the synthetic set, at least augment_min_real, at most all)."))
    augment_min_real: int = Field(16, ge=2, description="Fewest real training images of the augmentation base.")
    classifier_steps: int = Field(150, ge=1, description="Optimiser steps of each curvature / sex / age classifier.")
    classifier_size: int = Field(32, ge=16, description="Images are area-resized to this size for the classifiers.")
    classifier_width: int = Field(16, ge=4, description="Channels of the classifier's first block.")
    detector_steps: int = Field(200, ge=1, description="Optimiser steps of each landmark detector.")
    detector_size: int = Field(32, ge=16, description=(
        "Images are area-resized to this size for the landmark detector (keypoints scaled with them; errors "
        "are reported in the images' own pixels)."))
    detector_width: int = Field(8, ge=4, description="Channels of the landmark detector's first block.")
    batch_size: int = Field(32, ge=2, description="Training batch size.")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (AdamW, one-cycle).")
    shift: int = Field(3, ge=0, description="Training augmentation: random shifts of up to this many pixels "
                       "(at the network's input size).")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples (holdout images and seeds) of every interval.")
    age_bands: list[int] = Field(default_factory=lambda: [40, 60], description=(
        "Edges of the age bands of the coverage table (years): [40, 60] gives <40, 40-59, >=60."))
    under_covered_ratio: float = Field(0.5, gt=0, description=(
        "A group is called under-covered when its synthetic share is below this times its real share."))
    low_recall: float = Field(0.5, gt=0, description=(
        "A group's recall is called low when below this times the real-vs-real recall of that group (or "
        "below this value when there is no real yardstick)."))
    tstr_gap_ratio: float = Field(0.9, gt=0, description=(
        "A TSTR/TRTR score ratio whose interval lies below this (errors: above 1/this) is called a gap."))
    seed: int = Field(0, description="Base seed of subsets, networks, augmentation and bootstrap.")


class EvaluateConfig(Strict):
    """FID/KID, FRD, precision/recall, diversity, checkpoint curve and sampler speed-quality curve."""

    enabled: bool = Field(True, description="Run the stage (false: `cspine evaluate` does nothing).")
    max_images: int = Field(2000, ge=2, description="Cap on images per set (real train, real holdout, synthetic).")
    batch_size: int = Field(32, ge=1, description="Batch size of the Inception network and of sampling.")
    kid_subset_size: int = Field(
        50, ge=2, description="KID subset size (lowered to the smallest set's size when a set is smaller)."
    )
    kid_subsets: int = Field(100, ge=1, description="KID subsets; the reported std is across them.")
    pr_k: int = Field(3, ge=1, description="k of the k-NN manifolds of improved precision/recall (Kynkäänniemi 2019).")
    frd: bool = Field(True, description="Compute the Fréchet Radiomics Distance (frd-score + pyradiomics).")
    frd_max_images: int = Field(100, ge=2, description="Cap on images per set for FRD (pyradiomics is slow).")
    diversity_pairs: int = Field(200, ge=1, description="Random image pairs for mean pairwise MS-SSIM per set.")
    seed: int = Field(0, description="Seed of subsampling, KID subsets and MS-SSIM pairs.")
    sample_seed_offset: int = Field(
        7919, description="Evaluation images are drawn with seed = run seed + this, apart from samples/."
    )
    c2st: C2STConfig = Field(default_factory=C2STConfig, description="Classifier two-sample test, synthetic vs holdout "
                             "(cspine.twosample): AUC with interval in metrics.json, figures/c2st_most_synthetic.png.")
    fidelity: FidelityConfig = Field(default_factory=FidelityConfig, description="Control and label fidelity of "
                                     "conditional samples: metrics.json key `fidelity`, figures/fidelity_*.png.")
    utility: UtilityConfig = Field(default_factory=UtilityConfig, description="Downstream utility and coverage "
                                   "of conditional samples: eval/utility.json, figures/utility_*.png.")
    checkpoint_curve: CheckpointCurveConfig = Field(default_factory=CheckpointCurveConfig)
    sampler_curve: SamplerCurveConfig = Field(default_factory=SamplerCurveConfig)
