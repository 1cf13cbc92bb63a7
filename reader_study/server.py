"""`cspine study serve`: the rater web app (FastAPI + one plain HTML/JS page) and the admin view.

Why FastAPI and plain HTML rather than Gradio: the blinding has to be provable, and with a hand-written page
every byte a rater's browser receives is ours: the JSON of a trial is a list of random asset names and
nothing else, every image response has identical headers and size, and no framework state (component ids,
queue events, file paths with source names) travels alongside. Answers go straight to SQLite (WAL, one
committed row per answer), resuming is a property of the server's state rather than of a UI session, the
page works offline on a hospital LAN with no CDN, and the app is one `uvicorn` process (it can still be put
behind any reverse proxy, or into a Docker Space, if a Hugging Face Space is wanted).

This module never opens answer_key.json: the server can be run from a study/ folder that lacks it.

Routes (rater, every one but the page and the login with header ``X-Access-Code``): ``GET /`` the page;
``POST /api/login`` {code}; ``GET /api/state``; ``POST /api/answer``; ``GET /img/<name>.png``.
Routes (organiser): ``GET /admin`` (the progress page, or the sign-in form), ``POST /admin/login``,
``POST /admin/logout``, ``GET /admin/progress.json``, ``GET /admin/export.csv``.

Decisions on secrets (no secret in a URL, so none in a log line, a browser history or a Referer):

- Admin sign-in: the token (study/admin_token.txt, mode 0600, or $CSPINE_STUDY_ADMIN_TOKEN) is POSTed
  once, as a form field or JSON ``{"token": ...}``, to ``/admin/login``. The answer sets an HttpOnly,
  SameSite=Strict cookie holding a random session value (256 bits, kept in this process's memory as its
  sha256, valid 12 h; a restart signs the admin out), never the token itself. The cookie is marked Secure
  when the request came over HTTPS (directly, or from a proxy on 127.0.0.1 sending X-Forwarded-Proto);
  its Path is left to the browser's default, the folder of ``/admin/login``, so it also works when a
  proxy serves the app under a prefix. Scripts may send ``Authorization: Bearer <token>`` instead.
  Tokens are compared with hmac.compare_digest. A ``?token=`` query is not accepted.
- Images: ``/img`` needs a rater's access code in ``X-Access-Code`` like every other rater route (the
  page fetches images with it and shows them through blob: URLs), serves only the study's asset names
  (24 hex digits + .png, listed in study.json; nothing else is ever a path), and answers
  ``Cache-Control: no-store`` and ``Pragma: no-cache`` so no radiograph stays in a browser's cache.
- Access log: uvicorn's own access log (which writes the request line with its query string) is off
  (``access_log=False``, and a filter on its logger drops every record, so not even a handler attached
  later, such as pytest's, sees one); this app logs ``client - "METHOD /path" status`` on the ``reader_study.access`` logger, the path without
  any query string, percent-encoded as it arrived (no decoded control characters in the log).
  :func:`uvicorn_config` is the one place that sets this up for `cspine study serve` and the tests.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

import jinja2
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from reader_study import store

_ASSET_RE = re.compile(r"^[0-9a-f]{24}\.png$")
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_IMG_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache", "X-Content-Type-Options": "nosniff",
                "Cross-Origin-Resource-Policy": "same-origin"}
ADMIN_COOKIE = "cspine_admin"
SESSION_SECONDS = 12 * 3600
_MAX_LOGIN_BODY = 4096
access_log = logging.getLogger("reader_study.access")


class Login(BaseModel):
    code: str


class Answer(BaseModel):
    step: int
    choice: int
    scores: list[int]
    elapsed_ms: int | None = None


def _page(name: str) -> str:
    return resources.files("reader_study").joinpath("static", name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _pages() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("reader_study", "static"), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _render(name: str, **context) -> str:
    """An organiser page of static/ rendered with Jinja, as the cards are (dataset_card.render), with every
    value HTML-escaped (autoescape). The rater page is static: it is served as it is."""
    return _pages().get_template(name).render(**context)


def request_line_path(scope: dict) -> str:
    """The request's path for a log line: percent-encoded as sent, never with its query string."""
    raw = scope.get("raw_path")
    if raw is None:
        raw = scope.get("path", "").encode("utf-8", "backslashreplace")
    raw = bytes(raw).split(b"?", 1)[0]
    return raw.decode("ascii", "backslashreplace")


class AccessLog:
    """ASGI middleware: one INFO line per HTTP request on ``reader_study.access``, method + path + status only."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        logged = False

        def log(status: int) -> None:
            nonlocal logged
            logged = True
            client = scope.get("client")
            who = f"{client[0]}:{client[1]}" if client else "-"
            access_log.info('%s - "%s %s" %d', who, scope.get("method", "-"), request_line_path(scope), status)

        async def send_logged(message):
            if message["type"] == "http.response.start":
                log(message["status"])  # before the response leaves: a client that has it finds the line written
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            if not logged:
                log(500)


class AdminSessions:
    """Signed-in admin browsers: random session values, stored as their sha256, each with an expiry."""

    def __init__(self, seconds: int = SESSION_SECONDS, clock=time.monotonic):
        self.seconds, self.clock, self._expiry = seconds, clock, {}

    @staticmethod
    def _key(value: str) -> str:
        return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()

    def new(self) -> str:
        now = self.clock()
        self._expiry = {k: t for k, t in self._expiry.items() if t > now}
        value = secrets.token_urlsafe(32)
        self._expiry[self._key(value)] = now + self.seconds
        return value

    def valid(self, value: str | None) -> bool:
        return bool(value) and self._expiry.get(self._key(value), 0) > self.clock()

    def end(self, value: str | None) -> None:
        if value:
            self._expiry.pop(self._key(value), None)


def token_matches(given: str | None, admin_token: str) -> bool:
    """Constant-time comparison of a presented admin token with the real one."""
    return bool(given) and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), admin_token.encode("utf-8"))


@dataclass(frozen=True)
class _Study:
    """What the routes of one built study folder need (study.json, assets/, responses.sqlite), and the
    lookups they share."""

    db: Path
    assets: Path
    k: int
    likert: int
    n_trials: int
    trial_images: dict
    allowed: frozenset

    @classmethod
    def load(cls, study_dir: Path) -> "_Study":
        study = json.loads((study_dir / "study.json").read_text())
        trial_images = {t["trial"]: t["images"] for t in study["trials"]}
        return cls(db=study_dir / "responses.sqlite", assets=study_dir / "assets", k=study["alternatives"],
                   likert=study["likert_points"], n_trials=study["n_trials"], trial_images=trial_images,
                   allowed=frozenset(f"{n}.png" for imgs in trial_images.values() for n in imgs))

    def rater_for(self, code: str | None) -> store.Rater:
        if not code:
            raise HTTPException(401, "access code required")
        with store.connect(self.db) as conn:
            rater = store.rater_by_code(conn, code)
        if rater is None:
            raise HTTPException(401, "unknown access code")
        return rater

    def state(self, rater: store.Rater) -> dict:
        with store.connect(self.db) as conn:
            done = store.answered(conn, rater.rater_id)
        total = len(rater.trial_order)
        out = {"rater": rater.rater_id, "total": total, "done": done, "alternatives": self.k, "likert_points": self.likert}
        if done < total:
            images = self.trial_images[rater.trial_order[done]]
            out |= {"step": done, "images": [f"img/{n}.png" for n in images]}
        else:
            out |= {"step": None, "images": None}
        return out

    def progress(self) -> list[dict]:
        with store.connect(self.db) as conn:
            rows = []
            for r in store.raters(conn):
                last = conn.execute("SELECT MAX(submitted_at) FROM responses WHERE rater_id=?", (r.rater_id,)).fetchone()[0]
                rows.append(dict(rater_id=r.rater_id, name=r.name, simulated=r.simulated,
                                 done=store.answered(conn, r.rater_id), total=len(r.trial_order), last_answer=last))
        return rows


def create_app(study_dir: Path, admin_token: str) -> FastAPI:
    """The app for one built study folder (study.json, assets/, responses.sqlite)."""
    study = _Study.load(Path(study_dir))
    app = FastAPI(title="cspine reader study", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(AccessLog)
    _add_rater_routes(app, study)
    _add_admin_routes(app, study, admin_token, AdminSessions())
    return app


def _add_rater_routes(app: FastAPI, study: _Study) -> None:
    """The page, the login, the state, the answers and the images: everything but the page and the login
    needs a rater's access code."""
    rater_page = _page("rater.html")

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(rater_page, headers=_NO_STORE)

    @app.post("/api/login")
    def login(body: Login) -> JSONResponse:
        return JSONResponse(study.state(study.rater_for(body.code)), headers=_NO_STORE)

    @app.get("/api/state")
    def get_state(x_access_code: str | None = Header(None)) -> JSONResponse:
        return JSONResponse(study.state(study.rater_for(x_access_code)), headers=_NO_STORE)

    @app.post("/api/answer")
    def answer(body: Answer, x_access_code: str | None = Header(None)) -> JSONResponse:
        rater = study.rater_for(x_access_code)
        try:
            with store.connect(study.db) as conn:
                stored = store.submit(conn, rater, body.step, body.choice, body.scores, study.k, study.likert,
                                      body.elapsed_ms)
        except store.SubmitError as err:
            raise HTTPException(409, str(err)) from None
        return JSONResponse(study.state(rater) | {"stored": stored}, headers=_NO_STORE)

    @app.get("/img/{name}")
    def image(name: str, x_access_code: str | None = Header(None)) -> Response:
        study.rater_for(x_access_code)  # first: without a code, nothing (not even which names exist) is revealed
        if not _ASSET_RE.match(name) or name not in study.allowed:
            raise HTTPException(404, "not found")
        return Response((study.assets / name).read_bytes(), media_type="image/png", headers=_IMG_HEADERS)


def _add_admin_routes(app: FastAPI, study: _Study, admin_token: str, sessions: AdminSessions) -> None:
    """The organiser's sign-in, sign-out, progress page and exports (see the module docstring on secrets)."""

    def is_admin(request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and token_matches(value.strip(), admin_token):
            return True
        return sessions.valid(request.cookies.get(ADMIN_COOKIE))

    def check_admin(request: Request) -> None:
        if not is_admin(request):
            raise HTTPException(401, "admin sign-in required (POST the token to /admin/login, or send Authorization: Bearer)")

    def sign_in_page(action: str, error: str = "", status: int = 401) -> HTMLResponse:
        """The sign-in form; ``action`` is /admin/login relative to where the page is shown (links stay relative
        so that a proxy may serve the app under a prefix)."""
        return HTMLResponse(_render("admin_login.html", action=action, error=error), status_code=status,
                            headers=_NO_STORE)

    @app.post("/admin/login")
    async def admin_login(request: Request) -> Response:
        body = await request.body()
        if len(body) > _MAX_LOGIN_BODY:
            raise HTTPException(413, "request too large")
        is_json = request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
        if is_json:
            try:
                given = json.loads(body).get("token")
            except (ValueError, AttributeError):
                raise HTTPException(400, 'expected JSON {"token": "..."}') from None
        else:
            given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [None])[0]
        if not isinstance(given, str) or not token_matches(given.strip(), admin_token):
            if is_json:
                raise HTTPException(403, "wrong admin token")
            return sign_in_page("login", "That token is not right.", 403)  # shown at /admin/login
        # 303 to the admin page (relative, so a proxy prefix is kept); JSON callers get {"ok": true}
        resp: Response = JSONResponse({"ok": True}, headers=_NO_STORE) if is_json else \
            RedirectResponse("../admin", status_code=303, headers=_NO_STORE)
        resp.set_cookie(ADMIN_COOKIE, sessions.new(), max_age=SESSION_SECONDS, path=None, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
        return resp

    @app.post("/admin/logout")
    def admin_logout(request: Request) -> Response:
        sessions.end(request.cookies.get(ADMIN_COOKIE))
        resp = RedirectResponse("../admin", status_code=303, headers=_NO_STORE)
        resp.delete_cookie(ADMIN_COOKIE, path=None, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return resp

    @app.get("/admin/progress.json")
    def admin_progress(request: Request) -> JSONResponse:
        check_admin(request)
        return JSONResponse({"n_trials": study.n_trials, "raters": study.progress()}, headers=_NO_STORE)

    @app.get("/admin/export.csv")
    def admin_export(request: Request) -> Response:
        check_admin(request)
        with store.connect(study.db) as conn:
            text = responses_csv(store.responses(conn), study.k)
        return Response(text, media_type="text/csv", headers=_NO_STORE | {"Content-Disposition": 'attachment; filename="responses.csv"'})

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request) -> HTMLResponse:
        if not is_admin(request):
            return sign_in_page("admin/login")  # shown at /admin
        rows = study.progress()
        page = _render("admin.html", raters=rows, done=sum(r["done"] for r in rows), total=sum(r["total"] for r in rows))
        return HTMLResponse(page, headers=_NO_STORE)


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


def log_config(level: str = "info") -> dict:
    """Logging for `cspine study serve`: uvicorn's messages and this app's access lines on stderr.

    uvicorn's own access logger is silenced (its request line carries the query string); the app's
    AccessLog middleware writes method + path + status instead.
    """
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": lvl, "propagate": False},
            "uvicorn.error": {"level": lvl},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "reader_study.access": {"handlers": ["stderr"], "level": lvl, "propagate": False},
        },
    }


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


_DROP_ALL = _DropAll()


def uvicorn_config(app, host: str, port: int, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                   logging_config: dict | None = None):
    """The uvicorn settings of `cspine study serve` (the tests run the same, with ``logging_config=None`` so
    pytest's log capture sees every record): no uvicorn access log, no Server/Date headers, TLS when given,
    X-Forwarded-Proto/For trusted from a proxy on 127.0.0.1 only (uvicorn's default)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_config=logging_config, access_log=False,
                            server_header=False, date_header=False, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                            proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    logging.getLogger("uvicorn.access").addFilter(_DROP_ALL)  # after Config, which (re)configures logging
    return config


def serve(study_dir: Path, admin_token: str, host: str, port: int, ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None) -> None:  # pragma: no cover - blocking
    import uvicorn

    config = uvicorn_config(create_app(study_dir, admin_token), host, port, ssl_certfile, ssl_keyfile, log_config())
    uvicorn.Server(config).run()
