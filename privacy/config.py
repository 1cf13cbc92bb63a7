"""Config section of the privacy audit (`cspine audit`): the ``audit:`` keys of a run config."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cspine.config import Strict

Method = Literal["clip", "inception", "phash", "dhash", "pixel", "copydetect"]


class ClipConfig(Strict):
    model: str = Field("ViT-B-32", description="open_clip model name (open_clip.list_models()).")
    pretrained: str = Field(
        "laion2b_s34b_b79k",
        description="open_clip pretrained tag (downloaded once, online) or a local checkpoint path "
        "(.safetensors preferred). When neither can be had, CLIP is skipped with a note and Inception runs.",
    )


#: The default methods: the ones that find planted copies (tests/privacy/test_copy_recall.py runs exactly
#: these). At the paper's scale `make bench` projects 20-21 min for them against 72-82 min with clip and
#: inception added (three runs on a 2-core CPU: Inception-v3 alone 33-43 min, CLIP 18-19 min); in the demo's
#: power table (21 change families, 20 planted copies each) one of these four alone already reaches the
#: audit's recall in every family, so dropping Inception changes no family's recall.
FAST_METHODS: tuple[str, ...] = ("phash", "dhash", "pixel", "copydetect")


class AuditConfig(Strict):
    """Nearest-neighbour memorisation audit and the release gate."""

    methods: list[Method] = Field(
        list(FAST_METHODS),
        description="Methods to run. The default (phash, dhash, pixel, copydetect) carries the measured recall of "
        "every planted-copy family; add clip and inception for semantic neighbours in the report (they cost "
        "about 70% of a paper-scale audit and flag few transformed copies). clip is skipped with a note when "
        "its weights cannot be had (inception then runs in its place). copydetect (privacy/copydetect.py) "
        "finds copies that were rotated, shifted, zoomed, cropped, sheared, filtered, re-windowed or written on.",
    )
    copydetect_steps: int = Field(
        1000, ge=0,
        description="copydetect: training steps of its embedding (batch 128, on the training images; about 0.13 s "
        "each on one core at 64 px). The embedding proposes the candidates and its cosine distance is part of "
        "each pair's score: 1000 steps against 200, with that score, lifted the combined-change families by 0-11 "
        "points (privacy/copydetect.py).",
    )
    copydetect_candidates: int = Field(
        10, ge=1,
        description="copydetect: candidates per image verified by alignment (cost grows linearly with it). A copy "
        "whose source is not among them cannot be found: with 2000 training phantoms the 1000-step embedding put "
        "the source among 10 candidates for 97-100% of each family's copies (among 5: 95-100%); raise it for "
        "larger training sets rather than lower it.",
    )
    clip: ClipConfig = Field(default_factory=ClipConfig)
    top_k: int = Field(5, ge=1, description="Nearest training neighbours kept per synthetic image and method.")
    holdout_quantile: float = Field(
        0.001, gt=0, lt=1,
        description="Flag a synthetic image closer to training than this quantile of holdout images are "
        "(holdout-to-train nearest-neighbour distances; with fewer than 1/q holdout images this is their minimum).",
    )
    phash_floor: int = Field(10, ge=0, le=64, description="pHash Hamming distance (of 64) at or below which an image is always flagged (imagededup's default).")
    dhash_floor: int = Field(6, ge=0, le=64, description="dHash Hamming distance (of 64) at or below which an image is always flagged.")
    pixel_floor: float = Field(
        0.98, ge=0, le=1,
        description="Pearson correlation of downsampled, intensity-normalised pixels at or above which an image is always flagged.",
    )
    floor_max_holdout_share: float = Field(
        0.01, ge=0, le=1,
        description="A method's absolute floor is switched off (with a note) when more than this share of "
        "holdout images lie within it of a training image: the floor would then flag distinct images.",
    )
    pixel_size: int = Field(32, ge=8, le=256, description="Side of the downsampled image compared in pixel space.")
    pixel_align_steps: int = Field(
        4, ge=0, le=8,
        description="Pixel method: compare against every crop of each reference image of up to this many 64ths "
        "of its side, at every offset (4 -> 55 crops, up to 6%), so cropped copies line up; 0 = no alignment.",
    )
    min_methods: int = Field(
        1, ge=1,
        description="A synthetic image is flagged when at least this many methods flag it (an absolute floor always flags).",
    )
    batch_size: int = Field(32, ge=1, description="Images per embedding batch (CLIP, Inception).")
    chunk_size: int = Field(2048, ge=1, description="Synthetic images per block of the nearest-neighbour search (bounds memory).")
    power_copies: int = Field(
        20, ge=0,
        description="Training images copied under each change family (privacy.power, 21 families) to measure the "
        "audit's own recall, reported in summary.json, report.html and the dataset card (0: skip the measurement). "
        "Every copy is searched by every method; 20 x 21 = 420 copies resolve recall to 5% per family and cost "
        "copydetect about 40 s on one core (10 candidates verified each).",
    )
    report_pairs: int = Field(40, ge=1, description="Most similar synthetic/training pairs shown in report.html.")
    exclude_flagged: bool = Field(False, description="Release the unflagged images instead of failing the gate (same as --exclude-flagged).")
    max_flag_rate: float | None = Field(
        None, ge=0, le=1,
        description="Highest share of flagged synthetic images the gate lets through, even with exclude_flagged: "
        "above it the model looks like it memorises, and neither images nor weights are released. null (default): "
        "derived from the holdout calibration, the 99.9% one-sided binomial upper bound of the number of chance "
        "flags among the samples (cspine/gate.py flag_ceiling).",
    )
