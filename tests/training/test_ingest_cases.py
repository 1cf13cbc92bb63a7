"""Patients and the split in `folder` mode: a case's side and id depend only on the patient, never on which
other patients are in the folder; one patient (a DICOM PatientID) is one case on one side; raw PatientIDs
never reach the outputs. End to end on real `prepare` runs over PNGs in patient folders and copies of
pydicom-data's CR radiographs given PatientIDs of our own; the rule itself by unit tests."""

from __future__ import annotations

import copy
import hashlib
import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from cspine.stages import load_config
from cspine.rundir import RunDir
from training.ingest.folder import case_id_for, folder_cases, patient_keys
from training.ingest.prepare import prepare
from training.ingest.split import assign_splits

REPO = Path(__file__).resolve().parents[2]
CASE_ID = re.compile(r"case-[0-9a-f]{16}")


# -- helpers: a folder whose true patient of every file is known ----------------------------------

def _png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 65535, (40, 48)).astype(np.uint16)).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


@pytest.fixture(scope="module")
def radiographs():
    """The two uncompressed CR radiographs of pydicom-data (a chest, a leg)."""
    out = []
    for name in ("RG1_UNCR.dcm", "RG3_UNCR.dcm"):
        p = get_testdata_file(name)
        assert p is not None, f"pydicom-data lacks {name}"
        ds = pydicom.dcmread(p)
        out.append((ds, ds.pixel_array))
    return out


def _dicom(path: Path, source: tuple[pydicom.Dataset, np.ndarray], patient_id: str, offset: int) -> None:
    """A 160x160 crop of a real CR radiograph (its own header and window) under ``patient_id``."""
    ds = copy.deepcopy(source[0])
    crop = np.ascontiguousarray(source[1][300 + offset:460 + offset, 400 + offset:560 + offset])
    ds.Rows, ds.Columns = crop.shape
    ds.PixelData = crop.tobytes()
    ds.PatientID = patient_id
    ds.PatientName = f"Doe^{patient_id}"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _cfg(run: Path, data_path: Path, **data):
    over = {"run_dir": str(run), "data.resolution": 32, "data.source": "folder", "data.path": str(data_path)}
    over.update({f"data.{k}": v for k, v in data.items()})
    return load_config(REPO / "configs" / "demo.yaml", over)


def _prepare(tmp: Path, name: str, data_path: Path, **data) -> tuple[pd.DataFrame, dict]:
    cfg = _cfg(tmp / name, data_path, **data)
    run = RunDir(cfg.resolved_run_dir)
    report = prepare(cfg, run, workers=1, progress=False)
    return pd.read_parquet(run.index), report | {"_run": run}


def _first_folder(root: Path, rg) -> dict[str, str]:
    """The first data set: rel path -> true patient. 6 PNG patient folders (one nested), a PNG at the top
    level, a 'scans' folder holding three DICOM patients, and a patient folder with a DICOM and a PNG."""
    truth = {}
    for k in range(6):
        folder = f"site1/p{k:02d}" if k == 5 else f"p{k:02d}"
        for j in range(1 + k % 2):
            rel = f"{folder}/img{j}.png"
            _png(root / rel, 100 * k + j)
            truth[rel] = folder
    _png(root / "loose.png", 999)
    truth["loose.png"] = "loose.png"
    for k, pid in enumerate(["MRN-1001", "MRN-1002", "MRN-1003"]):
        for j in range(2 if k == 0 else 1):
            rel = f"scans/{pid.lower()}_{j}.dcm"
            _dicom(root / rel, rg[(k + j) % 2], pid, 10 * k + j)
            truth[rel] = pid
    _dicom(root / "p_mixed" / "cr.dcm", rg[0], "MRN-2001", 30)
    _png(root / "p_mixed" / "export.png", 777)  # no PatientID: joins the folder's one PatientID
    truth.update({"p_mixed/cr.dcm": "MRN-2001", "p_mixed/export.png": "MRN-2001"})
    return truth


def _new_patients(root: Path, rg) -> dict[str, str]:
    """More patients: folders that sort before and after the first ones, new DICOM PatientIDs, one more
    top-level PNG, and a new image of an existing DICOM patient in a new folder."""
    truth = {}
    for k in range(8):
        folder = f"a_new/q{k:02d}" if k < 4 else f"z_new/q{k:02d}"
        rel = f"{folder}/img.png"
        _png(root / rel, 5000 + k)
        truth[rel] = folder
    _png(root / "aaa_loose.png", 6000)
    truth["aaa_loose.png"] = "aaa_loose.png"
    for k, pid in enumerate(["MRN-3001", "MRN-3002", "MRN-3003"]):
        rel = f"0_more_scans/{pid.lower()}.dcm"
        _dicom(root / rel, rg[k % 2], pid, 40 + k)
        truth[rel] = pid
    _dicom(root / "z_new" / "followup" / "cr.dcm", rg[1], "MRN-1002", 50)
    truth["z_new/followup/cr.dcm"] = "MRN-1002"
    return truth


def _check_one_case_per_patient(idx: pd.DataFrame, truth: dict[str, str]) -> None:
    by_source = idx.set_index("source")
    assert set(by_source.index) == set(truth)
    t = pd.DataFrame({"patient": pd.Series(truth), "case_id": by_source.case_id, "split": by_source.split})
    assert t.groupby("patient").case_id.nunique().max() == 1  # one patient, one case ...
    assert t.groupby("case_id").patient.nunique().max() == 1  # ... and one case, one patient
    assert t.groupby("patient").split.nunique().max() == 1
    holdout = set(idx.case_id[idx.split == "holdout"])
    train = set(idx.case_id[idx.split == "train"])
    assert holdout and train and not holdout & train


# -- end to end ---------------------------------------------------------------------------------

def test_adding_patients_moves_no_existing_case(tmp_path, radiographs):
    root = tmp_path / "in"
    truth = _first_folder(root, radiographs)
    idx1, rep1 = _prepare(tmp_path, "run1", root, holdout_fraction=0.3)
    _check_one_case_per_patient(idx1, truth)
    assert idx1.case_id.nunique() == 11 and rep1["counts"]["cases"] == 11
    assert rep1["cases_by_rule"] == {"patient_id": 4, "folder": 6, "file": 1, "patient_ids_in_several_folders": 0}

    truth2 = truth | _new_patients(root, radiographs)
    idx2, rep2 = _prepare(tmp_path, "run2", root, holdout_fraction=0.3)
    _check_one_case_per_patient(idx2, truth2)
    assert idx2.case_id.nunique() == 11 + 12
    assert rep2["cases_by_rule"]["patient_ids_in_several_folders"] == 1  # MRN-1002's follow-up
    old = idx1.set_index("source")[["case_id", "split"]]
    new = idx2.set_index("source").loc[old.index, ["case_id", "split"]]
    pd.testing.assert_frame_equal(old, new)  # every existing image keeps its case id and its side
    # the new image of an existing DICOM patient joins that patient's case and side
    followup = idx2.set_index("source").loc["z_new/followup/cr.dcm"]
    mrn1002 = old.loc["scans/mrn-1002_0.dcm"]
    assert (followup.case_id, followup.split) == (mrn1002.case_id, mrn1002.split)


def test_same_patient_id_in_two_folders_is_one_case_on_one_side(tmp_path, radiographs):
    root = tmp_path / "in"
    _dicom(root / "visit1" / "a.dcm", radiographs[0], "MRN-7", 0)
    _dicom(root / "visit2" / "b.dcm", radiographs[1], "MRN-7", 5)
    _png(root / "visit2" / "b_export.png", 1)
    for k in range(6):
        _png(root / f"other{k}" / "x.png", 10 + k)
    for frac in (0.2, 0.5, 0.8):  # whichever side it lands on, it lands there whole
        idx, _ = _prepare(tmp_path, f"run{frac}", root, holdout_fraction=frac)
        same = idx[idx.source.str.startswith(("visit1/", "visit2/"))]
        assert len(same) == 3 and same.case_id.nunique() == 1 and same.split.nunique() == 1
        assert idx.case_id.nunique() == 7


def test_case_ids_are_digests_and_no_patient_text_is_written(tmp_path, radiographs):
    root = tmp_path / "in"
    truth = _first_folder(root, radiographs)
    idx, rep = _prepare(tmp_path, "run", root)
    assert all(CASE_ID.fullmatch(c) for c in idx.case_id)
    blob = rep["_run"].index.read_bytes() + rep["_run"].ingest_report.read_bytes() + idx.to_json().encode()
    for pid in {p for p in truth.values() if p.startswith("MRN-")}:
        assert pid.encode() not in blob and f"Doe^{pid}".encode() not in blob
    folders = {p for p in truth.values() if not p.startswith("MRN-")}
    assert not any(f in c for c in idx.case_id for f in folders)
    # the id of a folder patient is the documented digest of its folder path
    assert idx.set_index("source").case_id["site1/p05/img0.png"] == (
        "case-" + hashlib.sha256(b"cspine-case-id\x00dir:site1/p05").hexdigest()[:16])


# -- the rule, unit by unit ---------------------------------------------------------------------

def test_patient_keys_follow_the_documented_order():
    rels = ["a/1.dcm", "b/2.dcm", "b/3.png", "c/4.dcm", "c/5.dcm", "c/6.png", "d/7.png", "8.png", "9.dcm", "e/f/10.png"]
    toks = ["T1", "T1", None, "T2", "T3", None, None, None, "T4", None]
    assert patient_keys(rels, toks) == [
        ("patient_id", "pt:T1"), ("patient_id", "pt:T1"),
        ("patient_id", "pt:T1"),  # a folder with one PatientID takes its files without one
        ("patient_id", "pt:T2"), ("patient_id", "pt:T3"),
        ("folder", "dir:c"),  # a folder with two PatientIDs is not a patient folder
        ("folder", "dir:d"), ("file", "file:8.png"), ("patient_id", "pt:T4"), ("folder", "dir:e/f"),
    ]
    ids, counts = folder_cases(rels, toks)
    assert len(set(ids)) == 8 and ids[0] == ids[1] == ids[2] == case_id_for("pt:T1")
    assert counts == {"patient_id": 4, "folder": 3, "file": 1, "patient_ids_in_several_folders": 1}


def test_a_file_keeps_its_case_whatever_else_is_there():
    base = (["p1/a.png", "p2/b.png", "top.png", "s/x.dcm"], [None, None, None, "T9"])
    more = (["0/z.png", "p1/a.png", "p0/c.png", "p2/b.png", "s2/y.dcm", "top.png", "s/x.dcm"],
            [None, None, None, None, "T8", None, "T9"])
    one = dict(zip(base[0], folder_cases(*base)[0]))
    two = dict(zip(more[0], folder_cases(*more)[0]))
    assert all(two[r] == one[r] for r in one)


def _score(case: str, seed: int) -> float:  # the docstring's formula, written out independently
    return int(hashlib.sha256(f"cspine-split\x00{seed}\x00{case}".encode()).hexdigest()[:16], 16) / 2**64


def test_split_follows_the_documented_rule():
    cases = [f"case-{i:03d}" for i in range(300)]
    s = assign_splits(cases, 0.25, seed=11)
    assert s == {c: ("holdout" if _score(c, 11) < 0.25 else "train") for c in cases}
    n, f = len(cases), 0.25
    share = sum(v == "holdout" for v in s.values()) / n
    assert abs(share - f) < 3 * math.sqrt(f * (1 - f) / n)
    # step 3: find small sets where the threshold leaves one side empty; the extreme score is forced
    empty_holdout = [c for c in cases if _score(c, 11) >= 0.05][:3]
    forced = assign_splits(empty_holdout, 0.05, seed=11)
    assert [c for c, v in forced.items() if v == "holdout"] == [min(empty_holdout, key=lambda c: _score(c, 11))]
    empty_train = [c for c in cases if _score(c, 11) < 0.95][:3]
    forced = assign_splits(empty_train, 0.95, seed=11)
    assert [c for c, v in forced.items() if v == "train"] == [max(empty_train, key=lambda c: _score(c, 11))]
    assert assign_splits(["only"], 0.5, seed=11) == {"only": "holdout" if _score("only", 11) < 0.5 else "train"}
