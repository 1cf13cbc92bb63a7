"""Config section of the expert reader study (`cspine study ...`): the design, the web app, the analysis.

The section is validated with the rest of the run config (cspine/config.py); every key has a default, so a
config without a ``study:`` section runs the paper's design (50 quartets, 4-point scale, 8 raters).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cspine.config import Strict
from cspine.twosample import C2STConfig


class BlindingConfig(Strict):
    """The blinding check of `cspine study build` (reader_study.blinding): can a simple statistic of the served
    files, or a small classifier, tell the real image from the synthetic ones?"""

    enabled: bool = Field(True, description="Measure the served images before any rater sees them (study/blinding.json).")
    alpha: float = Field(0.01, gt=0, lt=1, description="A rule is a tell when its one-sided binomial p, Holm-adjusted over "
                         "all rules tried, is below this ...")
    margin: float = Field(0.15, ge=0, lt=1, description="... and its hit rate exceeds chance (1/k) by more than this "
                          "(0.15: 40% with quartets).")
    allow_tells: bool = Field(False, description="Build even when a rule finds a tell (recorded in blinding.json; "
                              "also `cspine study build --allow-tells`). The study then measures the tell, not the anatomy.")
    c2st: C2STConfig = Field(default_factory=C2STConfig, description="Classifier two-sample test on the served images "
                             "(reported, not gated: a weak generator is separable without any shortcut).")


class StudyConfig(Strict):
    """Blinded visual Turing test design, rater web app and analysis settings."""

    trials: int = Field(
        50, ge=1,
        description="Trials T. If the held-out real images or the synthetic images cannot fill T trials without "
        "reusing an image, build stops with an error naming the shortfall (set allow_fewer_trials to build fewer).",
    )
    alternatives: Literal[2, 3, 4] = Field(4, description="Images per trial, one of them real (2 = pairs, 4 = the paper's quartets).")
    likert_points: Literal[4, 5] = Field(4, description="Realism scale for every image: 1 = clearly synthetic ... N = clearly real.")
    raters: int = Field(8, ge=0, description="Raters (access codes) created by `cspine study build`; add more with `cspine study add-rater`.")
    image_size: int = Field(512, ge=32, le=4096, description="Every served image is resized to this square size (real and synthetic alike).")
    tone: Literal["match", "as_is"] = Field(
        "match", description="Display policy for tone. match: every served image gets exactly the same 8-bit histogram "
        "(exact histogram specification to the study's mean, reader_study.tone), so brightness, contrast, saturation "
        "and histogram shape cannot tell real from synthetic and raters judge the anatomy; tone is measured by "
        "`cspine evaluate` instead. as_is: each image's own tone (a study of tone as well as anatomy; how studies "
        "built before this option were served, so they stay current under it).",
    )
    checkpoints: list[str] | None = Field(
        None,
        description="Synthetic groups = samples.parquet `checkpoint` values to draw from (default: all present). "
        "With alternatives-1 == number of groups each trial holds one image of every group (the paper's design).",
    )
    allow_fewer_trials: bool = Field(
        False, description="Build as many trials as the images allow (with a warning) instead of stopping when T cannot be filled.",
    )
    blinding: BlindingConfig = Field(default_factory=BlindingConfig)
    stratify_by_class: bool = Field(
        False, description="Each trial draws its real and synthetic images from one curvature class (real labels; the "
        "class conditional samples were drawn for), so raters compare like with like; needs both labelled.",
    )
    skip_audit_excluded: bool = Field(
        True, description="Leave out the synthetic images the privacy audit excluded from the release (its gate's "
        "`excluded`, audit/summary.json), when an audit exists.",
    )
    host: str = Field("127.0.0.1", description="Address `cspine study serve` listens on. Keep loopback and put an HTTPS reverse proxy in "
                      "front to serve other machines (`cspine study serve --help`); plain HTTP off loopback is warned about.")
    port: int = Field(8765, ge=0, le=65535, description="Port `cspine study serve` listens on (0 = any free port).")
    bootstrap: int = Field(2000, ge=0, description="Resamples of the multi-reader multi-case bootstrap (raters and trials resampled together).")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level: confidence intervals are 1 - alpha, Holm correction at alpha.")
