"""Shared pytest fixtures. ``fake_run`` is a contract-following run directory (see tests/fakerun.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

# Two cores here: keep torch from oversubscribing when several test processes run.
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def _fake_run_template(tmp_path_factory) -> Path:
    from tests.fakerun import make_fake_run

    return make_fake_run(tmp_path_factory.mktemp("fake-run-template") / "run").root


@pytest.fixture()
def fake_run(_fake_run_template, tmp_path):
    """A fresh copy of a small contract-following run directory (data/, model/pipeline, samples/)."""
    from cspine.rundir import RunDir

    import yaml

    dst = tmp_path / "run"
    shutil.copytree(_fake_run_template, dst)
    config = yaml.safe_load((dst / "config.yaml").read_text())
    config["run_dir"] = str(dst)  # the copy is its own run: `--config RUN/config.yaml` must point at it
    (dst / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return RunDir(dst)


@pytest.fixture()
def one_thread(monkeypatch, tmp_path):
    """torch on one thread and a private feature cache for the test."""
    monkeypatch.setenv("CSPINE_CACHE", str(tmp_path / "feature-cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
