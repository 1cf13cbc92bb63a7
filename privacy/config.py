"""Config section of the privacy audit (`cspine audit`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cspine.schema import Strict


class ClipConfig(Strict):
    model: str = "ViT-B-32"
    pretrained: str = Field("laion2b_s34b_b79k", description="open_clip pretrained tag or a local checkpoint path.")


class AuditConfig(Strict):
    """Nearest-neighbour memorisation audit and the release gate."""

    methods: list[Literal["clip", "inception", "phash", "dhash", "pixel"]] = Field(
        ["clip", "inception", "phash", "dhash", "pixel"],
        description="Methods to run; clip is skipped with a note when its weights cannot be had.",
    )
    clip: ClipConfig = Field(default_factory=ClipConfig)
    top_k: int = Field(5, ge=1)
    holdout_quantile: float = Field(
        0.001, gt=0, lt=1, description="Flag a synthetic image closer to training than this quantile of holdout images are."
    )
    phash_floor: int = Field(10, ge=0, le=64, description="pHash Hamming distance at or below which an image is always flagged.")
    exclude_flagged: bool = Field(False, description="Release the unflagged images instead of failing the gate.")
