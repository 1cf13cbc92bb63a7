"""The C2-C7 angle against hand-built geometry and the phantom generator's own curvature classes."""

import numpy as np
import pytest

from evaluation.measurements import bland_altman, c2c7_angle, c2c7_angles


def _kp(c2_deg: float, c7_deg: float) -> dict:
    """Endplates as unit segments from anterior (left) to posterior (right), tilted by the given angles."""
    def seg(deg, y):
        r = np.radians(deg)
        return (0.0, y), (float(np.cos(r)), y + float(np.sin(r)))
    (a2, p2), (a7, p7) = seg(c2_deg, 0.0), seg(c7_deg, 10.0)
    return {"C2 bottom left": a2, "C2 bottom right": p2, "C7 bottom left": a7, "C7 bottom right": p7}


def test_angle_is_the_difference_of_endplate_tilts():
    assert c2c7_angle(_kp(10.0, -15.0)) == pytest.approx(25.0)
    assert c2c7_angle(_kp(-5.0, 5.0)) == pytest.approx(-10.0)
    assert np.isnan(c2c7_angles([None, {"C2 bottom left": (0, 0)}])).all()


def test_phantom_lordosis_is_positive_and_kyphosis_negative():
    from training.phantom.anatomy import keypoints, layout, sample_case, sample_pose

    by_class = {}
    for i in range(120):
        case = sample_case(7, i)
        kp = keypoints(layout(case, 512, 400, sample_pose(np.random.default_rng(i))))
        by_class.setdefault(case.curvature, []).append(c2c7_angle(kp))
    assert np.mean(by_class[1]) > 10.0 and np.mean(by_class[5]) < -5.0


def test_bland_altman_recovers_a_known_bias():
    rng = np.random.default_rng(0)
    ref = rng.normal(20, 8, 500)
    ba = bland_altman(ref + 3.0 + rng.normal(0, 2, 500), ref)
    assert ba["bias_ci"][0] < 3.0 < ba["bias_ci"][1]
    assert ba["loa"][0] == pytest.approx(3.0 - 1.96 * 2, abs=0.4) and ba["loa"][1] == pytest.approx(3.0 + 1.96 * 2, abs=0.4)
