"""Geometry of one phantom lateral cervical-spine radiograph: where each bone is, and its 23 keypoints.

First step of the phantom generator (``cspine demo-data``). :func:`sample_case` draws a patient from
``(seed, case)``: what stays the same across that patient's images. :func:`sample_pose` draws how the
patient stood for one image, and :func:`layout` places C2 (with the dens) to C7 along that patient's
curve in that pose, in detector pixels; :func:`keypoints` returns the CSXA keypoints (C2 centroid, C2
inferior corners, C3-C7 corners) of the layout, so they move exactly with pose and magnification.
``render.py`` draws the layout, ``acquisition.py`` the exposure, collimation and burned-in marks.

Case-level traits (fixed for a patient; distributions as drawn below):

- curvature class 1-5 (p = 0.42, 0.22, 0.10, 0.10, 0.16) and its amplitude, a fraction of the spine
  length: lordotic 0.05-0.10 (bulging anteriorly), straight 0-0.015, sigmoid/reverse sigmoid 0.035-0.06
  (one full wave), kyphotic 0.03-0.07 (bulging posteriorly); per-level angular jitter (sd 2 deg), body
  height jitter (sd 9%), body depth jitter of its own (sd 6%) and anterior wedging (N(4%, 7%), clipped to
  -8%..+30%);
- the head (:class:`Head`): vault size (each axis U(0.85, 1.15)) and place (N(0, 0.8) C2 half-depths each
  way), the mandible's angle (N(0, 0.6) half-depths each way), ramus height U(3.2, 4.8) and slope, the
  chin's reach U(4.5, 6.5) and drop (N(0.9, 0.8)). Why (phantom-6): with the head the same for every
  patient (only scaled with C2) and bodies jittered by 4%, two patients' 64 px crops aligned by an affine
  warp looked alike bone for bone, and the closest held-out phantom correlated with a training one at r =
  0.9966 in privacy/align.py's coarse band (0.9907 fine), so the audit could call nothing closer a copy.
  Real patients differ more than that. Now 0.9956 / 0.9861 (tests/privacy/test_copy_recall.py's setup),
  and the audit finds more of the combined changes (rotation + shift + blur + gamma: 0.89 -> 0.95 of the
  copies; all seven kinds at once: 0.37 -> 0.57);
- sex, age (N(47, 14) clipped to 18-88; 10% missing), body size (sd 5%, men 4% larger), spine length
  (sd 4%) and forward head position: the neck's inclination, C2 ahead of C7 by N(0.14, 0.08) of the
  spine length (a shear of the column about C7);
- neck soft tissue thickness (log-normal, sd 15%: slim to heavy necks, men 5% thicker), which scales
  the depth of soft tissue in front of the bodies (U(1.7, 3.4) C2 half-depths), a laryngeal bulge of the
  throat's skin line (U(0, 1.2) half-depths, larger in men, at 35-80% of the way from C2 to C7) and the
  half-width of the neck (U(4.5, 7.5) half-depths: where the posterior skin line falls); shoulder height (the top of
  the shoulders from 1 C7 body height below to 4 above C7's centre: low shoulders show C7, high ones
  hide it);
- degeneration: a severity drawn from the age (mean rising from 0 at 35 to 0.7 at 85, sd 0.2; a missing
  age counts as 47), spread over the five discs with C5-6 and C6-7 the most affected. Each disc's severity
  narrows it (by up to 65%), grows anterior osteophytes on its two endplates and makes the endplates
  sclerotic (brighter);
- hardware in a minority (probability 6% + 14% x the degeneration severity, about 9% of cases): an
  anterior cervical plate over
  2 or 3 vertebrae with two screws in each (``hardware`` = first level, number of vertebrae).

Per-image pose (:class:`Pose`, drawn by :func:`sample_pose` from the image's generator):

- flexion/extension: an added bend of the whole column, ``flexion`` ~ N(0, 0.006) of the spine length,
  clipped to +-0.012 (positive = flexion, less lordosis). The bound is a third of the smallest gap between
  adjacent curvature classes' amplitudes, so flexion never turns a lordotic neck into a straight or
  kyphotic-looking one; most of the head-position change comes from the neck's inclination (``lean``, an
  added N(0, 0.06) of the spine length, about 3.5 deg) and the head's nod on C1-C2 (``nod``, sd 6 deg);
- in-plane rotation of the whole neck, shoulders and head: N(0, 4 deg), clipped to +-10 deg;
- magnification (source-to-detector distance and patient-to-detector gap): N(1, 0.075), clipped to
  0.85-1.15, so the spine's size in pixels varies about +-15% on top of the body size;
- translation: the centre of the keypoints' bounding box at N(0.52, 0.11) of the width and N(0.52, 0.05)
  of the height, moved back where needed so the spine (with its posterior elements) stays in the image.

Conventions mirror the CSXA set: the patient faces left, so "left" corners are anterior and "right"
corners posterior; "top"/"bottom" are superior/inferior endplate corners.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cspine.labels import CURVATURE_CLASSES, KEYPOINT_LABELS  # noqa: F401  (re-exported)

_CURVATURE_P = np.array([0.42, 0.22, 0.10, 0.10, 0.16])

#: Superellipse exponent of a vertebral body (higher = boxier).
BODY_P = 4.5
#: How much each disc (C2-3 .. C6-7) takes of a case's degeneration, relative to the worst (C5-6).
_DISC_WEIGHT = np.array([0.35, 0.5, 0.8, 1.0, 0.85])
#: Largest bend added by flexion/extension, as a fraction of the spine length (see the module docstring).
MAX_FLEXION = 0.012


@dataclass(frozen=True)
class Head:
    """Skull and mandible of one patient, in C2 half-depths (see the module docstring)."""

    vault: tuple[float, float] = (1.0, 1.0)  # scale of the vault's two radii
    occiput: tuple[float, float] = (0.0, 0.0)  # offset of the vault's centre (image x, y)
    angle: tuple[float, float] = (0.0, 0.0)  # offset of the mandible's angle
    ramus: tuple[float, float] = (0.6, 4.0)  # the ramus top relative to the angle (forward-back, height)
    chin: tuple[float, float] = (5.5, 0.9)  # the chin relative to the angle (reach forward, drop)


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
    seg_noise: tuple[float, ...]  # per-level angular jitter (radians)
    shape_noise: tuple[float, ...]  # per-level body size jitter
    wedge: tuple[float, ...]  # per-level anterior wedging
    spine_len: float  # length factor
    texture_seed: int
    neck: float = 1.0  # soft tissue thickness factor (1 = average)
    shoulder: float = 1.0  # shoulder top above C7's centre, in C7 body heights (negative: below)
    degeneration: tuple[float, ...] = (0.0,) * 5  # per disc C2-3..C6-7, 0 (none) .. 1 (severe)
    hardware: tuple[int, int] | None = None  # (first level, number of vertebrae) of an anterior plate
    throat: float = 2.4  # soft tissue in front of the bodies at C2, in C2 half-depths
    larynx: tuple[float, float] = (0.0, 0.6)  # bulge of the throat's skin line (half-depths) and where (0 = C2)
    nape: float = 6.0  # half-width of the neck, in C2 half-depths (where the posterior skin line lies)
    depth_noise: tuple[float, ...] = (0.0,) * 6  # per-level body AP depth jitter (relative)
    head: Head = field(default_factory=Head)  # skull and mandible shape


@dataclass(frozen=True)
class Pose:
    """How the patient stood for one image, and where the detector saw the spine."""

    flexion: float = 0.0  # added bend, fraction of the spine length (+ flexion, - extension)
    lean: float = 0.0  # added forward inclination of the neck, fraction of the spine length
    nod: float = 0.0  # head nod on C1-C2, radians (+ chin down)
    rotation: float = 0.0  # in-plane rotation of the whole field, radians (+ clockwise on screen)
    magnification: float = 1.0
    centre: tuple[float, float] = (0.53, 0.52)  # keypoint bounding-box centre, fractions of (width, height)
    disc_jitter: float = 1.0  # per-image disc height factor (loading)


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
    size = float(rng.normal(1.0, 0.05) * (1.04 if sex == "M" else 0.96))
    lean = float(rng.normal(0.14, 0.08))
    seg_noise = tuple(float(x) for x in rng.normal(0, 0.035, 6))
    shape_noise = tuple(float(x) for x in rng.normal(0, 0.09, 6))
    wedge = tuple(float(x) for x in np.clip(rng.normal(0.04, 0.07, 6), -0.08, 0.30))
    spine_len = float(rng.normal(1.0, 0.04))
    texture_seed = int(rng.integers(0, 2**31 - 1))
    neck = float(np.exp(rng.normal(0.0, 0.15)) * (1.05 if sex == "M" else 0.95))
    shoulder = float(rng.uniform(-1.0, 4.0))
    severity = float(np.clip(rng.normal(0.7 * np.clip(((age or 47) - 35) / 50, 0, 1), 0.2), 0.0, 1.0))
    degeneration = tuple(float(x) for x in np.clip(severity * _DISC_WEIGHT * rng.uniform(0.4, 1.3, 5), 0.0, 1.0))
    hardware = None
    if rng.random() < 0.06 + 0.14 * severity:
        n = int(rng.choice([2, 3]))
        hardware = (int(rng.integers(3, 9 - n)), n)  # C3..C7: the plate ends at C7 at the lowest
    throat = float(rng.uniform(1.7, 3.4) * neck)
    larynx = (float(rng.uniform(0.0, 1.2) * (1.4 if sex == "M" else 0.7)), float(rng.uniform(0.35, 0.8)))
    nape = float(rng.uniform(4.5, 7.5) * neck)
    depth_noise = tuple(float(x) for x in rng.normal(0, 0.06, 6))
    n = lambda sd, k=2: tuple(float(x) for x in rng.normal(0, sd, k))  # noqa: E731
    head = Head(vault=tuple(float(x) for x in rng.uniform(0.85, 1.15, 2)), occiput=n(0.8), angle=n(0.6),
                ramus=(float(rng.normal(0.6, 0.4)), float(rng.uniform(3.2, 4.8))),
                chin=(float(rng.uniform(4.5, 6.5)), float(rng.normal(0.9, 0.8))))
    return Case(case_index=case_index, sex=sex, age=age, curvature=curvature, size=size, amplitude=float(amp),
                lean=lean, seg_noise=seg_noise, shape_noise=shape_noise, wedge=wedge, spine_len=spine_len,
                texture_seed=texture_seed, neck=neck, shoulder=shoulder, degeneration=degeneration,
                hardware=hardware, throat=throat, larynx=larynx, nape=nape, depth_noise=depth_noise, head=head)


def sample_pose(rng: np.random.Generator) -> Pose:
    """Draw one image's pose (distributions in the module docstring)."""
    return Pose(
        flexion=float(np.clip(rng.normal(0.0, 0.006), -MAX_FLEXION, MAX_FLEXION)),
        lean=float(rng.normal(0.0, 0.06)),
        nod=float(rng.normal(0.0, np.radians(6.0))),
        rotation=float(np.clip(rng.normal(0.0, np.radians(4.0)), -np.radians(10.0), np.radians(10.0))),
        magnification=float(np.clip(rng.normal(1.0, 0.075), 0.85, 1.15)),
        centre=(float(rng.normal(0.52, 0.11)), float(rng.normal(0.52, 0.05))),
        disc_jitter=float(rng.normal(1.0, 0.05)),
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


def _rotate(vec: np.ndarray, ang: float) -> np.ndarray:
    c, s = np.cos(ang), np.sin(ang)
    return np.array([c * vec[0] - s * vec[1], s * vec[0] + c * vec[1]])


def _column(case: Case, height: int, pose: Pose) -> list[Vertebra]:
    """C2..C7 in the patient's own frame (upright, unmagnified, C2 body near the origin)."""
    s = height / 512.0 * case.size
    length = 285.0 * s * case.spine_len  # C2 top of body to C7 bottom, pixels
    amp = case.amplitude * length
    lean = (case.lean + pose.lean) * length

    t = np.linspace(0.0, 1.0, 801)
    xs = curve_offset(case.curvature, t, amp) + pose.flexion * length * np.sin(np.pi * t) - lean * (1.0 - t)
    ys = t * length
    seg = np.hypot(np.diff(xs), np.diff(ys))
    arc = np.concatenate([[0.0], np.cumsum(seg)])

    # heights along the arc: C2 body, then disc + body for C3..C7; degeneration narrows the discs
    b_body = 15.5 * s
    heights = [b_body * 2.5] + [b_body * 2 * (1 + case.shape_noise[i]) for i in range(1, 6)]
    discs = [5.5 * s * pose.disc_jitter * (1.0 - 0.65 * d) for d in case.degeneration]
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
        e_v = _rotate(tangent, case.seg_noise[i])
        e_u = np.array([-e_v[1], e_v[0]])  # perpendicular, pointing +x (posterior)
        if e_u[0] < 0:
            e_u = -e_u
        a = 21.0 * s * (1 + 0.5 * case.shape_noise[i] + case.depth_noise[i]) * (1.0 + 0.03 * (level - 3))
        center = np.array([np.interp(mid, arc, xs), np.interp(mid, arc, ys)])
        out.append(Vertebra(level, center, e_u, e_v, a=a, b=h / 2, wedge=case.wedge[i]))
    return out


def _bbox(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points.min(axis=0), points.max(axis=0)


def layout(case: Case, height: int, width: int, pose: Pose) -> list[Vertebra]:
    """Place C2..C7 in an image of ``height`` x ``width`` (detector pixels) for one image's ``pose``.

    The column is built upright in the patient's frame, then rotated by ``pose.rotation`` and scaled by
    ``pose.magnification`` about its keypoints' centre, which goes to ``pose.centre``, moved back where
    needed so that the keypoints, the dens above C2 and the spinous processes behind the bodies stay
    inside the image. The map is a similarity, so the corners (keypoints) move with it exactly.
    """
    col = _column(case, height, pose)
    pts = np.array(list(keypoints(col).values()))
    lo, hi = _bbox(pts)
    c_pat = (lo + hi) / 2
    m, th = pose.magnification, pose.rotation
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    rel = (pts - c_pat) @ R.T * m
    # room needed around the keypoints: dens and C1 above, spinous processes behind, a little in front
    a = col[-1].a * m
    rlo, rhi = rel.min(axis=0), rel.max(axis=0)
    need_lo = np.array([0.02 * width - rlo[0] + 0.3 * a, 0.03 * height - rlo[1] + 2.2 * col[0].b * m])
    need_hi = np.array([0.98 * width - rhi[0] - 2.6 * a, 0.98 * height - rhi[1]])
    want = np.array([pose.centre[0] * width, pose.centre[1] * height])
    c_det = np.where(need_lo <= need_hi, np.clip(want, need_lo, need_hi), (need_lo + need_hi) / 2)
    out = []
    for v in col:
        center = c_det + R @ (v.center - c_pat) * m
        out.append(Vertebra(v.level, center, R @ v.e_u, R @ v.e_v, a=v.a * m, b=v.b * m, wedge=v.wedge))
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
