"""Clinical measurements derived from the 23 CSXA landmarks, and how two sets of them agree.

Where it sits: used by `cspine evaluate --utility` (evaluation/utility.py) to ask whether synthetic
radiographs carry the measurement a spine surgeon reads off a lateral film, the C2-C7 angle, with the
distribution the real images have, and whether a landmark model trained on them measures it on real
radiographs.

The C2-C7 angle is the Cobb angle between the inferior endplate of C2 and the inferior endplate of C7,
each the line through its two corner landmarks ("Cn bottom left" = anterior, "Cn bottom right" =
posterior; the patient faces left in CSXA). Positive = lordosis (the usual sign in the spine literature),
negative = kyphosis. Agreement is summarised Bland-Altman style: the mean difference (bias), its 95% limits
of agreement (bias +- 1.96 sd of the differences), and a normal-theory 95% interval of the bias.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

ENDPLATES = ("C2", "C7")


def _points(kp) -> Mapping[str, tuple[float, float]]:
    return json.loads(kp) if isinstance(kp, str) else kp


def endplate_angle(kp, level: str) -> float:
    """Orientation in degrees (image axes, y down) of ``level``'s inferior endplate, anterior to posterior."""
    pts = _points(kp)
    (ax, ay), (px, py) = pts[f"{level} bottom left"], pts[f"{level} bottom right"]
    return float(np.degrees(np.arctan2(py - ay, px - ax)))


def c2c7_angle(kp) -> float:
    """The C2-C7 Cobb angle in degrees of one image's keypoints (dict or its JSON), lordosis positive."""
    d = endplate_angle(kp, "C2") - endplate_angle(kp, "C7")
    return float((d + 180.0) % 360.0 - 180.0)


def c2c7_angles(keypoints) -> np.ndarray:
    """C2-C7 angles of many images (NaN where an image has no keypoints)."""
    out = []
    for kp in keypoints:
        try:
            out.append(c2c7_angle(kp) if kp is not None and not (isinstance(kp, float) and np.isnan(kp)) else np.nan)
        except (KeyError, TypeError, ValueError):
            out.append(np.nan)
    return np.asarray(out, dtype=np.float64)


def bland_altman(measured, reference) -> dict:
    """Agreement of paired measurements: bias (measured - reference), its 95% interval, limits of agreement."""
    a, b = np.asarray(measured, np.float64), np.asarray(reference, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    n = int(len(d))
    if n < 3:
        return {"n": n, "bias": None, "bias_ci": None, "sd": None, "loa": None}
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    half = 1.96 * sd / np.sqrt(n)
    return {"n": n, "bias": bias, "bias_ci": [bias - half, bias + half], "sd": sd,
            "loa": [bias - 1.96 * sd, bias + 1.96 * sd], "mean_abs_error": float(np.abs(d).mean())}


def c2c7_angles_array(keypoints: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """C2-C7 angles (degrees, lordosis positive) of keypoint arrays ``[n, K, 2]`` in ``labels`` order: the same
    angle as :func:`c2c7_angle`, vectorised (NaN where one of the four endplate corners is missing)."""
    kp = np.asarray(keypoints, np.float64)
    pos = {name: i for i, name in enumerate(labels)}

    def orient(level: str) -> np.ndarray:
        a, p = kp[:, pos[f"{level} bottom left"]], kp[:, pos[f"{level} bottom right"]]
        return np.degrees(np.arctan2(p[:, 1] - a[:, 1], p[:, 0] - a[:, 0]))

    return (orient("C2") - orient("C7") + 180.0) % 360.0 - 180.0
