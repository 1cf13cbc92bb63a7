"""`cspine study serve`: the rater web app (FastAPI + one plain HTML/JS page) and the admin view.

Why FastAPI and plain HTML rather than Gradio: the blinding has to be provable, and with a hand-written page
every byte a rater's browser receives is ours: the JSON of a trial is a list of random asset names and
nothing else, every image response has identical headers and size, and no framework state (component ids,
queue events, file paths with source names) travels alongside. Answers go straight to SQLite (WAL, one
committed row per answer), resuming is a property of the server's state rather than of a UI session, the
page works offline on a hospital LAN with no CDN, and the app is one `uvicorn` process (it can still be put
behind any reverse proxy, or into a Docker Space, if a Hugging Face Space is wanted).

This module never opens answer_key.json: the server can be run from a study/ folder that lacks it.

Routes (rater): ``GET /`` the page; ``POST /api/login`` {code}; ``GET /api/state`` and ``POST /api/answer``
with header ``X-Access-Code``; ``GET /img/<name>.png``. Routes (organiser, ``?token=`` or header
``X-Admin-Token``): ``GET /admin``, ``GET /admin/progress.json``, ``GET /admin/export.csv``.
"""

from __future__ import annotations

import csv
import hmac
import html
import io
import json
import re
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from reader_study import store

_ASSET_RE = re.compile(r"^[0-9a-f]{24}\.png$")
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_IMG_HEADERS = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}


class Login(BaseModel):
    code: str


class Answer(BaseModel):
    step: int
    choice: int
    scores: list[int]
    elapsed_ms: int | None = None


def _page(name: str) -> str:
    return resources.files("reader_study").joinpath("static", name).read_text(encoding="utf-8")


def create_app(study_dir: Path, admin_token: str) -> FastAPI:
    """The app for one built study folder (study.json, assets/, responses.sqlite)."""
    study_dir = Path(study_dir)
    study = json.loads((study_dir / "study.json").read_text())
    db = study_dir / "responses.sqlite"
    assets = study_dir / "assets"
    k, likert, n_trials = study["alternatives"], study["likert_points"], study["n_trials"]
    trial_images = {t["trial"]: t["images"] for t in study["trials"]}
    allowed = {f"{n}.png" for imgs in trial_images.values() for n in imgs}
    rater_page = _page("rater.html")

    app = FastAPI(title="cspine reader study", docs_url=None, redoc_url=None, openapi_url=None)

    def rater_for(code: str | None) -> store.Rater:
        if not code:
            raise HTTPException(401, "access code required")
        with store.connect(db) as conn:
            rater = store.rater_by_code(conn, code)
        if rater is None:
            raise HTTPException(401, "unknown access code")
        return rater

    def state(rater: store.Rater) -> dict:
        with store.connect(db) as conn:
            done = store.answered(conn, rater.rater_id)
        total = len(rater.trial_order)
        out = {"rater": rater.rater_id, "total": total, "done": done, "alternatives": k, "likert_points": likert}
        if done < total:
            images = trial_images[rater.trial_order[done]]
            out |= {"step": done, "images": [f"img/{n}.png" for n in images]}
        else:
            out |= {"step": None, "images": None}
        return out

    def check_admin(token: str | None) -> None:
        if not token or not hmac.compare_digest(token.encode(), admin_token.encode()):
            raise HTTPException(403, "admin token required (?token=... or header X-Admin-Token)")

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(rater_page, headers=_NO_STORE)

    @app.post("/api/login")
    def login(body: Login) -> JSONResponse:
        return JSONResponse(state(rater_for(body.code)), headers=_NO_STORE)

    @app.get("/api/state")
    def get_state(x_access_code: str | None = Header(None)) -> JSONResponse:
        return JSONResponse(state(rater_for(x_access_code)), headers=_NO_STORE)

    @app.post("/api/answer")
    def answer(body: Answer, x_access_code: str | None = Header(None)) -> JSONResponse:
        rater = rater_for(x_access_code)
        try:
            with store.connect(db) as conn:
                stored = store.submit(conn, rater, body.step, body.choice, body.scores, k, likert, body.elapsed_ms)
        except store.SubmitError as err:
            raise HTTPException(409, str(err)) from None
        return JSONResponse(state(rater) | {"stored": stored}, headers=_NO_STORE)

    @app.get("/img/{name}")
    def image(name: str) -> Response:
        if not _ASSET_RE.match(name) or name not in allowed:
            raise HTTPException(404, "not found")
        return Response((assets / name).read_bytes(), media_type="image/png", headers=_IMG_HEADERS)

    def progress() -> list[dict]:
        with store.connect(db) as conn:
            rows = []
            for r in store.raters(conn):
                last = conn.execute("SELECT MAX(submitted_at) FROM responses WHERE rater_id=?", (r.rater_id,)).fetchone()[0]
                rows.append(dict(rater_id=r.rater_id, name=r.name, simulated=r.simulated,
                                 done=store.answered(conn, r.rater_id), total=len(r.trial_order), last_answer=last))
        return rows

    @app.get("/admin/progress.json")
    def admin_progress(token: str | None = None, x_admin_token: str | None = Header(None)) -> JSONResponse:
        check_admin(token or x_admin_token)
        return JSONResponse({"n_trials": n_trials, "raters": progress()}, headers=_NO_STORE)

    @app.get("/admin/export.csv")
    def admin_export(token: str | None = None, x_admin_token: str | None = Header(None)) -> Response:
        check_admin(token or x_admin_token)
        with store.connect(db) as conn:
            text = responses_csv(store.responses(conn), k)
        return Response(text, media_type="text/csv", headers=_NO_STORE | {"Content-Disposition": 'attachment; filename="responses.csv"'})

    @app.get("/admin", response_class=HTMLResponse)
    def admin(token: str | None = None, x_admin_token: str | None = Header(None)) -> HTMLResponse:
        check_admin(token or x_admin_token)
        rows = progress()
        body = "".join(
            f"<tr><td>{html.escape(r['rater_id'])}</td><td>{html.escape(r['name'])}{' (simulated)' if r['simulated'] else ''}</td>"
            f"<td><progress max='{r['total']}' value='{r['done']}'></progress> {r['done']} / {r['total']}</td>"
            f"<td>{html.escape(r['last_answer'] or '-')}</td></tr>"
            for r in rows
        )
        done = sum(r["done"] for r in rows)
        total = sum(r["total"] for r in rows)
        page = _page("admin.html").replace("{{ROWS}}", body).replace("{{DONE}}", str(done)).replace("{{TOTAL}}", str(total))
        page = page.replace("{{TOKEN}}", html.escape(token or ""))
        return HTMLResponse(page, headers=_NO_STORE)

    return app


def responses_csv(rows: list[dict], k: int) -> str:
    """Answers as CSV, one row per (rater, trial): choice as 1-based position, one score column per position."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rater_id", "simulated", "step", "trial", "choice_position"] + [f"score_{p + 1}" for p in range(k)]
               + ["elapsed_ms", "submitted_at"])
    for r in rows:
        w.writerow([r["rater_id"], int(r["simulated"]), r["step"], r["trial"], r["choice"] + 1] + list(r["scores"])
                   + [r["elapsed_ms"] if r["elapsed_ms"] is not None else "", r["submitted_at"]])
    return buf.getvalue()


def serve(study_dir: Path, admin_token: str, host: str, port: int) -> None:  # pragma: no cover - blocking
    import uvicorn

    uvicorn.run(create_app(study_dir, admin_token), host=host, port=port, log_level="info", server_header=False, date_header=False)
