"""The phantom generator: determinism, anatomy (keypoints, curvature, bone brightness), the CSXA-shaped
folder, its completeness check, and that it goes through the same CSXA loader as the real set.
Then the variation between images (pose, magnification, collimation, markers, degeneration, hardware)
and that the privacy audit's calibration on phantoms is not degenerate."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cspine.stages import load_config
from cspine.rundir import INDEX_COLUMNS, RunDir
from training.config import PhantomConfig
from cspine.labels import KEYPOINT_LABELS
from training.ingest.prepare import prepare
from training.phantom import is_complete, make_image, plan_images, write_phantom_folder
from training.phantom.acquisition import sample_acquisition
from training.phantom.anatomy import Pose, keypoints, layout, sample_case, sample_pose
from training.phantom.render import render

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(count=14, cases=9, height=160, width=128, seed=5)


def test_plan_gives_some_cases_two_images():
    plans = plan_images(14, 9, seed=5)
    per_case = pd.Series([p.case_index for p in plans]).value_counts()
    assert len(per_case) == 9 and per_case.max() == 2 and (per_case == 1).sum() == 4
    assert all(p.name[:4] == p.case_id for p in plans)
    assert len({p.name for p in plans}) == 14


def test_image_depends_only_on_seed_and_index():
    plans = plan_images(6, 4, seed=9)
    a = make_image(9, plans[3], 128, 100)
    b = make_image(9, plans[3], 128, 100)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    c = make_image(10, plans[3], 128, 100)
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.uint16 and a[0].shape == (128, 100)
    assert a[0].max() > 40000 and a[0].min() < 10000  # uses the 16-bit range


def test_two_images_of_a_case_share_the_patient_but_differ():
    plans = plan_images(4, 2, seed=1)
    same = [p for p in plans if p.case_index == plans[0].case_index]
    assert len(same) == 2
    (i1, k1, _, m1), (i2, k2, _, m2) = (make_image(1, p, 160, 128) for p in same)
    assert not np.array_equal(i1, i2)
    assert {k: v for k, v in m1.items() if k != "Image"} == {k: v for k, v in m2.items() if k != "Image"}


@pytest.mark.parametrize("index", range(6))
def test_keypoints_are_anatomically_ordered_and_bone_is_bright(index):
    case = sample_case(3, index)
    rng = np.random.default_rng([3, index, 1])
    pose = sample_pose(rng)
    verts = layout(case, 512, 400, pose)
    kp = keypoints(verts)
    acq = sample_acquisition(rng, np.array(list(kp.values())), verts[0].b, verts[-1].a, 512, 400)
    acq = dataclasses.replace(acq, marker=None, text=None)  # nothing painted over the bones compared below
    img = render(case, verts, pose, acq, 512, 400, rng)
    assert list(kp) == list(KEYPOINT_LABELS)
    for level in range(3, 8):
        tl, tr = kp[f"C{level} top left"], kp[f"C{level} top right"]
        bl, br = kp[f"C{level} bottom left"], kp[f"C{level} bottom right"]
        assert tl[0] < tr[0] and bl[0] < br[0]  # left = anterior, patient faces left
        assert tl[1] < bl[1] and tr[1] < br[1]  # top above bottom
        if level > 3:
            assert kp[f"C{level - 1} bottom left"][1] < tl[1]  # a disc between levels
    assert kp["C2 centroid"][1] < kp["C2 bottom left"][1] < kp["C3 top left"][1]
    # the C4 body is brighter than the soft tissue two body-depths in front of it
    c4 = np.mean([kp[f"C4 {s}"] for s in ("top left", "top right", "bottom left", "bottom right")], axis=0)
    depth = kp["C4 top right"][0] - kp["C4 top left"][0]
    x, y = int(c4[0]), int(c4[1])
    body = img[y - 3:y + 4, x - 3:x + 4].mean()
    front = img[y - 3:y + 4, int(x - 2 * depth) - 3:int(x - 2 * depth) + 4].mean()
    assert body > front + 0.1, (body, front)


@pytest.mark.parametrize("curvature,sign", [(1, -1), (5, +1)])
def test_curvature_class_bends_the_column_the_right_way(curvature, sign):
    case = dataclasses.replace(sample_case(0, 0), curvature=curvature, amplitude=0.08, lean=0.0,
                               seg_noise=(0.0,) * 6)
    verts = layout(case, 512, 400, Pose())
    top, bottom = verts[0].center, verts[-1].center
    mid = verts[3].center  # C5
    t = (mid[1] - top[1]) / (bottom[1] - top[1])
    chord_x = top[0] + t * (bottom[0] - top[0])
    # lordosis bulges anteriorly (to the left, smaller x), kyphosis posteriorly
    assert sign * (mid[0] - chord_x) > 5.0


def test_folder_is_csxa_shaped_complete_and_skipped_when_done(tmp_path):
    cfg = PhantomConfig(**SMALL)
    out = tmp_path / "raw"
    man = write_phantom_folder(out, cfg, workers=1, progress=False)
    pngs = sorted((out / "datasets-PNG").glob("*.png"))
    jsons = sorted((out / "datasets-JSON").glob("*.json"))
    assert len(pngs) == len(jsons) == 14 and man["images"] == 14 and man["cases"] == 9
    with Image.open(pngs[0]) as im:
        assert im.mode.startswith("I;16") and im.size == (128, 160)
    ann = json.loads(jsons[0].read_text())
    assert [s["label"] for s in ann["shapes"]] == list(KEYPOINT_LABELS)
    assert all(s["shape_type"] == "point" and len(s["points"]) == 1 for s in ann["shapes"])
    sheet = pd.read_excel(out / "CSXA-metadata.xlsx")
    assert {"Image", "Gender", "Age", "Curvature"} <= set(sheet.columns)
    assert sheet.Curvature.between(1, 5).all() and set(sheet.Gender) <= {"Male", "Female"}
    assert is_complete(out, cfg)
    # a second run does nothing; a removed file is re-made identically
    again = write_phantom_folder(out, cfg, workers=1, progress=False)
    assert again.get("skipped") is True
    data = pngs[3].read_bytes()
    pngs[3].unlink()
    assert not is_complete(out, cfg)
    write_phantom_folder(out, cfg, workers=1, progress=False)
    assert pngs[3].read_bytes() == data
    # another config is another data set
    assert not is_complete(out, PhantomConfig(**{**SMALL, "seed": 6}))


def test_some_json_sizes_disagree_with_the_png():
    plans = plan_images(60, 60, seed=2)
    mismatched = 0
    for p in plans:
        img, _, ann, _ = make_image(2, p, 80, 64)
        mismatched += (ann["imageHeight"], ann["imageWidth"]) != img.shape
    assert 0 < mismatched < 15  # about 8%, as a few in the real set


def test_phantom_goes_through_the_csxa_loader(tmp_path):
    cfg = load_config(REPO / "configs" / "demo.yaml", {
        "run_dir": str(tmp_path / "run"), "data.path": str(tmp_path / "raw"), "data.resolution": 32,
        **{f"data.phantom.{k}": v for k, v in SMALL.items()},
    })
    write_phantom_folder(cfg.data.path, cfg.data.phantom, workers=1, progress=False)
    run = RunDir(cfg.resolved_run_dir)
    report = prepare(cfg, run, workers=1, progress=False)
    idx = pd.read_parquet(run.index)
    assert tuple(idx.columns) == INDEX_COLUMNS and len(idx) == 14
    assert report["metadata_sheet"] == "CSXA-metadata.xlsx" and report["counts"]["skipped"] == 0
    assert set(idx.case_id) == {n[:4] for n in idx.image_id}
    assert idx.groupby("case_id").split.nunique().max() == 1
    assert set(idx.split) == {"train", "holdout"}
    for labels in map(json.loads, idx.labels):
        assert list(labels["keypoints"]) == list(KEYPOINT_LABELS)
        assert labels["curvature"] in range(1, 6) and labels["sex"] in ("M", "F")
        xs = [p[0] for p in labels["keypoints"].values()]
        ys = [p[1] for p in labels["keypoints"].values()]
        assert 0 <= min(xs) and max(xs) < 32 and 0 <= min(ys) and max(ys) < 32


def test_interrupted_run_with_another_config_starts_afresh(tmp_path):
    out = tmp_path / "raw"
    cfg_a = PhantomConfig(**{**SMALL, "count": 4, "cases": 4})
    cfg_b = PhantomConfig(**{**SMALL, "count": 4, "cases": 4, "seed": 77})
    write_phantom_folder(out, cfg_a, workers=1, progress=False)
    # simulate a run of config A killed before its manifest: files there, no manifest
    (out / "phantom.json").unlink()
    (out / ".phantom-started").write_text("not-this-config\n")
    write_phantom_folder(out, cfg_b, workers=1, progress=False)
    plans = plan_images(4, 4, seed=77)
    expect = make_image(77, plans[0], SMALL["height"], SMALL["width"])[0]
    got = np.array(Image.open(out / "datasets-PNG" / f"{plans[0].name}.png"))
    assert np.array_equal(got, expect) and is_complete(out, cfg_b)


def test_prepare_refuses_phantom_data_of_another_config(tmp_path):
    from training.ingest.errors import IngestError

    over = {"run_dir": str(tmp_path / "run"), "data.path": str(tmp_path / "raw"), "data.resolution": 32,
            **{f"data.phantom.{k}": v for k, v in SMALL.items()}}
    cfg = load_config(REPO / "configs" / "demo.yaml", over)
    write_phantom_folder(cfg.data.path, cfg.data.phantom, workers=1, progress=False)
    other = load_config(REPO / "configs" / "demo.yaml", {**over, "data.phantom.seed": 99})
    with pytest.raises(IngestError, match="demo-data"):
        prepare(other, RunDir(other.resolved_run_dir), workers=1, progress=False)


# -- variation between images (phantom-5) ------------------------------------------------------------
def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[complex, float]:
    """Least-squares z_dst = a * z_src + b over points as complex numbers: (a, largest residual in px)."""
    zs, zd = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    A = np.stack([zs, np.ones_like(zs)], 1)
    (a, b), *_ = np.linalg.lstsq(A, zd, rcond=None)
    return a, float(np.abs(A @ np.array([a, b]) - zd).max())


def test_keypoints_follow_rotation_and_magnification_exactly():
    case = sample_case(4, 2)
    base = Pose(flexion=0.004, lean=0.02, nod=0.05)
    moved = dataclasses.replace(base, rotation=0.12, magnification=1.11, centre=(0.45, 0.55))
    k0 = np.array(list(keypoints(layout(case, 512, 400, base)).values()))
    k1 = np.array(list(keypoints(layout(case, 512, 400, moved)).values()))
    a, resid = _similarity(k0, k1)
    assert resid < 1e-6 and abs(abs(a) - 1.11) < 1e-9 and abs(np.angle(a) - 0.12) < 1e-9


@pytest.mark.parametrize("curvature,amplitude,flexion,sign", [(1, 0.05, +1, -1), (5, 0.03, -1, +1)])
def test_flexion_never_flips_the_curvature_class(curvature, amplitude, flexion, sign):
    """The mildest lordosis in full flexion still bulges anteriorly; the mildest kyphosis in full extension
    still bulges posteriorly (by at least a third of the class amplitude)."""
    from training.phantom.anatomy import MAX_FLEXION

    case = dataclasses.replace(sample_case(0, 0), curvature=curvature, amplitude=amplitude, lean=0.2,
                               seg_noise=(0.0,) * 6)
    verts = layout(case, 512, 400, Pose(flexion=flexion * MAX_FLEXION, rotation=0.1))
    c = np.array([v.center for v in verts])
    axis = (c[-1] - c[0]) / np.linalg.norm(c[-1] - c[0])
    normal = np.array([axis[1], -axis[0]])  # points posteriorly (to larger x) for a column running down
    length = np.linalg.norm(c[-1] - c[0])
    bulge = float((c[3] - c[0]) @ normal) / length  # C5's distance from the C2-C7 chord
    assert sign * bulge > amplitude / 3


def test_pose_and_acquisition_vary_between_images():
    case = sample_case(11, 3)
    spans, angles, marker, text, blades, black = [], [], 0, 0, 0, 0
    for i in range(300):
        rng = np.random.default_rng([11, 3, i])
        verts = layout(case, 512, 400, sample_pose(rng))
        kp = np.array(list(keypoints(verts).values()))
        d = kp[-1] - kp[0]  # C2 centroid -> C7 bottom right
        spans.append(np.hypot(*d))
        angles.append(np.degrees(np.arctan2(d[0], d[1])))
        assert kp[:, 0].min() > 0 and kp[:, 0].max() < 400 and kp[:, 1].min() > 0 and kp[:, 1].max() < 512
        acq = sample_acquisition(rng, kp, verts[0].b, verts[-1].a, 512, 400)
        f = acq.field
        inside = (f.left <= kp[:, 0].min()) and (kp[:, 0].max() <= f.right) and (f.top <= kp[:, 1].min()) \
            and (kp[:, 1].max() <= f.bottom)
        assert inside  # the spine is always in the exposed field
        blades += (f.left > 0) + (f.right < 399) + (f.top > 0) + (f.bottom < 511) > 0
        marker += acq.marker is not None
        text += acq.text is not None
        black += f.shutter == "black"
    spans = np.array(spans)
    assert np.percentile(spans, 95) / np.percentile(spans, 5) > 1.25  # magnification about +-15%
    assert np.std(angles) > 4.0  # neck inclination and in-plane rotation, degrees
    assert 0.6 < marker / 300 < 0.8 and 0.5 < text / 300 < 0.7 and 0.25 < black / 300 < 0.45
    assert 0.6 < blades / 300 < 0.95


def test_case_traits_degeneration_with_age_and_hardware_in_a_minority():
    cases = [sample_case(21, i) for i in range(600)]
    young = [np.mean(c.degeneration) for c in cases if c.age is not None and c.age < 40]
    old = [np.mean(c.degeneration) for c in cases if c.age is not None and c.age > 60]
    assert np.mean(old) > 2 * np.mean(young) + 0.1
    plated = [c for c in cases if c.hardware is not None]
    assert 0.04 < len(plated) / len(cases) < 0.2
    assert all(3 <= c.hardware[0] and c.hardware[0] + c.hardware[1] - 1 <= 7 for c in plated)
    necks = np.array([c.neck for c in cases])
    assert np.percentile(necks, 90) / np.percentile(necks, 10) > 1.4  # slim to heavy necks


def test_plate_and_marker_are_drawn_bright():
    case = dataclasses.replace(sample_case(2, 1), hardware=(4, 3))
    rng = np.random.default_rng(0)
    pose = Pose()
    verts = layout(case, 256, 200, pose)
    kp = np.array(list(keypoints(verts).values()))
    acq = sample_acquisition(rng, kp, verts[0].b, verts[-1].a, 256, 200)
    from training.phantom.acquisition import Mark

    acq = dataclasses.replace(acq, marker=Mark("R", 10, 200, 20, value=3.0), text=Mark("A 12", 120, 5, 10, 1.0))
    plain = dataclasses.replace(acq, marker=None, text=None)
    with_all = render(case, verts, pose, acq, 256, 200, np.random.default_rng(1))
    without = render(dataclasses.replace(case, hardware=None), verts, pose, plain, 256, 200, np.random.default_rng(1))
    c5 = verts[3]
    plate = (c5.center - c5.e_u * c5.a * 1.2).astype(int)  # just in front of the C5 body
    assert with_all[plate[1] - 2:plate[1] + 3, plate[0] - 2:plate[0] + 3].max() > without[plate[1], plate[0]] + 0.15
    lead = with_all[200:222, 10:26] - without[200:222, 10:26]  # the lead "R": strokes much brighter
    assert (lead > 0.25).sum() >= 15
    assert (with_all[5:16, 120:150] > 0.95).sum() >= 10  # burned-in white text


def test_audit_calibration_on_phantoms_is_not_degenerate():
    """Held-out phantoms are not near-copies of training phantoms under the audit's own embedders, after
    prepare's crop: on phantom-4 the median dHash distance was 1 bit and pHash 6, and 100% of held-out
    images fell inside both floors (both switched off, dHash threshold 0).

    dHash's minimum is not asserted: a 64-bit dHash of one standard view can be equal for two distinct
    patients (here, under phantom-6, a held-out image with a cervical plate and a training image without one;
    seed 8 had such a pair under phantom-5 too), so its calibrated threshold depends on one pair. On the
    demo's own 64 held-out images (configs/demo.yaml) the nearest dHash distance is 1 bit at the least."""
    from cspine.images import to_unit
    from privacy.calibrate import calibrate
    from privacy.embedders import HashEmbedder, PixelEmbedder
    from privacy.search import nearest
    from training.ingest.resize import anatomy_centre, fit_square
    from training.ingest.split import assign_splits

    plans = plan_images(160, 160, seed=7)
    crops, cases = [], []
    for p in plans:
        img, pts, _, _ = make_image(7, p, 256, 200)
        crops.append(fit_square(to_unit(img), 64, anatomy_centre(pts))[0])
        cases.append(p.case_id)
    crops = np.stack(crops)
    split = assign_splits(cases, 0.2, 0)
    hold = np.array([split[c] == "holdout" for c in cases])
    got = {}
    for emb in (HashEmbedder(kind="phash", workers=1, floor=10.0), HashEmbedder(kind="dhash", workers=1, floor=6.0),
                PixelEmbedder(size=32, align_steps=4, floor=1 - 0.98)):
        q = emb.finalise(emb.compute(crops[hold]))
        b = emb.finalise_base(emb.compute_base(crops[~hold]))
        d = nearest(q, b, emb.metric, groups=emb.groups).astype(float)
        thr = calibrate(emb.name, d, 0.001, emb.floor, 0.01)
        got[emb.name] = (np.median(d), float(np.mean(d <= emb.floor)), thr)
    assert got["phash"][2].calibrated > 0 and got["pixel"][2].calibrated > 0
    assert got["pixel"][1] <= 0.01 and got["pixel"][2].floor is not None  # pixel floor stays on
    assert got["phash"][0] >= 10 and got["phash"][1] < 0.3
    assert got["dhash"][0] >= 4 and got["dhash"][1] < 0.75
