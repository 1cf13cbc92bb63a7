"""The run's label readers (cspine.rundata: labels_cell, curvature_value, keypoint_array), shared by training's
shape model, the evaluation and the reader study: one strictness everywhere, errors that name the row.

keypoint_array and curvature_value are also exercised in tests/evaluation/test_fidelity_scores.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cspine.labels import KEYPOINT_LABELS
from cspine.rundata import RunDataError, curvature_value, labels_cell


def test_labels_cell_reads_objects_and_empty_cells():
    assert labels_cell(json.dumps({"curvature": 2, "sex": "F"}), "w") == {"curvature": 2, "sex": "F"}
    for empty in (None, "", b"", float("nan")):
        assert labels_cell(empty, "w") == {}


@pytest.mark.parametrize("raw, problem", [("{broken", "not JSON"), ("[1, 2]", "not a JSON object"), ("3", "not a JSON object")])
def test_labels_cell_names_the_row_of_a_bad_cell(raw, problem):
    with pytest.raises(RunDataError, match=rf"data/index.parquet \(image a7\): labels are {problem}"):
        labels_cell(raw, "data/index.parquet (image a7)")


def test_curvature_rejects_booleans_and_fractions():
    for bad in (True, 2.5, "x", 0, 6):
        with pytest.raises(RunDataError, match="curvature"):
            curvature_value(bad, "w")


def _index(labels: list) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(len(labels))], "labels": labels})


def test_training_conditions_read_through_the_shared_readers():
    from cspine.generation.shape_model import train_conditions

    pts = {name: [float(k), float(2 * k)] for k, name in enumerate(KEYPOINT_LABELS)}
    partial = {name: xy for name, xy in list(pts.items())[:5]}
    index = _index([json.dumps({"curvature": 3, "keypoints": pts}), json.dumps({"keypoints": partial}), ""])
    classes, points = train_conditions(index, ["i0", "i1", "i2"])
    assert classes.tolist() == [3, 0, 0]
    assert np.array_equal(points[0], np.array(list(pts.values()), np.float32))
    assert np.isnan(points[1]).all() and np.isnan(points[2]).all()  # an incomplete set counts as none


def test_training_refuses_a_damaged_index_instead_of_training_it_unlabelled():
    from cspine.generation.shape_model import train_conditions

    with pytest.raises(RunDataError, match=r"runs/x/data/index.parquet \(image i1\): curvature 7"):
        train_conditions(_index(["", json.dumps({"curvature": 7})]), ["i0", "i1"], "runs/x/data/index.parquet")
    with pytest.raises(RunDataError, match=r"\(image i0\): labels are not JSON"):
        train_conditions(_index(["{oops"]), ["i0"])
