"""Config section of quality evaluation (`cspine evaluate`)."""

from __future__ import annotations

from pydantic import Field

from cspine.schema import Strict


class EvaluateConfig(Strict):
    """FID/KID, precision/recall, diversity, checkpoint curve and sampler speed-quality curve."""

    enabled: bool = True
    max_images: int = Field(2000, ge=2, description="Cap on images per set for FID/KID.")
    kid_subset_size: int = Field(50, ge=2)
