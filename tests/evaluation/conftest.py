"""Shared fixtures of the evaluation tests: one phantom run from the real chain (`cspine demo-data` +
`cspine prepare`) for the fidelity and utility measurements, and a one-thread, private-cache setting."""

from __future__ import annotations

import pytest
import torch

from cspine.cli import main as cspine
from cspine.rundir import RunDir
from tests.fakerun import REPO

#: 400 films of 256 x 200 prepared at 32 px: phantom-5's pose and acquisition variation needs that many for
#: the small curvature classifier to learn the classes (240 films of 128 x 100 left it near chance).
PHANTOM = {"data.phantom.count": 400, "data.phantom.cases": 400, "data.phantom.height": 256,
           "data.phantom.width": 200, "data.resolution": 32, "data.holdout_fraction": 0.35}


@pytest.fixture()
def one_thread(monkeypatch, tmp_path):
    """torch on one thread and a private feature cache for the test."""
    monkeypatch.setenv("CSPINE_CACHE", str(tmp_path / "feature-cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
