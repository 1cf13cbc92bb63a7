"""Drawing one phantom lateral cervical-spine radiograph from a layout (``anatomy.py``).

Second step of the phantom generator. The image is formed the way a radiograph is: each structure adds
a projected thickness to an attenuation map (soft tissue of the neck and shoulders, minus the air of the
pharynx and trachea; skull base, mandible, hyoid, C1 arches, C2 with the dens, C3-C7 bodies with
cortical rims, articular pillars, laminae and spinous processes), then x-ray transmission with Poisson
photon noise, detector blur, scatter and a film-like display curve, with per-image exposure variation.
Everything is numpy on small windows, so one 512 x 400 image takes a few tens of milliseconds.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from training.phantom.anatomy import BODY_P, Case, Vertebra


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


def _rot(vec: np.ndarray, ang: float) -> np.ndarray:
    c, s = np.cos(ang), np.sin(ang)
    return np.array([c * vec[0] - s * vec[1], s * vec[0] + c * vec[1]])


def _bones(cv: _Canvas, verts: list[Vertebra], rng: np.random.Generator) -> None:
    """Skull base, mandible, hyoid, C1 and C2-C7 with posterior elements."""
    c2, c3 = verts[0], verts[1]
    a2 = c2.a
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

    # skull: vault and occiput filling the top, its base reaching down to the dens tip behind it
    top = dens_tip - c2.e_v * a2 * 0.3
    occ_c = np.array([top[0] + a2 * 4.6, top[1] - a2 * 6.4])
    cv.ellipse_shell(occ_c, a2 * 9.2, a2 * 6.6, 0.3, 0.55, 0.05, angle=-0.35)  # outer table and vault
    cv.ellipse_shell(occ_c, a2 * 8.5, a2 * 6.0, 0.0, 0.3, 0.03, angle=-0.35)  # inner table
    cv.capsule(top + c2.e_u * a2 * 0.9 - c2.e_v * a2 * 0.9, top + c2.e_u * a2 * 1.1 + c2.e_v * a2 * 0.35,
               0.6 * a2, 0.35 * a2, 0.35, 0.2)  # mastoid process
    # mandible: ramus rising from the angle at about C2-C3, body running forward to the chin
    angle_pt = c3.center - c2.e_u * a2 * 2.4 - c2.e_v * c3.b * 0.6 + rng.normal(0, 0.2, 2) * a2
    ramus_top = angle_pt + np.array([a2 * 0.6, -a2 * 4.0])
    chin = angle_pt + np.array([-a2 * 5.5, a2 * 0.9 + rng.normal(0, 0.3) * a2])
    cv.capsule(angle_pt, ramus_top, 0.8 * a2, 0.65 * a2, 0.2, 0.28)
    cv.capsule(angle_pt + np.array([-a2 * 0.2, a2 * 0.1]), chin, 0.75 * a2, 0.9 * a2, 0.22, 0.32)
    # hyoid at C3-C4, well in front of the spine
    hy = c3.center - c3.e_u * c3.a * 3.0 + c3.e_v * c3.b * 1.2
    cv.capsule(hy, hy - np.array([a2 * 0.9, a2 * 0.15]), 0.18 * a2, 0.13 * a2, 0.35, 0.3)


def _soft_tissue(h: int, w: int, verts: list[Vertebra], rng: np.random.Generator) -> np.ndarray:
    """Neck and shoulder soft tissue with the air column (pharynx, trachea) and the air in front of the throat.

    Smooth everywhere, so it is computed on a half-resolution grid and interpolated up.
    """
    yy, xx = np.mgrid[0 : h + 1 : 2, 0 : w + 1 : 2].astype(np.float32)
    ys = np.array([v.center[1] for v in verts])
    ant = np.array([v.center[0] - v.a for v in verts])  # anterior edge of each body
    a2 = verts[0].a
    ant_x = np.interp(yy[:, 0], ys, ant, left=ant[0], right=ant[-1])[:, None]  # per row
    t = np.clip((yy - ys[0]) / (ys[-1] - ys[0]), -0.5, 1.3)

    # air in front of the throat: left of the skin line and below the jaw
    throat_x = ant_x - a2 * (2.4 + 0.9 * t + rng.normal(0, 0.15))
    jaw_y = verts[1].center[1] + verts[1].b * 0.6 + (xx - verts[1].center[0]) * 0.12
    air_front = (1 / (1 + np.exp((xx - throat_x) / 2.5))) * (1 / (1 + np.exp(-(yy - jaw_y) / 4.0)))
    # neck as a cylinder seen side on: thicker in the middle
    centre = ant_x + a2 * 1.5
    half = a2 * 6.0
    neck = np.sqrt(np.clip(1.0 - ((xx - centre) / half) ** 2, 0.15, 1.0))
    head = 0.7 / (1 + np.exp((yy - jaw_y + a2 * 0.5) / (a2 * 0.6)))  # face and head above the jaw
    soft = np.maximum(neck, head) * (1.0 - air_front)
    # shoulders rising into the lower part of the image, overlapping C6-C7 posteriorly
    sh_y = verts[-1].center[1] - verts[-1].b * rng.uniform(0.0, 2.0) + (centre - xx) * 0.6 + ((xx - centre) / a2) ** 2 * 2.0
    soft += rng.uniform(0.4, 0.7) / (1 + np.exp(-(yy - sh_y) / (a2 * 1.5)))
    # pharynx/trachea: an air tube in front of the spine, widening away from it lower down
    air_x = ant_x - a2 * (0.75 + 0.9 * np.clip(t, 0, 1))
    air_half = a2 * (0.45 + 0.25 * np.clip(t, 0, 1))
    tube = np.sqrt(np.clip(1.0 - ((xx - air_x) / air_half) ** 2, 0.0, 1.0))
    tube *= 1 / (1 + np.exp(-(yy - (ys[0] - verts[0].b * 2.2)) / 4.0))  # starts behind the soft palate
    soft -= 0.35 * tube * (1.0 - air_front)
    full = ndimage.zoom(soft, 2.0, order=1)[:h, :w]
    return np.clip(full, 0.0, None)


def render(case: Case, verts: list[Vertebra], height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One radiograph as float32 in [0, 1] (bone bright), with this image's exposure and noise."""
    cv = _Canvas(height, width)
    _bones(cv, verts, rng)
    # trabecular texture: band-passed noise modulating bone density
    tex_rng = np.random.default_rng(case.texture_seed)
    noise = tex_rng.standard_normal(((height + 1) // 2, (width + 1) // 2), dtype=np.float32)  # half resolution
    tex = ndimage.zoom(ndimage.gaussian_filter(noise, 1.0) - ndimage.gaussian_filter(noise, 3.0), 2.0, order=1)[:height, :width]
    bone = cv.a * (1.0 + 0.18 * tex / (tex.std() + 1e-6))
    soft = _soft_tissue(height, width, verts, rng)

    mu_soft, mu_bone = 1.25, rng.uniform(0.9, 1.15)
    atten = mu_soft * soft + mu_bone * bone
    atten = ndimage.gaussian_filter(atten, rng.uniform(0.6, 1.1))  # focal spot and detector unsharpness
    # photons: exposure varies per image; Poisson noise is larger where fewer photons arrive
    n0 = rng.uniform(3000, 15000)
    mean = n0 * np.exp(-atten)
    counts = mean + np.sqrt(mean) * rng.standard_normal(mean.shape, dtype=np.float32)  # Poisson, normal approx.
    scatter = 0.08 * ndimage.uniform_filter(counts, 41)
    signal = np.log(n0) - np.log(np.maximum(counts, 0.0) + scatter + 1.0)
    signal = ndimage.gaussian_filter(signal, 0.5)
    # display processing of a CR/DR system: window, mild edge enhancement, film-like curve
    lo, hi = np.percentile(signal, [1.0, 99.7])
    x = np.clip((signal - lo) / max(hi - lo, 1e-6), 0, 1.2)
    x = x + 0.35 * (x - ndimage.uniform_filter(x, 9))
    gamma = rng.uniform(0.8, 1.25)
    x = np.clip(x, 0, 1) ** gamma
    x = 1 / (1 + np.exp(-(x - 0.5) * rng.uniform(4.0, 6.0)))
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
    # brightness/contrast of the exposure: offset and headroom differ per image
    x = rng.uniform(0.0, 0.06) + x * rng.uniform(0.85, 0.97)
    return np.clip(x, 0.0, 1.0).astype(np.float32)
