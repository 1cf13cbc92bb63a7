"""Square crop around the anatomy, then resize to the model's resolution; the same map for keypoints.

Part of ingestion (``cspine prepare``): every image goes into the pixel cache at ``data.resolution``
once, so training never decodes a file.

Decision: crop, never pad. A non-square radiograph is cut to a square whose side is its short side (so
the scale of the anatomy is the same for every image of one size and nothing is invented), placed along
the long side so that it is centred on the spine: the centre of the bounding box of the image's CSXA
keypoints (C2-C7; the phantoms carry the same 23) when it has them, else the centre of the image (a
documented centre crop for folders without labels), shifted to stay inside the image. The square is then
resized with Pillow's antialiased Lanczos filter on a float image (no 8-bit rounding).

Why not pad: earlier versions padded the short side with exact-zero bars. 22% of a demo cache image was
then exactly black, a value the diffusion model only approximates (grey, noisy edges), so a one-line
rule on border darkness picked the real image of every reader-study trial (20 of 20, chance 5; issue
#15), and the two-sample test (cspine.twosample) separated real from synthetic on the border alone.
Cropped images have no pixel the generator cannot reproduce; `cspine study build` checks this on every
study (reader_study.blinding). Measured on the demo (300 phantoms of 400 x 512, 64 px cache, the demo
model trained 600 steps on the cropped cache, 20 quartets served at 256 px): exact-black share of a real
cache image 21.9% padded -> 0.01% cropped, border mean 0.000 -> 0.165; on the served study, the rule
"pick the most black pixels" 20/20 trials with padded real images -> 5.25/20 (chance 5), "darkest
corners" 20/20 -> 3/20, and the classifier two-sample AUC 0.97 (95% 0.94-1.00) -> 0.67 (0.55-0.80); two
real sets (holdout vs train) give 0.48 (0.38-0.58). Padding that the study and metrics ignore was the
other option; it needs a mask in every consumer (training loss, FID, audit, study display), and the
model would still have to learn the bars, so the crop removes the tell at its source. What the crop
leaves on the demo is a real quality gap (the demo model's samples have less contrast: "pick the
highest std" 14/20), which the blinding check reports as such. Keypoints outside the crop (a spine
longer than the short side; 3 of the 300 demo images) keep their mapped coordinates (outside 0..size)
and are reported as a warning by ``prepare``.

:class:`Fit` maps source pixel coordinates to cache coordinates (pixel centres at integers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from cspine.images import from_unit


@dataclass(frozen=True)
class Fit:
    """How a source image of ``width`` x ``height`` maps into the ``size`` x ``size`` cache image: the square
    ``side`` x ``side`` with top-left corner (``crop_x``, ``crop_y``) in source pixels, scaled to ``size``."""

    width: int
    height: int
    size: int
    side: int
    crop_x: int
    crop_y: int

    @property
    def scale(self) -> float:
        return self.size / self.side

    def point(self, x: float, y: float) -> tuple[float, float]:
        """Source pixel coordinates (x right, y down, pixel centres at integers) to cache coordinates."""
        s = self.scale
        return (x - self.crop_x + 0.5) * s - 0.5, (y - self.crop_y + 0.5) * s - 0.5

    def inside(self, x: float, y: float) -> bool:
        """Whether a source point lies inside the crop."""
        return self.crop_x - 0.5 <= x < self.crop_x + self.side - 0.5 and self.crop_y - 0.5 <= y < self.crop_y + self.side - 0.5


def anatomy_centre(keypoints: dict[str, tuple[float, float]] | None) -> tuple[float, float] | None:
    """The centre of the keypoints' bounding box (source pixels), or None without keypoints."""
    if not keypoints:
        return None
    xs = [p[0] for p in keypoints.values()]
    ys = [p[1] for p in keypoints.values()]
    return (min(xs) + max(xs)) / 2.0, (min(ys) + max(ys)) / 2.0


def plan_fit(width: int, height: int, size: int, centre: tuple[float, float] | None = None) -> Fit:
    """The square crop of a ``width`` x ``height`` image: side = short side, centred on ``centre`` (source
    pixels; None = the image centre) along the long side and kept inside the image."""
    side = min(width, height)
    cx, cy = centre if centre is not None else ((width - 1) / 2.0, (height - 1) / 2.0)

    def place(c: float, length: int) -> int:
        return int(min(max(round(c + 0.5 - side / 2.0), 0), length - side))

    return Fit(width, height, size, side, place(cx, width), place(cy, height))


def fit_square(img: np.ndarray, size: int, centre: tuple[float, float] | None = None) -> tuple[np.ndarray, Fit]:
    """float32 [H, W] in [0, 1] -> (uint16 [size, size], Fit): the square crop of :func:`plan_fit`, resized."""
    h, w = img.shape
    fit = plan_fit(w, h, size, centre)
    square = np.ascontiguousarray(img[fit.crop_y:fit.crop_y + fit.side, fit.crop_x:fit.crop_x + fit.side], dtype=np.float32)
    if fit.side != size:
        im = Image.fromarray(square, mode="F")
        square = np.asarray(im.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0))
    return from_unit(square, 16), fit
