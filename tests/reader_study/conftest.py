"""Fixtures of the reader-study tests: a fake run with three synthetic checkpoint groups, a built study,
and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from cspine.stages import load_config
from cspine.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]
GROUPS = ("step-100", "step-200", "final")


def three_group_run(run: RunDir) -> RunDir:
    """fake_run's samples have checkpoint "final" only: copy the rows (and files) into step-100 and step-200."""
    s = pd.read_parquet(run.samples_table)
    parts = [s]
    for g in GROUPS[:2]:
        c = s.copy()
        c["checkpoint"] = g
        c["image_id"] = [f"{g}-{i:06d}" for i in range(len(c))]
        for old, new in zip(s["file"], c["image_id"]):
            shutil.copy(run.samples / old, run.sample_images / f"{new}.png")
        c["file"] = [f"images/{i}.png" for i in c["image_id"]]
        parts.append(c)
    pd.concat(parts, ignore_index=True).to_parquet(run.samples_table, index=False)
    return run


def study_config(run: RunDir, **study):
    """The demo config pointed at ``run`` with a small study (10 quartets, 96 px, 3 raters) unless overridden."""
    over = {"run_dir": str(run.root), "study.trials": 10, "study.image_size": 96, "study.raters": 3, "study.bootstrap": 200}
    over |= {f"study.{k}": v for k, v in study.items()}
    return load_config(REPO / "configs" / "demo.yaml", over)


@pytest.fixture()
def study_run(fake_run) -> RunDir:
    return three_group_run(fake_run)


@pytest.fixture()
def built_study(study_run):
    """(cfg, run, StudyPaths) of a built 10-trial quartet study over three checkpoint groups."""
    from reader_study.build import StudyPaths, build_study

    cfg = study_config(study_run)
    build_study(cfg, study_run)
    return cfg, study_run, StudyPaths(study_run)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(built_study):
    """A real uvicorn server of the built study on a free loopback port; yields (base_url, paths, admin_token)."""
    import uvicorn

    from reader_study.build import admin_token
    from reader_study.server import create_app, uvicorn_config

    _, _, paths = built_study
    token = admin_token(paths)
    port = free_port()
    # `cspine study serve`'s settings, but logging left to pytest (caplog sees every record)
    config = uvicorn_config(create_app(paths.root, token), "127.0.0.1", port, logging_config=None)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 15
    while not srv.started:
        if time.time() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", paths, token
    srv.should_exit = True
    thread.join(timeout=10)
