"""Drawing one phantom lateral cervical-spine radiograph from a layout (``anatomy.py``) and an
acquisition (``acquisition.py``).

Third step of the phantom generator. The image is formed the way a radiograph is: each structure adds
a projected thickness to an attenuation map (soft tissue of the neck and shoulders, minus the air of the
pharynx and trachea; skull base, mandible, hyoid, C1 arches, C2 with the dens, C3-C7 bodies with
cortical rims, articular pillars, laminae and spinous processes; the case's degeneration: anterior
osteophytes and sclerotic endplates at its narrowed discs; its anterior plate and screws, as metal),
plus a lead side marker; then x-ray transmission through the collimated field with Poisson photon noise,
detector blur, scatter and noise, and the display processing of a CR/DR system (window from the exposed
field, unsharp mask, gamma, film-like curve, black/white levels), and last the burned-in text.

Pose: the layout's vertebrae are already in detector pixels (rotated, magnified, moved). What is drawn
relative to image axes (skull, mandible, hyoid, shoulders, soft tissue) is rotated by ``pose.rotation``
too, and the skull and mandible nod about the dens tip by ``pose.nod``; the soft tissue is evaluated in
the un-rotated frame and the bone texture is anchored to C2, so both move with the patient.
Everything is numpy on small windows or half-resolution grids, so one 512 x 400 image takes a few tens
of milliseconds.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

from training.phantom.acquisition import Acquisition, glyphs, paste
from training.phantom.anatomy import BODY_P, Case, Head, Pose, Vertebra


class _Canvas:
    """A float32 attenuation map with helpers that draw a shape inside its bounding window only."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        self.a = np.zeros((height, width), np.float32)

    def window(self, cx: float, cy: float, r: float):
        x0, x1 = max(0, int(cx - r)), min(self.w, int(cx + r) + 2)
        y0, y1 = max(0, int(cy - r)), min(self.h, int(cy + r) + 2)
        if x0 >= x1 or y0 >= y1:
            return None
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        return (slice(y0, y1), slice(x0, x1)), xx, yy

    def superellipse(self, c, e_u, e_v, a, b, p, fill, rim, rim_w=0.07, wedge=0.0, soft=0.04) -> None:
        """A rounded box seen side-on: cylinder-like projected thickness plus a bright cortical rim."""
        win = self.window(c[0], c[1], 1.3 * max(a, b) + 3)
        if win is None:
            return
        sl, xx, yy = win
        dx, dy = xx - c[0], yy - c[1]
        u = dx * e_u[0] + dy * e_u[1]
        v = dx * e_v[0] + dy * e_v[1]
        bu = b * (1.0 + wedge * 0.5 * u / a)  # anterior (u < 0) shorter when wedged
        r = (np.abs(u / a) ** p + np.abs(v / bu) ** p) ** (1.0 / p)
        inside = np.clip((1.0 - r) / soft, 0.0, 1.0)
        core = np.sqrt(np.clip(1.0 - (u / a) ** 2, 0.0, 1.0))
        shell = np.exp(-(((r - 1.0 + rim_w) / rim_w) ** 2))
        self.a[sl] += fill * inside * (0.55 + 0.45 * core) + rim * shell * (r < 1.05)

    def capsule(self, p0, p1, r0, r1, fill, rim=0.0) -> None:
        """A tapered rod from p0 (radius r0) to p1 (radius r1): projected thickness of a cylinder."""
        p0, p1 = np.asarray(p0, np.float32), np.asarray(p1, np.float32)
        mid = (p0 + p1) / 2
        win = self.window(mid[0], mid[1], np.linalg.norm(p1 - p0) / 2 + max(r0, r1) + 3)
        if win is None:
            return
        sl, xx, yy = win
        d = p1 - p0
        t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / float(d @ d + 1e-6), 0.0, 1.0)
        dist = np.hypot(xx - (p0[0] + t * d[0]), yy - (p0[1] + t * d[1]))
        rr = dist / (r0 + (r1 - r0) * t)
        prof = np.sqrt(np.clip(1.0 - rr**2, 0.0, 1.0))
        self.a[sl] += fill * prof + rim * np.exp(-(((rr - 0.85) / 0.12) ** 2)) * (rr < 1.05)

    def ellipse_shell(self, c, rx, ry, fill, rim, rim_w, angle=0.0) -> None:
        """A hollow ellipse (the skull vault): dim interior, bright band along the outline."""
        win = self.window(c[0], c[1], max(rx, ry) + 3)
        if win is None:
            return
        sl, xx, yy = win
        ca, sa = np.cos(angle), np.sin(angle)
        dx, dy = xx - c[0], yy - c[1]
        u, v = dx * ca + dy * sa, -dx * sa + dy * ca
        r = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
        inside = np.clip((1.0 - r) / 0.01, 0.0, 1.0)
        self.a[sl] += fill * inside + rim * np.exp(-(((r - 1.0 + rim_w) / rim_w) ** 2)) * (r < 1.02)


def _upsample(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """A smooth low-resolution float map resized to ``h`` x ``w`` (Pillow bilinear: much faster than
    ``ndimage.zoom``, and exactness to a fraction of a pixel does not matter for smooth fields)."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(arr, np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR))


def _rot(vec, ang: float) -> np.ndarray:
    c, s = np.cos(ang), np.sin(ang)
    return np.array([c * vec[0] - s * vec[1], s * vec[0] + c * vec[1]])


def _bones(cv: _Canvas, verts: list[Vertebra], pose: Pose, head_shape: Head, rng: np.random.Generator) -> None:
    """Skull base, mandible, hyoid, C1 and C2-C7 with posterior elements."""
    c2, c3 = verts[0], verts[1]
    a2 = c2.a
    th = pose.rotation

    def img(dx: float, dy: float) -> np.ndarray:  # an image-axis offset, rotated with the field
        return _rot((dx, dy), th)

    # C2: body, the dens rising into the C1 ring
    cv.superellipse(c2.center, c2.e_u, c2.e_v, c2.a, c2.b, BODY_P, 0.55, 0.55, wedge=c2.wedge)
    dens_base = c2.center - c2.e_v * c2.b * 0.7 + c2.e_u * c2.a * 0.12
    dens_tip = dens_base - c2.e_v * c2.b * 1.2
    cv.capsule(dens_base, dens_tip, 0.45 * a2, 0.30 * a2, 0.5, 0.35)
    # C1: anterior arch in front of the dens, posterior arch behind the canal
    c1_level = dens_tip + c2.e_v * c2.b * 0.4
    cv.superellipse(c1_level - c2.e_u * a2 * 0.95, c2.e_u, c2.e_v, 0.26 * a2, 0.45 * a2, 2.2, 0.5, 0.5, rim_w=0.25)
    post0 = c1_level + c2.e_u * a2 * 1.6
    post1 = post0 + _rot(c2.e_u, 0.1) * a2 * 1.45
    cv.capsule(post0, post1, 0.22 * a2, 0.36 * a2, 0.45, 0.45)
    # C2 pillar and a big, broad spinous process
    cv.superellipse(c2.center + c2.e_u * c2.a * 1.5 - c2.e_v * c2.b * 0.2, _rot(c2.e_u, 0.35), _rot(c2.e_v, 0.35),
                    0.6 * a2, 0.8 * c2.b, 2.5, 0.4, 0.35, rim_w=0.15)
    sp0 = c2.center + c2.e_u * c2.a * 1.6 + c2.e_v * c2.b * 0.15
    sp1 = sp0 + _rot(c2.e_u, 0.30) * a2 * 1.8
    cv.capsule(sp0, sp1, 0.55 * a2, 0.35 * a2, 0.45, 0.4)

    for i, v in enumerate(verts[1:], start=3):
        cv.superellipse(v.center, v.e_u, v.e_v, v.a, v.b, BODY_P, 0.5, 0.6, rim_w=0.06, wedge=v.wedge)
        # articular pillar (lateral mass): a rhomboid behind the body, facets sloping down and back
        pill = v.center + v.e_u * v.a * 1.5 + v.e_v * v.b * 0.1
        cv.superellipse(pill, _rot(v.e_u, 0.5), _rot(v.e_v, 0.5), 0.55 * v.a, 1.0 * v.b, 2.3, 0.4, 0.35, rim_w=0.15)
        # lamina + spinous process, pointing back and down; C7 the longest (vertebra prominens)
        length = v.a * (1.2 + 0.2 * (i - 3) + (0.5 if i == 7 else 0.0)) * rng.normal(1.0, 0.05)
        sp0 = pill + v.e_u * v.a * 0.2
        sp1 = sp0 + _rot(v.e_u, 0.45 - 0.05 * (i - 3)) * length
        cv.capsule(sp0, sp1, 0.62 * v.b, 0.24 * v.b + 1.5, 0.35, 0.4)

    # skull and mandible nod with the head about the dens tip
    top = dens_tip - c2.e_v * a2 * 0.3

    def head(p: np.ndarray) -> np.ndarray:
        return top + _rot(np.asarray(p) - top, pose.nod)

    # skull: vault and occiput filling the top, its base reaching down to the dens tip behind it
    hs = head_shape
    occ_c = head(top + img(a2 * (4.6 + hs.occiput[0]), -a2 * (6.4 + hs.occiput[1])))
    ang = -0.35 + th + pose.nod
    cv.ellipse_shell(occ_c, a2 * 9.2 * hs.vault[0], a2 * 6.6 * hs.vault[1], 0.3, 0.55, 0.05, angle=ang)  # outer table and vault
    cv.ellipse_shell(occ_c, a2 * 8.5 * hs.vault[0], a2 * 6.0 * hs.vault[1], 0.0, 0.3, 0.03, angle=ang)  # inner table
    cv.capsule(head(top + c2.e_u * a2 * 0.9 - c2.e_v * a2 * 0.9), head(top + c2.e_u * a2 * 1.1 + c2.e_v * a2 * 0.35),
               0.6 * a2, 0.35 * a2, 0.35, 0.2)  # mastoid process
    # mandible: ramus rising from the angle at about C2-C3, body running forward to the chin
    angle_pt = (c3.center - c2.e_u * a2 * 2.4 - c2.e_v * c3.b * 0.6 + img(*hs.angle) * a2
                + rng.normal(0, 0.2, 2) * a2)
    ramus_top = angle_pt + img(a2 * hs.ramus[0], -a2 * hs.ramus[1])
    chin = angle_pt + img(-a2 * hs.chin[0], a2 * hs.chin[1] + rng.normal(0, 0.3) * a2)
    cv.capsule(head(angle_pt), head(ramus_top), 0.8 * a2, 0.65 * a2, 0.2, 0.28)
    cv.capsule(head(angle_pt + img(-a2 * 0.2, a2 * 0.1)), head(chin), 0.75 * a2, 0.9 * a2, 0.22, 0.32)
    # hyoid at C3-C4, well in front of the spine
    hy = c3.center - c3.e_u * c3.a * 3.0 + c3.e_v * c3.b * 1.2
    cv.capsule(hy, hy + img(-a2 * 0.9, -a2 * 0.15), 0.18 * a2, 0.13 * a2, 0.35, 0.3)


def _degeneration(cv: _Canvas, verts: list[Vertebra], case: Case) -> None:
    """At each narrowed disc: anterior osteophytes on both endplates and sclerotic (brighter) endplates."""
    for k, d in enumerate(case.degeneration):
        if d < 0.15:
            continue
        up, lo = verts[k], verts[k + 1]
        for v, top in ((up, False), (lo, True)):
            ant, post = v.corner(top=top, anterior=True), v.corner(top=top, anterior=False)
            towards_disc = v.e_v if not top else -v.e_v
            # a beak growing forward and towards the disc from the anterior corner
            tip = ant - v.e_u * v.a * (0.12 + 0.4 * d) + towards_disc * v.b * 0.3 * d
            cv.capsule(ant + v.e_u * v.a * 0.1, tip, 0.16 * v.b + 0.5, 0.04 * v.b + 0.5, 0.5, 0.3)
            inner = v.e_v * v.b * 0.06 * (1 if top else -1)
            cv.capsule(ant + inner, post + inner, 0.09 * v.b + 0.5, 0.09 * v.b + 0.5, 0.45 * d, 0.0)


def _hardware(cv: _Canvas, verts: list[Vertebra], case: Case) -> None:
    """An anterior cervical plate over ``case.hardware`` vertebrae, two screws in each, and interbody grafts."""
    first, n = case.hardware
    fused = [v for v in verts if first <= v.level < first + n]
    if not fused:
        return
    a = fused[0].a
    p0 = fused[0].corner(top=True, anterior=True) - fused[0].e_u * a * 0.18 - fused[0].e_v * a * 0.1
    p1 = fused[-1].corner(top=False, anterior=True) - fused[-1].e_u * a * 0.18 + fused[-1].e_v * a * 0.1
    cv.capsule(p0, p1, 0.11 * a, 0.11 * a, 1.0, 0.3)
    for v in fused:
        for off in (-0.45, 0.45):
            s0 = v.center - v.e_u * v.a * 1.15 + v.e_v * v.b * off
            s1 = s0 + _rot(v.e_u, -0.15 * np.sign(off)) * v.a * 1.5
            cv.capsule(s0, s1, 0.09 * a, 0.06 * a, 0.9, 0.2)
    for up, lo in zip(fused, fused[1:]):  # an interbody graft in each fused disc: metal-free, bone-like
        mid = (up.corner(top=False, anterior=True) + lo.corner(top=True, anterior=False)) / 2
        gap = float(np.linalg.norm(lo.center - up.center) - up.b - lo.b)
        if gap > 1:
            cv.superellipse(mid, up.e_u, up.e_v, 0.6 * up.a, gap / 2 + 0.5, 3.0, 0.0, 0.25, rim_w=0.3)


def _soft_tissue(h: int, w: int, verts: list[Vertebra], case: Case, pose: Pose, rng: np.random.Generator) -> np.ndarray:
    """Neck and shoulder soft tissue with the air column (pharynx, trachea) and the air in front of the throat.

    Smooth everywhere, so it is computed on a half-resolution grid and interpolated up. It is modelled
    upright, so the grid and the vertebrae are first rotated back by ``pose.rotation`` about the image centre.
    """
    yy, xx = np.mgrid[0 : h + 1 : 2, 0 : w + 1 : 2].astype(np.float32)
    cx, cy = w / 2.0, h / 2.0
    c, s = np.cos(-pose.rotation), np.sin(-pose.rotation)
    xx, yy = cx + c * (xx - cx) - s * (yy - cy), cy + s * (xx - cx) + c * (yy - cy)
    centres = np.array([[cx + c * (v.center[0] - cx) - s * (v.center[1] - cy),
                         cy + s * (v.center[0] - cx) + c * (v.center[1] - cy)] for v in verts])
    ys = centres[:, 1]
    ant = centres[:, 0] - np.array([v.a for v in verts])  # anterior edge of each body
    a2 = verts[0].a
    nk = case.neck
    ant_x = np.interp(yy, ys, ant, left=ant[0], right=ant[-1])
    t = np.clip((yy - ys[0]) / (ys[-1] - ys[0]), -0.5, 1.3)

    # air in front of the throat: left of the skin line and below the jaw
    bulge, where = case.larynx
    throat_x = ant_x - a2 * (case.throat + 0.9 * nk * t + bulge * np.exp(-(((t - where) / 0.12) ** 2))
                             + rng.normal(0, 0.15))
    jaw_y = centres[1, 1] + verts[1].b * 0.6 + (xx - centres[1, 0]) * (0.12 + pose.nod)
    air_front = (1 / (1 + np.exp((xx - throat_x) / 2.5))) * (1 / (1 + np.exp(-(yy - jaw_y) / 4.0)))
    # neck as a cylinder seen side on: thicker in the middle, wider in a heavy neck
    centre = ant_x + a2 * 1.5
    half = a2 * case.nape
    neck = np.sqrt(np.clip(1.0 - ((xx - centre) / half) ** 2, 0.15, 1.0)) * nk ** 0.5
    head = 0.7 / (1 + np.exp((yy - jaw_y + a2 * 0.5) / (a2 * 0.6)))  # face and head above the jaw
    soft = np.maximum(neck, head) * (1.0 - air_front)
    # shoulders rising into the lower part of the image, overlapping C6-C7 posteriorly when they are high
    shoulder = case.shoulder + rng.normal(0, 0.4)
    sh_y = centres[-1, 1] - verts[-1].b * shoulder + (centre - xx) * 0.6 + ((xx - centre) / a2) ** 2 * 2.0
    soft += rng.uniform(0.4, 0.7) * nk / (1 + np.exp(-(yy - sh_y) / (a2 * 1.5)))
    # pharynx/trachea: an air tube in front of the spine, widening away from it lower down
    air_x = ant_x - a2 * (0.75 + 0.9 * np.clip(t, 0, 1))
    air_half = a2 * (0.45 + 0.25 * np.clip(t, 0, 1))
    tube = np.sqrt(np.clip(1.0 - ((xx - air_x) / air_half) ** 2, 0.0, 1.0))
    tube *= 1 / (1 + np.exp(-(yy - (ys[0] - verts[0].b * 2.2)) / 4.0))  # starts behind the soft palate
    soft -= 0.35 * tube * (1.0 - air_front)
    full = _upsample(soft, h, w)
    return np.clip(full, 0.0, None)


#: Side (in half-resolution texture cells) of a case's trabecular noise field, anchored to C2.
_TEX = 320


@lru_cache(maxsize=16)
def _texture_field(seed: int) -> np.ndarray:
    """A case's band-passed noise field (cached: a case's images are often rendered one after another)."""
    field = np.random.default_rng(seed).standard_normal((_TEX, _TEX), dtype=np.float32)
    return ndimage.gaussian_filter(field, 1.0) - ndimage.gaussian_filter(field, 3.0)


def _texture(case: Case, verts: list[Vertebra], pose: Pose, h: int, w: int) -> np.ndarray:
    """Band-passed noise modulating bone density: one field per case, sampled in C2's frame so it moves
    (rotates, scales, shifts) with the patient between that case's images."""
    field = _texture_field(case.texture_seed)
    yy, xx = np.mgrid[0 : h + 1 : 2, 0 : w + 1 : 2].astype(np.float32)
    c2 = verts[0]
    k = 21.0 / c2.a / 2.0  # detector pixels -> texture cells (a C2 half-depth is ~10 cells)
    dx, dy = xx - c2.center[0], yy - c2.center[1]
    c, s = np.cos(-pose.rotation), np.sin(-pose.rotation)
    u = (c * dx - s * dy) * k + _TEX * 0.25
    v = (s * dx + c * dy) * k + _TEX * 0.2
    half = ndimage.map_coordinates(field, [v, u], order=1, mode="wrap")
    return _upsample(half, h, w)


def _illumination(ex, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Relative photon fluence over the detector: the heel-effect ramp times a smooth non-uniformity."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    along = ((xx - w / 2) * np.sin(ex.heel_angle) + (yy - h / 2) * np.cos(ex.heel_angle)) / h
    coarse = rng.standard_normal((4, 4)).astype(np.float32)
    smooth = _upsample(ndimage.zoom(coarse, 8, order=3, mode="nearest"), h, w)
    return np.clip((1.0 - ex.heel * along) * (1.0 + ex.mottle * smooth), 0.2, None)


def render(case: Case, verts: list[Vertebra], pose: Pose, acq: Acquisition, height: int, width: int,
           rng: np.random.Generator) -> np.ndarray:
    """One radiograph as float32 in [0, 1] (bone bright), with this image's pose, exposure and marks."""
    cv = _Canvas(height, width)
    _bones(cv, verts, pose, case.head, rng)
    _degeneration(cv, verts, case)
    tex = _texture(case, verts, pose, height, width)
    bone = cv.a * (1.0 + 0.18 * tex / (tex.std() + 1e-6))
    soft = _soft_tissue(height, width, verts, case, pose, rng)
    ex = acq.exposure
    atten = ex.mu_soft * soft + ex.mu_bone * bone
    if case.hardware is not None:  # metal: far more attenuating than bone, no trabecular texture
        metal = _Canvas(height, width)
        _hardware(metal, verts, case)
        atten += 3.0 * metal.a
    if acq.marker is not None:  # the lead letter lies on the detector: opaque like metal
        m = acq.marker
        paste(atten, glyphs(m.text, m.size, m.boxed), m.x, m.y, m.value, add=True)
    atten = ndimage.gaussian_filter(atten, ex.blur)  # focal spot and detector unsharpness
    field = acq.field.mask(height, width)
    # photons: Poisson noise (normal approximation) is larger where fewer photons arrive; outside the
    # collimated field only a little scattered and leaked radiation reaches the detector
    mean = ex.n0 * _illumination(ex, height, width, rng) * np.exp(-atten) * (0.015 + 0.985 * field)
    counts = mean + np.sqrt(mean) * rng.standard_normal(mean.shape, dtype=np.float32)
    scatter = ex.scatter * ndimage.uniform_filter(counts, 41)
    signal = np.log(ex.n0) - np.log(np.maximum(counts, 0.0) + scatter + 1.0)
    signal = ndimage.gaussian_filter(signal, 0.5)
    # display processing of a CR/DR system: window from the exposed field, edge enhancement, curves
    exposed = signal[::2, ::2][field[::2, ::2] > 0.5]
    lo, hi = np.percentile(exposed if exposed.size > 100 else signal, ex.window)
    x = np.clip((signal - lo) / max(hi - lo, 1e-6), 0, 1.2)
    x = x + ex.edge_gain * (x - ndimage.uniform_filter(x, ex.edge_size))
    x = np.clip(x, 0, 1) ** ex.gamma
    x = 1 / (1 + np.exp(-(x - 0.5) * ex.slope))
    s0, s1 = 1 / (1 + np.exp(0.5 * ex.slope)), 1 / (1 + np.exp(-0.5 * ex.slope))
    x = (x - s0) / (s1 - s0)
    x = ex.black + x * (ex.white - ex.black)
    x = x + ex.detector_noise * rng.standard_normal(x.shape, dtype=np.float32)
    if acq.field.shutter == "black":  # the display masks what the collimator covered
        x = x * field + 0.02 * (1.0 - field)
    if acq.text is not None:
        t = acq.text
        paste(x, glyphs(t.text, t.size), t.x, t.y, t.value, add=False)
    return np.clip(x, 0.0, 1.0).astype(np.float32)
