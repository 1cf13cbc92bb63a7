"""How one phantom radiograph was taken and displayed: collimation, exposure, display, burned-in marks.

Part of the phantom generator (``cspine demo-data``), between ``anatomy`` (where the bones are, in
detector pixels) and ``render`` (which forms the image). :func:`sample_acquisition` draws, from the
image's own generator, everything that differs between two radiographs of the same patient apart from
the pose; all of it is per image. Distributions (sizes in pixels scale with the image height / 512):

- collimation (:class:`Field`): each of the four shutter blades is in the image with probability 0.3
  (anterior and posterior blades) or 0.5 (top and bottom); an anterior or posterior blade lies between the
  image border and 60% of the way to the anatomy, a top or bottom blade anywhere up to the anatomy, so
  the keypoints, the dens and the spinous processes always stay exposed while a blade often falls inside
  the square crop around the spine. The field is tilted by N(0, 1.5 deg); its edge has a 1-3 px
  penumbra. Outside it the detector is unexposed (white, 65%) or masked black by the display (35%);
- exposure (:class:`Exposure`): photons per pixel log-uniform in 1500-40000 (Poisson noise), falling
  off by U(10%, 45%) across one image height in a uniformly random direction (the anode heel effect and
  an off-centre tube), times a smooth random non-uniformity of amplitude U(3%, 12%) (a 4 x 4 grid of
  normal values, cubic-interpolated), so that even the air and the soft tissue have gradients; additive
  detector noise sd 0.002-0.015 of the display range, unsharpness sigma 0.5-1.3 px, scatter 4-15%, soft
  tissue and bone attenuation scaled by U(1.05, 1.45) and U(0.8, 1.25) (kVp), and the display: window
  from the U(0.3, 3) to U(99, 99.9) percentile of the exposed field, unsharp-mask gain 0.1-0.6 at a
  kernel of 5, 9 or 15 px, gamma 0.7-1.4, a film-like sigmoid of slope 3.5-7, black level 0-0.08 and
  white level 0.82-0.98;
- a lead side marker (70%): "L" or "R", 14-28 px tall, 40% in a square frame, somewhere in the exposed
  field (so often in front of the neck, inside the crop); it is radio-opaque, so it is drawn as
  attenuation and goes through blur and noise like the anatomy;
- a burned-in text line (60%): 4 to 10 letters, digits and spaces, 9-15 px tall, white (80%) or black,
  near one of the four image corners, painted onto the displayed image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont


@dataclass(frozen=True)
class Field:
    """The collimated (exposed) field: a rectangle in detector pixels, tilted about its centre."""

    left: float
    right: float
    top: float
    bottom: float
    tilt: float  # radians
    penumbra: float  # edge width, pixels
    shutter: str  # "white" (unexposed detector) or "black" (masked by the display)

    def mask(self, height: int, width: int) -> np.ndarray:
        """float32 [H, W]: 1 inside the field, 0 outside, a soft edge between."""
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        cx, cy = (self.left + self.right) / 2, (self.top + self.bottom) / 2
        c, s = np.cos(self.tilt), np.sin(self.tilt)
        u = (xx - cx) * c + (yy - cy) * s
        v = -(xx - cx) * s + (yy - cy) * c
        hw, hh = (self.right - self.left) / 2, (self.bottom - self.top) / 2
        d = np.minimum(hw - np.abs(u), hh - np.abs(v))  # signed distance to the nearest edge (inside > 0)
        return np.clip(0.5 + d / self.penumbra, 0.0, 1.0)


@dataclass(frozen=True)
class Exposure:
    """Photon count, noise, blur, scatter, attenuation scales and display processing of one image."""

    n0: float
    heel: float  # relative photon fall-off across the image height along the tube axis (heel effect)
    heel_angle: float  # direction of that fall-off, radians from image-down
    mottle: float  # amplitude of a smooth, large-scale exposure non-uniformity (relative)
    detector_noise: float
    blur: float
    scatter: float
    mu_soft: float
    mu_bone: float
    window: tuple[float, float]  # percentiles of the exposed field mapped to black and white
    edge_gain: float
    edge_size: int
    gamma: float
    slope: float
    black: float
    white: float


@dataclass(frozen=True)
class Mark:
    """A glyph string drawn into the image: a lead side marker or a burned-in text line."""

    text: str
    x: int  # top-left corner, pixels
    y: int
    size: int  # glyph height, pixels
    value: float  # marker: attenuation added; text: display value painted
    boxed: bool = False


@dataclass(frozen=True)
class Acquisition:
    field: Field
    exposure: Exposure
    marker: Mark | None
    text: Mark | None


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def glyphs(text: str, size: int, boxed: bool = False) -> np.ndarray:
    """float32 mask (1 = ink) of ``text`` in Pillow's built-in font, ``size`` px tall (a frame if boxed)."""
    font = _font(size)
    x0, y0, x1, y1 = font.getbbox(text)
    pad = max(2, size // 4) if boxed else 1
    w, h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    draw.text((pad - x0, pad - y0), text, fill=255, font=font)
    if boxed:
        draw.rectangle([0, 0, w - 1, h - 1], outline=255, width=max(1, size // 10))
    return np.asarray(im, np.float32) / 255.0


def paste(img: np.ndarray, mask: np.ndarray, x: int, y: int, value: float, add: bool) -> None:
    """Write ``mask`` at (x, y) into ``img`` in place: add ``value * mask``, or blend towards ``value``."""
    h, w = img.shape
    mh, mw = mask.shape
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + mw), min(h, y + mh)
    if x0 >= x1 or y0 >= y1:
        return
    m = mask[y0 - y:y1 - y, x0 - x:x1 - x]
    if add:
        img[y0:y1, x0:x1] += value * m
    else:
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - m) + value * m


def _edge(rng: np.random.Generator, p: float, border: float, limit: float, reach: float, outward: int) -> float:
    """One shutter blade: with probability ``p`` between ``border`` and ``reach`` of the way to ``limit``
    (the anatomy's edge); else, or when the anatomy reaches the border, out of view beyond ``border``."""
    if rng.random() >= p or (limit - border) * outward >= 0:
        return border + 10.0 * outward
    return float(border + (limit - border) * rng.uniform(0.0, reach))


def _random_text(rng: np.random.Generator) -> str:
    n = int(rng.integers(4, 11))
    alphabet = np.array(list("ABCDEFGHKLMNPRSTUVXZ0123456789"))
    chars = list(rng.choice(alphabet, n))
    if n > 5:
        chars[int(rng.integers(2, n - 2))] = " "
    return "".join(chars)


def sample_acquisition(rng: np.random.Generator, keypoints: np.ndarray, c2_height: float, c7_depth: float,
                       height: int, width: int) -> Acquisition:
    """Draw one image's collimation, exposure and marks (distributions in the module docstring).

    ``keypoints`` [23, 2] are the image's keypoints in detector pixels; ``c2_height`` and ``c7_depth`` the
    half-height of C2 and half-depth of C7 in pixels, which set the room kept exposed around them.
    """
    k = height / 512.0
    lo, hi = keypoints.min(axis=0), keypoints.max(axis=0)
    anat_left, anat_right = lo[0] - 0.8 * c7_depth, hi[0] + 3.0 * c7_depth
    anat_top, anat_bottom = lo[1] - 3.0 * c2_height, hi[1] + 0.4 * c7_depth
    field = Field(
        left=_edge(rng, 0.3, 0.0, anat_left, 0.6, -1),
        right=_edge(rng, 0.3, width - 1.0, anat_right, 0.6, +1),
        top=_edge(rng, 0.5, 0.0, anat_top, 1.0, -1),
        bottom=_edge(rng, 0.5, height - 1.0, anat_bottom, 1.0, +1),
        tilt=float(np.radians(rng.normal(0.0, 1.5))),
        penumbra=float(rng.uniform(1.0, 3.0)),
        shutter="white" if rng.random() < 0.65 else "black",
    )
    lo_p, hi_p = rng.uniform(0.3, 3.0), rng.uniform(99.0, 99.9)
    exposure = Exposure(
        n0=float(np.exp(rng.uniform(np.log(1500), np.log(40000)))),
        heel=float(rng.uniform(0.1, 0.45)),
        heel_angle=float(rng.uniform(-np.pi, np.pi)),
        mottle=float(rng.uniform(0.03, 0.12)),
        detector_noise=float(rng.uniform(0.002, 0.015)),
        blur=float(rng.uniform(0.5, 1.3)),
        scatter=float(rng.uniform(0.04, 0.15)),
        mu_soft=float(rng.uniform(1.05, 1.45)),
        mu_bone=float(rng.uniform(0.8, 1.25)),
        window=(float(lo_p), float(hi_p)),
        edge_gain=float(rng.uniform(0.1, 0.6)),
        edge_size=int(rng.choice([5, 9, 15])),
        gamma=float(rng.uniform(0.7, 1.4)),
        slope=float(rng.uniform(3.5, 7.0)),
        black=float(rng.uniform(0.0, 0.08)),
        white=float(rng.uniform(0.82, 0.98)),
    )
    marker = None
    if rng.random() < 0.7:
        size = max(6, int(round(rng.uniform(14, 28) * k)))
        fx0, fx1 = max(field.left, 0.0) + 4, min(field.right, width - 1.0) - 4 - size
        fy0, fy1 = max(field.top, 0.0) + 4, min(field.bottom, height - 1.0) - 4 - size
        if fx1 > fx0 and fy1 > fy0:
            marker = Mark("L" if rng.random() < 0.5 else "R", int(rng.uniform(fx0, fx1)), int(rng.uniform(fy0, fy1)),
                          size, value=float(rng.uniform(2.0, 3.5)), boxed=bool(rng.random() < 0.4))
    text = None
    if rng.random() < 0.6:
        size = max(6, int(round(rng.uniform(9, 15) * k)))
        s = _random_text(rng)
        w_est = int(0.62 * size * len(s))
        right, bottom = rng.random() < 0.5, rng.random() < 0.5
        mx, my = int(rng.uniform(3, 20) * k), int(rng.uniform(3, 20) * k)
        x = width - mx - w_est if right else mx
        y = height - my - size if bottom else my
        text = Mark(s, int(x), int(y), size, value=1.0 if rng.random() < 0.8 else 0.0)
    return Acquisition(field, exposure, marker, text)
