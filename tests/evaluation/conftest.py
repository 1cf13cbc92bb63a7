"""Shared fixtures of the evaluation tests: one phantom run from the real chain (`cspine demo-data` +
`cspine prepare`) for the fidelity and utility measurements, and a one-thread, private-cache setting."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cspine.cli import main as cspine
from cspine.rundir import RunDir
from cspine.labels import KEYPOINT_LABELS
from tests.fakerun import REPO, write_records

#: 400 films of 256 x 200 prepared at 32 px: phantom-5's pose and acquisition variation needs that many for
#: the small curvature classifier to learn the classes (240 films of 128 x 100 left it near chance).
PHANTOM = {"data.phantom.count": 400, "data.phantom.cases": 400, "data.phantom.height": 256,
           "data.phantom.width": 200, "data.resolution": 32, "data.holdout_fraction": 0.35}


@pytest.fixture(scope="session")
def phantom_run(tmp_path_factory) -> RunDir:
    """A prepared phantom run (data/ only), made once per session."""
    root = tmp_path_factory.mktemp("phantom-eval")
    args = ["--config", str(REPO / "configs" / "demo.yaml"), "--run-dir", str(root / "run"),
            "--set", f"data.path={root / 'raw'}", "--workers", "1", "--no-progress"]
    for k, v in PHANTOM.items():
        args += ["--set", f"{k}={v}"]
    assert cspine(["demo-data", *args]) == 0
    assert cspine(["prepare", *args]) == 0
    return RunDir(root / "run")


def ladder_json(shift: float) -> str:
    """23 keypoints (JSON) of a straight, evenly spaced column, shifted right by ``shift`` px."""
    pts, y = {"C2 centroid": [32 + shift, 8.0], "C2 bottom left": [28 + shift, 12.0],
              "C2 bottom right": [36 + shift, 12.0]}, 14.0
    for v in range(3, 8):
        pts.update({f"C{v} top left": [28 + shift, y], f"C{v} top right": [36 + shift, y],
                    f"C{v} bottom left": [28 + shift, y + 6], f"C{v} bottom right": [36 + shift, y + 6]})
        y += 8
    assert set(pts) == set(KEYPOINT_LABELS)
    return json.dumps(pts)


def make_conditional(run: RunDir, extra_labels=lambda i: {}) -> None:
    """Turn the fake run conditional by hand: all but two samples get a class and keypoints, every real image
    keypoints (and ``extra_labels(i)``); the stage records then take the hand edits as the run's outputs."""
    from cspine.stages import load_config

    table = pd.read_parquet(run.samples_table)
    n = len(table)
    table["curvature"] = pd.array([None, None] + [i % 5 + 1 for i in range(n - 2)], dtype="Int64")
    table["keypoints"] = [None, None] + [ladder_json(i % 3) for i in range(n - 2)]
    table.to_parquet(run.samples_table, index=False)
    index = pd.read_parquet(run.index)
    index["labels"] = [json.dumps({**json.loads(s), "keypoints": json.loads(ladder_json(i % 4)), **extra_labels(i)})
                       for i, s in enumerate(index["labels"])]
    index.to_parquet(run.index, index=False)
    write_records(load_config(run.config), run, ("prepare", "train", "sample"))
