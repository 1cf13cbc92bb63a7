"""Config section of the expert reader study (`cspine study ...`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cspine.schema import Strict


class StudyConfig(Strict):
    """Blinded visual Turing test design."""

    trials: int = Field(50, ge=1)
    alternatives: Literal[2, 3, 4] = Field(4, description="Images per trial, one of them real (2 = pairs, 4 = the paper's quartets).")
    likert_points: Literal[4, 5] = 4
    raters: int = Field(8, ge=1)
    image_size: int = Field(512, ge=32, description="Every served image is resized to this (real and synthetic alike).")
