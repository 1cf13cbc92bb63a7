"""`prepare` end to end on small real folders: index contract, pixel cache, split, duplicates, bad files,
keypoints through the crop and resize, no DICOM text in the outputs, skip on re-run, and the CLI."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from cspine.stages import load_config
from cspine.rundir import INDEX_COLUMNS, RunDir
from training.ingest.errors import IngestError
from cspine.labels import KEYPOINT_LABELS
from training.ingest.prepare import prepare
from training.ingest.resize import anatomy_centre, fit_square, plan_fit
from training.ingest.split import assign_splits

REPO = Path(__file__).resolve().parents[2]


def _cfg(tmp_path: Path, **data):
    over = {"run_dir": str(tmp_path / "run"), "data.resolution": 32}
    over.update({f"data.{k}": v for k, v in data.items()})
    return load_config(REPO / "configs" / "demo.yaml", over)


def _png16(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def _blob(seed: int, h: int = 48, w: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 65535, (h, w)).astype(np.uint16)


# -- split ------------------------------------------------------------------------------------

def test_split_is_deterministic_by_case_and_near_the_fraction():
    cases = [f"{1000 + i}" for i in range(400)]
    a = assign_splits(cases, 0.2, seed=3)
    b = assign_splits(list(reversed(cases)) + cases[:10], 0.2, seed=3)
    assert a == b
    share = sum(v == "holdout" for v in a.values()) / len(cases)
    assert 0.13 < share < 0.27
    assert assign_splits(cases, 0.2, seed=4) != a  # the seed matters
    # adding cases never moves an existing one
    more = assign_splits(cases + [f"x{i}" for i in range(50)], 0.2, seed=3)
    assert all(more[c] == a[c] for c in cases)


def test_split_tiny_run_gets_both_sides():
    s = assign_splits(["a", "b"], 0.1, seed=0)
    assert sorted(s.values()) == ["holdout", "train"]
    assert set(assign_splits(["a", "b", "c"], 0.0, seed=0).values()) == {"train"}


# -- resize + keypoints -----------------------------------------------------------------------

@pytest.mark.parametrize("h,w,centre", [(300, 180, None), (120, 330, None), (64, 64, None), (300, 180, (90.0, 60.0)),
                                         (120, 330, (300.0, 50.0))])
def test_crop_keeps_scale_and_maps_points(h, w, centre):
    img = np.full((h, w), 0.2, np.float32)
    y, x = np.mgrid[0:h, 0:w]
    side = min(h, w)
    # the crop: centred on `centre` (or the image centre) along the long side, inside the image
    cx0, cy0 = centre or ((w - 1) / 2, (h - 1) / 2)
    x0 = 0 if w == side else int(np.clip(round(cx0 + 0.5 - side / 2), 0, w - side))
    y0 = 0 if h == side else int(np.clip(round(cy0 + 0.5 - side / 2), 0, h - side))
    pts = [(x0 + 0.7 * side, y0 + 0.25 * side), (x0 + 0.2 * side, y0 + 0.8 * side)]
    for px, py in pts:
        img += 0.7 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * (max(h, w) / 40) ** 2))
    cached, fit = fit_square(np.clip(img, 0, 1), 64, centre)
    assert cached.shape == (64, 64) and cached.dtype == np.uint16
    assert (fit.crop_x, fit.crop_y, fit.side) == (x0, y0, side)
    for px, py in pts:
        assert fit.inside(px, py)
        cx, cy = fit.point(px, py)
        win = cached[int(cy) - 3:int(cy) + 4, int(cx) - 3:int(cx) + 4].astype(float)
        wy, wx = np.unravel_index(np.argmax(win), win.shape)
        assert abs(int(cx) - 3 + wx - cx) <= 1.0 and abs(int(cy) - 3 + wy - cy) <= 1.0
    # nothing is padded: no pixel of the cache is darker than the image's background
    assert cached.min() >= 0.19 * 65535
    # and the crop is the image itself, resized: compare with an independent Lanczos resize of the crop
    crop = np.clip(img, 0, 1)[y0:y0 + side, x0:x0 + side]
    ref = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize((64, 64), Image.Resampling.LANCZOS,
                                                                              reducing_gap=3.0))
    assert np.abs(cached / 65535.0 - np.clip(ref, 0, 1)).max() < 1e-4


def test_plan_fit_centres_the_crop_on_the_anatomy_and_stays_inside():
    f = plan_fit(200, 400, 64)
    assert (f.side, f.crop_x, f.crop_y) == (200, 0, 100)
    assert plan_fit(200, 400, 64, centre=(50.0, 10.0)).crop_y == 0  # clamped at the top
    assert plan_fit(200, 400, 64, centre=(50.0, 399.0)).crop_y == 200  # and at the bottom
    assert plan_fit(200, 400, 64, centre=(50.0, 149.5)).crop_y == 50
    assert anatomy_centre({"a": (10.0, 20.0), "b": (30.0, 100.0)}) == (20.0, 60.0)
    assert anatomy_centre(None) is None


def _csxa_folder(root: Path, images: dict[str, np.ndarray], points: dict[str, dict], json_size=None, sheet=True):
    (root / "datasets-PNG").mkdir(parents=True)
    (root / "datasets-JSON").mkdir()
    for name, arr in images.items():
        (root / "datasets-PNG" / f"{name}.png").write_bytes(_png16(arr))
        if name in points:
            h, w = json_size or arr.shape
            ann = {"version": "5.2.1", "flags": {}, "imageData": None, "imagePath": f"{name}.png",
                   "imageHeight": h, "imageWidth": w,
                   "shapes": [{"label": k, "points": [list(v)], "shape_type": "point"} for k, v in points[name].items()]}
            (root / "datasets-JSON" / f"{name}.json").write_text(json.dumps(ann))
    if sheet:
        pd.DataFrame({"Image": list(images), "Gender": ["Male", "Female"] * (len(images) // 2) + ["Male"] * (len(images) % 2),
                      "Age": [40 + i for i in range(len(images))],
                      "Curvature": [(i % 5) + 1 for i in range(len(images))]}).to_csv(root / "meta.csv", index=False)


def test_csxa_keypoints_land_on_their_dot_after_crop_and_resize(tmp_path):
    h, w = 300, 180
    y, x = np.mgrid[0:h, 0:w]
    kp = {label: (20 + (i % 5) * 30.0, 15 + i * 12.0) for i, label in enumerate(KEYPOINT_LABELS)}
    dot = kp["C5 top right"]
    img = 2000 + 60000 * np.exp(-((x - dot[0]) ** 2 + (y - dot[1]) ** 2) / (2 * 4.0**2))
    other = (np.full((h, w), 1000) + np.random.default_rng(0).integers(0, 50, (h, w))).astype(np.uint16)
    # the JSON claims a size twice as big: the loader must use the PNG's size
    _csxa_folder(tmp_path / "csxa", {"100101": img.astype(np.uint16), "100201": other},
                 {"100101": kp, "100201": kp}, json_size=(600, 360))
    cfg = _cfg(tmp_path, source="csxa", path=str(tmp_path / "csxa"), resolution=64)
    run = RunDir(cfg.resolved_run_dir)
    report = prepare(cfg, run, workers=1, progress=False)
    assert report["json_size_mismatch"] == 2
    # the keypoints span y 15..279 of a 300 x 180 image: the 180 px crop centred on them (y 57..236) leaves
    # the top and bottom ones out, which the report says for both annotated images
    assert report["warnings_by_kind"]["keypoints_outside_crop"] == 2
    idx = pd.read_parquet(run.index)
    px = np.load(run.pixels)
    row = idx[idx.image_id == "100101"].iloc[0]
    labels = json.loads(row.labels)
    assert list(labels["keypoints"]) == list(KEYPOINT_LABELS)
    cx, cy = labels["keypoints"]["C5 top right"]
    img64 = px[row.cache_row].astype(float)
    my, mx = np.unravel_index(np.argmax(img64), img64.shape)
    assert abs(mx - cx) <= 1.0 and abs(my - cy) <= 1.0, ((mx, my), (cx, cy))
    assert labels["curvature"] == 1 and labels["sex"] == "M" and labels["age"] == 40
    assert (row.width, row.height) == (w, h)


# -- a mixed folder: every path, bad files, duplicates, no DICOM text --------------------------

@pytest.fixture()
def mixed_folder(tmp_path):
    root = tmp_path / "in"
    (root / "patA").mkdir(parents=True)
    (root / "patB").mkdir()
    shutil.copy(get_testdata_file("RG1_UNCR.dcm"), root / "patA" / "chest.dcm")
    shutil.copy(get_testdata_file("RG1_J2KR.dcm"), root / "patA" / "chest_j2k.dcm")
    shutil.copy(get_testdata_file("RG3_J2KR.dcm"), root / "leg")  # DICOM without an extension
    (root / "patB" / "a16.png").write_bytes(_png16(_blob(1)))
    (root / "patB" / "copy_of_a16.png").write_bytes(_png16(_blob(1)))  # exact duplicate
    buf = io.BytesIO()
    Image.fromarray(np.stack([(_blob(2) >> 8).astype(np.uint8)] * 3, -1)).save(buf, format="JPEG")
    (root / "c_rgb.jpg").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray((_blob(3) >> 8).astype(np.uint8)).save(buf, format="PNG")
    (root / "d8.png").write_bytes(buf.getvalue())
    (root / "empty.png").write_bytes(b"")
    (root / "renamed.png").write_bytes((root / "c_rgb.jpg").read_bytes())
    (root / "notes.txt").write_text("ignored")
    return root


def test_prepare_folder_of_mixed_files(mixed_folder, tmp_path):
    cfg = _cfg(tmp_path, source="folder", path=str(mixed_folder), max_bad_fraction=0.5, holdout_fraction=0.3)
    run = RunDir(cfg.resolved_run_dir)
    report = prepare(cfg, run, workers=1, progress=False)
    idx = pd.read_parquet(run.index)
    px = np.load(run.pixels, mmap_mode="r")
    assert tuple(idx.columns) == INDEX_COLUMNS
    assert px.dtype == np.uint16 and px.shape == (len(idx), 32, 32)
    assert sorted(idx.cache_row) == list(range(len(idx)))
    assert set(idx.split) <= {"train", "holdout"}
    # chest.dcm and chest_j2k.dcm differ in bytes (so both kept) but decode identically
    a = idx[idx.source == "patA/chest.dcm"].iloc[0]
    b = idx[idx.source == "patA/chest_j2k.dcm"].iloc[0]
    assert np.array_equal(px[a.cache_row], px[b.cache_row])
    assert a.case_id == b.case_id  # same patient folder
    assert (a.width, a.height) == (1841, 1955)
    # duplicates kept once and reported
    assert report["counts"]["duplicates"] == 1
    dup = report["duplicates"][0]
    assert {dup["file"], dup["duplicate_of"]} == {"patB/a16.png", "patB/copy_of_a16.png"}
    assert idx.sha256.is_unique
    # bad files reported with reasons, text file ignored
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert reasons == {"empty.png": "empty", "renamed.png": "wrong_extension"}
    assert report["ignored"] == ["notes.txt"]
    assert report["counts"]["ok"] == len(idx) == 6
    # no case on both sides
    assert idx.groupby("case_id").split.nunique().max() == 1
    # no DICOM metadata text anywhere in the index or the labels
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    blob = run.index.read_bytes() + idx.to_json().encode()
    for key in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "InstitutionName", "AccessionNumber",
                "StudyInstanceUID", "ReferringPhysicianName"):
        value = str(ds.get(key))
        assert value.encode() not in blob, key
    assert all(c.startswith("case-") for c in idx.case_id)


def test_prepare_skips_when_up_to_date_and_redoes_on_change(mixed_folder, tmp_path):
    """Up to date is the stage table's provenance record (data/record.json), nothing of prepare's own."""
    import argparse

    from cspine.stages import by_name, execute

    opts = argparse.Namespace(workers=1, no_progress=True)
    cfg = _cfg(tmp_path, source="folder", path=str(mixed_folder), max_bad_fraction=0.5)
    run = RunDir(cfg.resolved_run_dir)
    assert execute(by_name("prepare"), cfg, run, opts).ran
    mtime = run.pixels.stat().st_mtime_ns
    again = execute(by_name("prepare"), cfg, run, opts)
    assert not again.ran and run.pixels.stat().st_mtime_ns == mtime
    cfg48 = _cfg(tmp_path, source="folder", path=str(mixed_folder), max_bad_fraction=0.5, resolution=48)
    redo = execute(by_name("prepare"), cfg48, run, opts)
    assert redo.ran and "data.resolution" in redo.why and np.load(run.pixels).shape[1:] == (48, 48)
    n = len(pd.read_parquet(run.index))
    (mixed_folder / "extra").mkdir()
    (mixed_folder / "extra" / "new.png").write_bytes(b"")
    grown = execute(by_name("prepare"), cfg48, run, opts)  # a new (bad, empty) file: the source changed
    assert grown.ran and "source" in grown.why and len(pd.read_parquet(run.index)) == n


def test_prepare_fails_past_max_bad_fraction_naming_the_report(mixed_folder, tmp_path):
    cfg = _cfg(tmp_path, source="folder", path=str(mixed_folder), max_bad_fraction=0.1)
    run = RunDir(cfg.resolved_run_dir)
    with pytest.raises(IngestError) as info:
        prepare(cfg, run, workers=1, progress=False)
    msg = str(info.value)
    assert "ingest_report.json" in msg and "data.max_bad_fraction" in msg
    rep = json.loads(run.ingest_report.read_text())
    assert rep["status"] == "failed" and rep["counts"]["skipped"] == 2
    assert not run.index.exists() and not run.pixels.exists()


def test_prepare_parallel_equals_serial(mixed_folder, tmp_path):
    # enough files for the process pool to be used
    for i in range(40):
        (mixed_folder / f"extra{i:02d}.png").write_bytes(_png16(_blob(100 + i, 30, 50)))
    c1 = _cfg(tmp_path / "s", source="folder", path=str(mixed_folder), max_bad_fraction=0.5)
    c2 = _cfg(tmp_path / "p", source="folder", path=str(mixed_folder), max_bad_fraction=0.5)
    r1, r2 = RunDir(c1.resolved_run_dir), RunDir(c2.resolved_run_dir)
    prepare(c1, r1, workers=1, progress=False)
    prepare(c2, r2, workers=2, progress=False)
    assert np.array_equal(np.load(r1.pixels), np.load(r2.pixels))
    pd.testing.assert_frame_equal(pd.read_parquet(r1.index), pd.read_parquet(r2.index))


def test_missing_folder_is_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path, source="phantom", path=str(tmp_path / "nowhere"))
    with pytest.raises(IngestError, match="demo-data"):
        prepare(cfg, RunDir(cfg.resolved_run_dir), workers=1, progress=False)


def test_csxa_unusable_sheet_and_label_spelling(tmp_path):
    img = _blob(7, 60, 50)
    kp = {label.upper(): (10.0 + i, 20.0 + i) for i, label in enumerate(KEYPOINT_LABELS)}  # case differs
    _csxa_folder(tmp_path / "csxa", {"200101": img, "200102": _blob(8, 60, 50), "300101": _blob(9, 60, 50)},
                 {"200101": kp}, sheet=False)
    pd.DataFrame({"Something": [1, 2], "Else": [3, 4]}).to_csv(tmp_path / "csxa" / "meta.csv", index=False)
    cfg = _cfg(tmp_path, source="csxa", path=str(tmp_path / "csxa"))
    run = RunDir(cfg.resolved_run_dir)
    report = prepare(cfg, run, workers=1, progress=False)
    assert "no image column" in report["metadata_sheet_problem"] and "meta.csv" in report["metadata_sheet_problem"]
    assert report["warnings_by_kind"]["no_annotation"] == 2
    idx = pd.read_parquet(run.index).set_index("image_id")
    labels = json.loads(idx.loc["200101", "labels"])
    assert list(labels["keypoints"]) == list(KEYPOINT_LABELS) and "curvature" not in labels
    assert json.loads(idx.loc["200102", "labels"]) == {}
    # two images of case 2001 on the same side
    assert idx.loc["200101", "case_id"] == idx.loc["200102", "case_id"] == "2001"
    assert idx.loc["200101", "split"] == idx.loc["200102", "split"]
