"""The rater web app over real HTTP (uvicorn on a free loopback port): answers stored exactly once, blinded
responses, the server never needs the answer key, images only for a rater's code and never cached, the
admin view and CSV export behind a POST sign-in, and the admin token in no URL, printed line or log line."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.parse
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


def raw(base, method, path, body=None, headers=None):
    """One request sent exactly as given (no redirect following, no path normalisation): (status, headers, body)."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def sign_in(base, token, **headers):
    """POST the token as an HTML form would; returns (status, headers, body) of the answer."""
    body = urllib.parse.urlencode({"token": token})
    return raw(base, "POST", "/admin/login", body, {"Content-Type": "application/x-www-form-urlencoded"} | headers)


def cookie_of(headers) -> tuple[str, list[str]]:
    """The admin cookie's 'name=value' and its lower-cased attributes, from a Set-Cookie answer."""
    (set_cookie,) = headers.get_all("Set-Cookie")
    pair, *attrs = [a.strip() for a in set_cookie.split(";")]
    assert pair.startswith("cspine_admin=")
    return pair, [a.lower() for a in attrs]


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
        status, h, b = call(base, "/" + src, code=rater.code)
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


def test_images_need_a_rater_code_and_are_not_cached(server):
    base, paths, token = server
    study = json.loads((paths.root / "study.json").read_text())
    name = study["trials"][0]["images"][0] + ".png"
    with store.connect(paths.db) as conn:
        rater = store.raters(conn)[0]
    assert raw(base, "GET", "/img/" + name)[0] == 401
    assert raw(base, "GET", "/img/" + name, headers={"X-Access-Code": "NOPE-NOPE"})[0] == 401
    assert raw(base, "GET", "/img/" + name, headers={"Authorization": f"Bearer {token}"})[0] == 401  # admin != rater
    assert raw(base, "GET", f"/img/{name}?code={rater.code}")[0] == 401  # a code in the URL does not count
    status, h, body = raw(base, "GET", "/img/" + name, headers={"X-Access-Code": rater.code})
    assert status == 200 and body == (paths.root / "assets" / name).read_bytes()
    assert h["Cache-Control"] == "no-store" and h["Pragma"] == "no-cache" and h["Content-Type"] == "image/png"
    # with a valid code: only the study's asset names; nothing path-like reaches the file system
    (paths.root / "assets" / ("f" * 24 + ".png")).write_bytes(body)  # a file in assets/ that no trial lists
    for bad in ("/img/../study.json", "/img/..%2fstudy.json", "/img/%2e%2e%2fstudy.json", "/img/..%2F..%2Fetc%2Fpasswd",
                "/img/" + "0" * 24 + ".png", "/img/" + "f" * 24 + ".png", "/img/answer_key.json", "/img/" + name.upper(),
                "/img/" + name + "%00.json", "/img//" + name):
        status, _, body = raw(base, "GET", bad, headers={"X-Access-Code": rater.code})
        assert status == 404, bad
        assert b"trials" not in body


def test_admin_sign_in_by_post_sets_a_session_cookie(server):
    base, paths, token = server
    with store.connect(paths.db) as conn:
        rater = store.raters(conn)[1]
    call(base, "/api/answer", {"step": 0, "choice": 1, "scores": [4, 3, 2, 1]}, code=rater.code)
    for path in ("/admin", "/admin/export.csv", "/admin/progress.json"):
        assert raw(base, "GET", path)[0] == 401
        assert raw(base, "GET", f"{path}?token={token}")[0] == 401  # the token in a URL is not accepted
        assert raw(base, "GET", path, headers={"Cookie": f"cspine_admin={token}"})[0] == 401  # nor as the cookie
        assert raw(base, "GET", path, headers={"Authorization": "Bearer wrong"})[0] == 401
    status, _, page = raw(base, "GET", "/admin")
    assert b'method="post"' in page and b'action="admin/login"' in page and b"R02" not in page  # the sign-in form
    wrong = sign_in(base, token[:-1] + ("x" if token[-1] != "x" else "y"))
    assert wrong[0] == 403 and not wrong[1].get_all("Set-Cookie") and b'action="login"' in wrong[2]  # form again
    assert raw(base, "POST", "/admin/login", json.dumps({"token": "wrong"}), {"Content-Type": "application/json"})[0] == 403

    status, h, _ = sign_in(base, token)
    assert status == 303 and h["Location"] == "../admin"
    pair, attrs = cookie_of(h)
    assert "httponly" in attrs and "samesite=strict" in attrs and "secure" not in attrs  # plain HTTP: not Secure
    assert token not in pair and token not in str(h)
    status, _, page = raw(base, "GET", "/admin", headers={"Cookie": pair})
    assert status == 200 and b"R02" in page and b"1 / 10" in page and token.encode() not in page
    assert b'href="admin/export.csv"' in page
    status, h, csv_bytes = raw(base, "GET", "/admin/export.csv", headers={"Cookie": pair})
    lines = csv_bytes.decode().strip().splitlines()
    assert status == 200 and h["Cache-Control"] == "no-store"
    assert lines[0].startswith("rater_id,simulated,step,trial,choice_position,score_1")
    assert len(lines) == 2 and lines[1].startswith("R02,0,0,") and ",2,4,3,2,1," in lines[1]
    prog = json.loads(raw(base, "GET", "/admin/progress.json", headers={"Authorization": f"Bearer {token}"})[2])
    assert [r["done"] for r in prog["raters"]] == [0, 1, 0]

    # JSON sign-in, and over HTTPS (X-Forwarded-Proto from a proxy on 127.0.0.1) the cookie is Secure
    status, h, body = raw(base, "POST", "/admin/login", json.dumps({"token": token}),
                          {"Content-Type": "application/json", "X-Forwarded-Proto": "https"})
    pair2, attrs2 = cookie_of(h)
    assert status == 200 and json.loads(body) == {"ok": True} and "secure" in attrs2 and pair2 != pair
    # signing out ends the session on the server: the old cookie no longer opens the page; the other one does
    assert raw(base, "POST", "/admin/logout", headers={"Cookie": pair})[0] == 303
    assert raw(base, "GET", "/admin/progress.json", headers={"Cookie": pair})[0] == 401
    assert raw(base, "GET", "/admin/progress.json", headers={"Cookie": pair2})[0] == 200


def test_admin_sessions_expire():
    from reader_study.server import AdminSessions

    now = [1000.0]
    s = AdminSessions(seconds=60, clock=lambda: now[0])
    a = s.new()
    assert s.valid(a) and not s.valid(a + "x") and not s.valid(None) and not s.valid("")
    now[0] += 59
    assert s.valid(a)
    now[0] += 2
    assert not s.valid(a)


def test_no_secret_or_query_string_in_log_records(server, caplog):
    """Every log record of a real server run (uvicorn's and the app's): no admin token, no session value, no
    rater code, no query string; the access lines are there, with method, path and status."""
    base, paths, token = server
    with store.connect(paths.db) as conn:
        rater = store.raters(conn)[0]
    study = json.loads((paths.root / "study.json").read_text())
    name = study["trials"][0]["images"][0] + ".png"
    caplog.set_level(logging.DEBUG)
    pair, _ = cookie_of(sign_in(base, token)[1])
    raw(base, "GET", "/admin", headers={"Cookie": pair})
    raw(base, "GET", f"/admin?token={token}")  # an old-style bookmark: refused, and logged without its query
    raw(base, "GET", f"/admin/export.csv?token={token}&x=%0Afake-line")
    raw(base, "GET", "/admin/progress.json", headers={"Authorization": f"Bearer {token}"})
    raw(base, "GET", f"/img/{name}?code={rater.code}")
    raw(base, "GET", f"/img/{name}", headers={"X-Access-Code": rater.code})
    raw(base, "GET", "/api/state", headers={"X-Access-Code": rater.code})
    lines = [r.getMessage() for r in caplog.records]
    access = [m for r, m in zip(caplog.records, lines) if r.name == "reader_study.access"]
    assert any('"POST /admin/login" 303' in m for m in access)
    assert any('"GET /admin" 200' in m for m in access) and any('"GET /admin" 401' in m for m in access)
    assert any(f'"GET /img/{name}" 401' in m for m in access) and any(f'"GET /img/{name}" 200' in m for m in access)
    assert len(access) == 8 and not any(r.name == "uvicorn.access" for r in caplog.records)
    secrets_ = [token, pair.split("=", 1)[1], rater.code, "?", "fake-line"]
    for m in lines:
        assert not any(x in m for x in secrets_), m


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
    cmd = [sys.executable, "-m", "cspine", "study", "serve", "--config", str(REPO / "configs" / "demo.yaml"),
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


def test_cli_serve_prints_no_token_and_logs_no_query(built_study):
    """`cspine study serve` as a process: what it prints says where the token is, never the token, and its
    stdout + stderr over a session (sign-in, a token and a code in query strings, images) carry no secret."""
    import os
    import signal
    import subprocess
    import sys

    from reader_study.build import admin_token
    from tests.reader_study.conftest import REPO, free_port

    cfg, run, paths = built_study
    token = admin_token(paths)
    with store.connect(paths.db) as conn:
        rater = store.raters(conn)[0]
    name = json.loads((paths.root / "study.json").read_text())["trials"][0]["images"][0] + ".png"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "CSPINE_STUDY_ADMIN_TOKEN"}
    cmd = [sys.executable, "-m", "cspine", "study", "serve", "--config", str(REPO / "configs" / "demo.yaml"),
           "--run-dir", str(run.root), "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_up(base, proc)
        status, h, _ = sign_in(base, token)
        pair, _ = cookie_of(h)
        assert status == 303 and raw(base, "GET", "/admin", headers={"Cookie": pair})[0] == 200
        assert raw(base, "GET", f"/admin?token={token}")[0] == 401
        assert raw(base, "GET", f"/img/{name}?code={rater.code}")[0] == 401
        assert raw(base, "GET", f"/img/{name}", headers={"X-Access-Code": rater.code})[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode(errors="replace")
    assert f"/admin  (sign in with the token in {paths.admin_token})" in out
    assert '"POST /admin/login" 303' in out and '"GET /admin" 401' in out and f'"GET /img/{name}" 200' in out
    for secret in (token, pair.split("=", 1)[1], rater.code, "?token", "?code"):
        assert secret not in out, secret


def test_serve_help_recommends_tls_not_plain_http_on_all_interfaces():
    import argparse

    from reader_study.cli import register

    parser = argparse.ArgumentParser(prog="cspine")
    register(parser.add_subparsers())
    study = parser._subparsers._group_actions[0].choices["study"]
    serve = study._subparsers._group_actions[0].choices["serve"]
    text = serve.format_help() + study.format_help()
    assert "0.0.0.0" not in text
    assert "127.0.0.1" in text and "reverse proxy" in text and "HTTPS" in text and "--ssl-certfile" in text
    assert "POST" in text and "admin_token.txt" in text and "?token" not in text


@pytest.mark.skipif(__import__("shutil").which("openssl") is None, reason="needs the openssl command for a test certificate")
def test_cli_serve_over_tls_gives_a_secure_cookie(built_study, tmp_path):
    """--ssl-certfile/--ssl-keyfile: the server speaks HTTPS itself, says so, and marks the admin cookie Secure."""
    import signal
    import ssl
    import subprocess
    import sys
    import time

    from reader_study.build import admin_token
    from tests.reader_study.conftest import REPO, free_port

    cfg, run, paths = built_study
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = free_port()
    cmd = [sys.executable, "-m", "cspine", "study", "serve", "--config", str(REPO / "configs" / "demo.yaml"),
           "--run-dir", str(run.root), "--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=str(cert))  # the test certificate is the one trusted CA
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            conn = http.client.HTTPSConnection("localhost", port, timeout=10, context=ctx)
            try:
                conn.request("POST", "/admin/login", urllib.parse.urlencode({"token": admin_token(paths)}),
                             {"Content-Type": "application/x-www-form-urlencoded"})
                r = conn.getresponse()
                r.read()
                break
            except ConnectionRefusedError:
                assert time.time() < deadline, "server did not come up"
                time.sleep(0.1)
            finally:
                conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode(errors="replace")
    assert r.status == 303
    _, attrs = cookie_of(r.headers)
    assert "secure" in attrs and "httponly" in attrs
    assert f"https://localhost:{port}/admin " in out


def test_cli_serve_refuses_half_a_tls_pair(built_study, capsys):
    from cspine.cli import main
    from tests.reader_study.conftest import REPO

    cfg, run, paths = built_study
    rc = main(["study", "serve", "--config", str(REPO / "configs" / "demo.yaml"), "--run-dir", str(run.root),
               "--ssl-certfile", str(paths.root / "study.json")])
    assert rc == 2 and "--ssl-certfile and --ssl-keyfile go together" in capsys.readouterr().err
