"""The rater web app over real HTTP (uvicorn on a free loopback port): answers stored exactly once, blinded
responses, the server never needs the answer key, the admin view and CSV export behind the token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from reader_study import store


def call(base, path, body=None, code=None, headers=None):
    h = dict(headers or {})
    if code:
        h["X-Access-Code"] = code
    data = None
    if body is not None:
        h["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers=h, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, dict(r.headers), r.read()


def test_api_flow_double_submit_and_blinding(server):
    base, paths, token = server
    paths.answer_key.rename(paths.root / "key-moved-away.json")  # the server must not need it
    with store.connect(paths.db) as conn:
        rater = store.raters(conn)[0]
    with pytest.raises(urllib.error.HTTPError) as err:
        call(base, "/api/login", {"code": "NOPE-NOPE"})
    assert err.value.code == 401
    _, _, body = call(base, "/api/login", {"code": rater.code.lower().replace("-", "")})  # forgiving about case/dash
    st = json.loads(body)
    assert st["done"] == 0 and st["total"] == 10 and st["step"] == 0 and len(st["images"]) == 4
    assert set(st) == {"rater", "total", "done", "alternatives", "likert_points", "step", "images"}
    # images: identical headers and size whatever they show
    heads = []
    for src in st["images"]:
        status, h, b = call(base, "/" + src)
        heads.append((sorted(h.items()), len(b)))
    assert len(set(map(str, heads))) == 1
    # answer, then a double submit of the same step: stored once
    ans = {"step": 0, "choice": 2, "scores": [1, 2, 3, 4], "elapsed_ms": 1200}
    _, _, b1 = call(base, "/api/answer", ans, code=rater.code)
    _, _, b2 = call(base, "/api/answer", ans | {"choice": 0}, code=rater.code)
    assert json.loads(b1)["stored"] is True and json.loads(b2)["stored"] is False
    assert json.loads(b2)["step"] == 1
    with pytest.raises(urllib.error.HTTPError) as err:  # skipping ahead is refused
        call(base, "/api/answer", ans | {"step": 5}, code=rater.code)
    assert err.value.code == 409
    with pytest.raises(urllib.error.HTTPError) as err:  # out-of-scale score is refused
        call(base, "/api/answer", ans | {"step": 1, "scores": [1, 2, 3, 9]}, code=rater.code)
    assert err.value.code == 409
    with store.connect(paths.db) as conn:
        rows = store.responses(conn)
    assert len(rows) == 1 and rows[0]["choice"] == 2 and rows[0]["scores"] == [1, 2, 3, 4]
    assert rows[0]["trial"] == rater.trial_order[0]
    # unknown and path-like image names are not served
    for bad in ("/img/../study.json", "/img/" + "0" * 24 + ".png", "/img/answer_key.json"):
        with pytest.raises(urllib.error.HTTPError):
            call(base, bad)


def test_admin_view_and_csv_need_the_token(server):
    base, paths, token = server
    with store.connect(paths.db) as conn:
        rater = store.raters(conn)[1]
    call(base, "/api/answer", {"step": 0, "choice": 1, "scores": [4, 3, 2, 1]}, code=rater.code)
    for path in ("/admin", "/admin/export.csv", "/admin/progress.json"):
        with pytest.raises(urllib.error.HTTPError) as err:
            call(base, path)
        assert err.value.code == 403
        with pytest.raises(urllib.error.HTTPError):
            call(base, path + "?token=wrong")
    _, _, page = call(base, f"/admin?token={token}")
    assert b"R02" in page and b"1 / 10" in page
    _, h, csv_bytes = call(base, "/admin/export.csv", headers={"X-Admin-Token": token})
    lines = csv_bytes.decode().strip().splitlines()
    assert lines[0].startswith("rater_id,simulated,step,trial,choice_position,score_1")
    assert len(lines) == 2 and lines[1].startswith("R02,0,0,") and ",2,4,3,2,1," in lines[1]
    prog = json.loads(call(base, "/admin/progress.json", headers={"X-Admin-Token": token})[2])
    assert [r["done"] for r in prog["raters"]] == [0, 1, 0]


def _wait_up(base, proc, seconds=30):
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read().decode(errors='replace')}")
        try:
            call(base, "/")
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not come up")


def test_answers_survive_killing_the_server(built_study):
    """`cspine study serve` killed with SIGKILL after acknowledging answers: a restarted server resumes them."""
    import os
    import signal
    import subprocess
    import sys

    from tests.reader_study.conftest import REPO, free_port

    cfg, run, paths = built_study
    with store.connect(paths.db) as conn:
        rater = store.raters(conn)[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "release.cli", "study", "serve", "--config", str(REPO / "configs" / "demo.yaml"),
           "--run-dir", str(run.root), "--port", str(port)]
    for attempt in range(2):
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            _wait_up(base, proc)
            st = json.loads(call(base, "/api/state", code=rater.code)[2])
            assert st["done"] == 3 * attempt  # what was acknowledged before the kill is there
            for step in range(st["done"], st["done"] + 3):
                call(base, "/api/answer", {"step": step, "choice": 0, "scores": [1, 2, 3, 4]}, code=rater.code)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with store.connect(paths.db) as conn:
        assert store.answered(conn, rater.rater_id) == 6
