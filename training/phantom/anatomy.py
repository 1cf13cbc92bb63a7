"""Geometry of one phantom lateral cervical-spine radiograph: where each bone is, and its 23 keypoints.

First step of the phantom generator (``cspine demo-data``): :func:`sample_case` draws a patient
(sex, age, curvature class, body size, head position) from a seed, :func:`layout` places C2 (with the
dens) to C7 along that patient's curve in image pixels, and :func:`keypoints` returns the CSXA keypoints
(C2 centroid, C2 inferior corners, C3-C7 corners) of that layout. ``render.py`` draws the layout.

Conventions mirror the CSXA set: the patient faces left, so "left" corners are anterior and "right"
corners posterior; "top"/"bottom" are superior/inferior endplate corners.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.ingest.labels import CURVATURE_CLASSES, KEYPOINT_LABELS  # noqa: F401  (re-exported)

_CURVATURE_P = np.array([0.42, 0.22, 0.10, 0.10, 0.16])

#: Superellipse exponent of a vertebral body (higher = boxier).
BODY_P = 4.5


@dataclass(frozen=True)
class Case:
    """One phantom patient: what stays the same across that patient's images."""

    case_index: int
    sex: str  # "M" or "F"
    age: int | None
    curvature: int  # 1..5, see CURVATURE_CLASSES
    size: float  # body size factor (1.0 = average adult)
    amplitude: float  # curve amplitude, fraction of the spine length
    lean: float  # forward head position, fraction of the spine length
    x_center: float  # spine centre, fraction of the image width
    seg_noise: tuple[float, ...]  # per-level angular jitter (radians)
    shape_noise: tuple[float, ...]  # per-level body size jitter
    wedge: tuple[float, ...]  # per-level anterior wedging
    spine_len: float  # length factor
    texture_seed: int


@dataclass(frozen=True)
class Vertebra:
    """One vertebral body in image pixels: centre, unit axes, half-depth (AP) and half-height."""

    level: int  # 2..7
    center: np.ndarray  # (x, y)
    e_u: np.ndarray  # unit vector pointing posterior (roughly +x)
    e_v: np.ndarray  # unit vector pointing inferior (roughly +y)
    a: float  # half AP depth
    b: float  # half height
    wedge: float  # anterior height reduction (fraction)

    def corner(self, top: bool, anterior: bool) -> np.ndarray:
        """The corner of the body outline on its diagonal (where an annotator clicks)."""
        k = 2.0 ** (-1.0 / BODY_P)
        u = -self.a * k if anterior else self.a * k
        b = self.b * (1.0 - self.wedge * (0.5 if anterior else -0.5))
        v = -b * k if top else b * k
        return self.center + u * self.e_u + v * self.e_v


def sample_case(seed: int, case_index: int) -> Case:
    """Draw one patient from ``(seed, case_index)`` alone."""
    rng = np.random.default_rng([seed, case_index, 0])
    curvature = int(rng.choice(5, p=_CURVATURE_P)) + 1
    sex = "M" if rng.random() < 0.5 else "F"
    age = int(np.clip(rng.normal(47, 14), 18, 88)) if rng.random() > 0.1 else None  # some ages missing
    amp = {1: rng.uniform(0.05, 0.10), 2: rng.uniform(0.0, 0.015), 3: rng.uniform(0.035, 0.06),
           4: rng.uniform(0.035, 0.06), 5: rng.uniform(0.03, 0.07)}[curvature]
    return Case(
        case_index=case_index,
        sex=sex,
        age=age,
        curvature=curvature,
        size=float(rng.normal(1.0, 0.05) * (1.04 if sex == "M" else 0.96)),
        amplitude=float(amp),
        lean=float(rng.normal(0.06, 0.05)),
        x_center=float(rng.normal(0.56, 0.03)),
        seg_noise=tuple(float(x) for x in rng.normal(0, 0.035, 6)),
        shape_noise=tuple(float(x) for x in rng.normal(0, 0.04, 6)),
        wedge=tuple(float(x) for x in np.clip(rng.normal(0.04, 0.05, 6), -0.05, 0.25)),
        spine_len=float(rng.normal(1.0, 0.04)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def curve_offset(curvature: int, t: np.ndarray, amplitude: float) -> np.ndarray:
    """Horizontal offset of the spine axis at fraction ``t`` (0 = C2, 1 = C7); negative = anterior."""
    if curvature == 1:  # lordotic: convex anteriorly
        return -amplitude * np.sin(np.pi * t)
    if curvature == 2:  # straight
        return -amplitude * np.sin(np.pi * t)
    if curvature == 3:  # sigmoid: upper lordotic, lower kyphotic
        return -amplitude * np.sin(2 * np.pi * t)
    if curvature == 4:  # reverse sigmoid: upper kyphotic, lower lordotic
        return amplitude * np.sin(2 * np.pi * t)
    return amplitude * np.sin(np.pi * t)  # kyphotic: convex posteriorly


def layout(case: Case, height: int, width: int, pose: np.random.Generator) -> list[Vertebra]:
    """Place C2..C7 in an image of ``height`` x ``width``; ``pose`` jitters this one image.

    C2's body sits at about 0.3 H; each image of the same case shifts, scales and bends slightly
    (patient positioning), which ``pose`` draws.
    """
    s = height / 512.0 * case.size * pose.normal(1.0, 0.03)
    length = 300.0 * s * case.spine_len  # C2 top of body to C7 bottom, pixels
    y0 = height * pose.normal(0.30, 0.02)
    x0 = width * case.x_center + pose.normal(0, 0.015) * width
    amp = (case.amplitude + pose.normal(0, 0.006)) * length
    lean = (case.lean + pose.normal(0, 0.02)) * length

    t = np.linspace(0.0, 1.0, 801)
    xs = x0 + curve_offset(case.curvature, t, amp) - lean * (1.0 - t)
    ys = y0 + t * length
    seg = np.hypot(np.diff(xs), np.diff(ys))
    arc = np.concatenate([[0.0], np.cumsum(seg)])

    # heights along the arc: C2 body, then disc + body for C3..C7
    b_body = 15.5 * s
    heights = [b_body * 2.5] + [b_body * 2 * (1 + case.shape_noise[i]) for i in range(1, 6)]
    discs = [5.5 * s * pose.normal(1.0, 0.05)] * 5
    total = sum(heights) + sum(discs)
    scale = arc[-1] / total
    out: list[Vertebra] = []
    pos = 0.0
    for i, level in enumerate(range(2, 8)):
        if i:
            pos += discs[i - 1] * scale
        h = heights[i] * scale
        mid = pos + h / 2
        pos += h
        j = int(np.clip(np.searchsorted(arc, mid), 1, len(t) - 1))
        tangent = np.array([xs[j] - xs[j - 1], ys[j] - ys[j - 1]])
        tangent /= np.linalg.norm(tangent)
        ang = case.seg_noise[i] + pose.normal(0, 0.01)
        c, sn = np.cos(ang), np.sin(ang)
        e_v = np.array([c * tangent[0] - sn * tangent[1], sn * tangent[0] + c * tangent[1]])
        e_u = np.array([e_v[1], -e_v[0]]) * -1.0  # perpendicular, pointing +x (posterior)
        if e_u[0] < 0:
            e_u = -e_u
        a = 21.0 * s * (1 + 0.5 * case.shape_noise[i]) * (1.0 + 0.03 * (level - 3))
        center = np.array([np.interp(mid, arc, xs), np.interp(mid, arc, ys)])
        out.append(Vertebra(level, center, e_u, e_v, a=a, b=h / 2, wedge=case.wedge[i]))
    return out


def keypoints(vertebrae: list[Vertebra]) -> dict[str, tuple[float, float]]:
    """The 23 CSXA keypoints (pixel x, y) of a layout, keyed by label, in canonical order."""
    c2 = vertebrae[0]
    pts: dict[str, np.ndarray] = {
        "C2 centroid": c2.center,
        "C2 bottom left": c2.corner(top=False, anterior=True),
        "C2 bottom right": c2.corner(top=False, anterior=False),
    }
    for v in vertebrae[1:]:
        pts[f"C{v.level} top left"] = v.corner(top=True, anterior=True)
        pts[f"C{v.level} top right"] = v.corner(top=True, anterior=False)
        pts[f"C{v.level} bottom left"] = v.corner(top=False, anterior=True)
        pts[f"C{v.level} bottom right"] = v.corner(top=False, anterior=False)
    return {k: (float(pts[k][0]), float(pts[k][1])) for k in KEYPOINT_LABELS}
