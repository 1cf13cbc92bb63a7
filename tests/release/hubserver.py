"""A real Hugging Face Hub API on loopback, for the publish round-trip test.

Reads are served by the ``olah`` Hub mirror (PyPI ``olah``, run from its own venv ``.venv-olah``), whose
``mirrors-path`` serves local git repositories through the Hub's read API (repo info, tree, paths-info, commits,
resolve). Olah has no write API, so this module puts a small write layer in front of it that implements the
Hub's upload endpoints on those same git repositories:

    POST /api/validate-yaml                                 README metadata check (must parse as a mapping)
    POST /api/repos/create                                  create a repo (initial commit with .gitattributes)
    POST /api/{type}s/{owner}/{name}/preupload/{rev}        upload mode (lfs|regular) and the remote oid per path
    POST /[datasets/]{owner}/{name}.git/info/lfs/objects/batch   LFS batch API (basic transfer)
    PUT  /_lfs/{oid}                                        LFS object upload (sha256 checked)
    POST /api/{type}s/{owner}/{name}/commit/{rev}           NDJSON commit (file, lfsFile, deletedFile)

LFS files are committed as git-lfs pointers with the object under ``.git/lfs/objects/aa/bb/oid``, the layout olah
reads. Every other request is forwarded to olah unchanged. Used by tests/release/test_hub.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import requests
import uvicorn
import yaml
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

REPO = Path(__file__).resolve().parents[2]
OLAH_VENV = REPO / ".venv-olah"
LFS_PATTERNS = (".parquet", ".safetensors", ".png", ".bin", ".npy", ".pt")
POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
POINTER_RE = re.compile(r"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize ([0-9]+)\n")
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "hub", "GIT_AUTHOR_EMAIL": "hub@localhost",
           "GIT_COMMITTER_NAME": "hub", "GIT_COMMITTER_EMAIL": "hub@localhost"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env=GIT_ENV, input=input, check=True,
                          capture_output=True).stdout.decode()


class GitStore:
    """Hub repos as non-bare git repos under ``root/{models,datasets}/OWNER/NAME`` (olah's mirrors-path layout)."""

    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.Lock()

    def path(self, repo_type: str, repo_id: str) -> Path:
        return self.root / f"{repo_type}s" / repo_id

    def create(self, repo_type: str, repo_id: str) -> bool:
        p = self.path(repo_type, repo_id)
        with self.lock:
            if (p / ".git").exists():
                return False
            p.mkdir(parents=True)
            git(p, "init", "-q", "-b", "main")
            (p / ".gitattributes").write_text("".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_PATTERNS))
            git(p, "add", "-A")
            git(p, "commit", "-q", "-m", "initial commit")
            return True

    def lfs_object(self, repo: Path, oid: str) -> Path:
        return repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid

    def remote_oid(self, repo: Path, path: str) -> str | None:
        """What the Hub's preupload reports for an existing path: sha256 for LFS files, git blob sha1 otherwise."""
        out = git(repo, "ls-tree", "HEAD", "--", path).strip()
        if not out:
            return None
        blob = out.split()[2]
        content = git(repo, "cat-file", "-p", blob)
        m = POINTER_RE.fullmatch(content) if len(content) < 200 else None
        return m.group(1) if m else blob

    def commit(self, repo: Path, summary: str, ops: list[dict]) -> str:
        with self.lock:
            for op in ops:
                key, v = op["key"], op["value"]
                target = repo / v["path"]
                if not target.resolve().is_relative_to(repo.resolve()) or "/.git/" in f"/{v['path']}":
                    raise ValueError(f"bad path {v['path']!r}")
                if key == "file":
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(base64.b64decode(v["content"]))
                elif key == "lfsFile":
                    if not self.lfs_object(repo, v["oid"]).is_file():
                        raise ValueError(f"LFS object {v['oid']} of {v['path']} was not uploaded")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(POINTER.format(oid=v["oid"], size=v["size"]))
                elif key in ("deletedFile", "deletedFolder"):
                    git(repo, "rm", "-r", "-q", "--ignore-unmatch", "--", v["path"])
                else:
                    raise ValueError(f"unsupported commit operation {key!r}")
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "--allow-empty", "-m", summary or "commit")
            return git(repo, "rev-parse", "HEAD").strip()


def write_app(store: GitStore, olah_url: str) -> FastAPI:
    app = FastAPI()
    session = requests.Session()
    pending: dict[str, tuple[str, str]] = {}  # oid -> (repo_type, repo_id) the upload belongs to

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def prefix(repo_type: str) -> str:
        return "" if repo_type == "model" else f"{repo_type}s/"

    @app.post("/api/repos/create")
    async def create(request: Request):
        body = await request.json()
        repo_type = body.get("type") or "model"
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else f"user/{body['name']}"
        url = f"{base(request)}/{prefix(repo_type)}{repo_id}"
        with open(store.root / "create-requests.jsonl", "a", encoding="utf-8") as fh:  # what the client asked for
            fh.write(json.dumps({"type": repo_type, "repo_id": repo_id, "private": body.get("private"),
                                 "visibility": body.get("visibility")}) + "\n")
        if not store.create(repo_type, repo_id):
            return JSONResponse({"error": "You already created this repo", "url": url}, status_code=409)
        return {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]}

    @app.post("/api/validate-yaml")
    async def validate_yaml(request: Request):
        # The Hub checks a README's metadata block before accepting a commit; here: it must parse as a mapping.
        content = (await request.json()).get("content", "")
        m = re.match(r"^---\n(.*?)\n---", content, flags=re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
        except yaml.YAMLError as err:
            return JSONResponse({"errors": [{"message": f"invalid YAML: {err}"}]}, status_code=400)
        if not isinstance(meta, dict):
            return JSONResponse({"errors": [{"message": "metadata must be a mapping"}]}, status_code=400)
        return {"errors": [], "warnings": [] if meta else [{"message": "empty metadata"}]}

    @app.post("/api/{rtype}s/{owner}/{name}/preupload/{rev}")
    async def preupload(rtype: str, owner: str, name: str, rev: str, request: Request):
        repo = store.path(rtype, f"{owner}/{name}")
        if not repo.exists():
            return JSONResponse({"error": "Repository not found"}, status_code=404)
        files = []
        for f in (await request.json())["files"]:
            lfs = f["path"].endswith(LFS_PATTERNS) or f["size"] >= 10_000_000
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": store.remote_oid(repo, f["path"])})
        return {"files": files, "commitOid": git(repo, "rev-parse", "HEAD").strip()}

    async def lfs_batch(repo_type: str, repo_id: str, request: Request):
        repo = store.path(repo_type, repo_id)
        body = await request.json()
        out = []
        for o in body["objects"]:
            entry = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if not store.lfs_object(repo, o["oid"]).is_file():
                pending[o["oid"]] = (repo_type, repo_id)
                entry["actions"] = {"upload": {"href": f"{base(request)}/_lfs/{o['oid']}", "expires_in": 3600}}
            out.append(entry)
        return JSONResponse({"transfer": "basic", "objects": out, "hash_algo": "sha256"},
                            media_type="application/vnd.git-lfs+json")

    @app.post("/datasets/{owner}/{name}.git/info/lfs/objects/batch")
    async def lfs_batch_dataset(owner: str, name: str, request: Request):
        return await lfs_batch("dataset", f"{owner}/{name}", request)

    @app.post("/{owner}/{name}.git/info/lfs/objects/batch")
    async def lfs_batch_model(owner: str, name: str, request: Request):
        return await lfs_batch("model", f"{owner}/{name}", request)

    @app.put("/_lfs/{oid}")
    async def lfs_upload(oid: str, request: Request):
        if oid not in pending:
            return JSONResponse({"error": "unknown upload"}, status_code=404)
        data = await request.body()
        if hashlib.sha256(data).hexdigest() != oid:
            return JSONResponse({"error": "sha256 mismatch"}, status_code=400)
        repo_type, repo_id = pending[oid]  # kept: two files with the same content may upload the same oid
        dst = store.lfs_object(store.path(repo_type, repo_id), oid)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        return Response(status_code=200)

    @app.post("/api/{rtype}s/{owner}/{name}/commit/{rev}")
    async def commit(rtype: str, owner: str, name: str, rev: str, request: Request):
        repo = store.path(rtype, f"{owner}/{name}")
        if not repo.exists():
            return JSONResponse({"error": "Repository not found"}, status_code=404)
        lines = [json.loads(line) for line in (await request.body()).decode().splitlines() if line.strip()]
        header = next((x["value"] for x in lines if x["key"] == "header"), {})
        try:
            oid = store.commit(repo, header.get("summary", ""), [x for x in lines if x["key"] != "header"])
        except (ValueError, subprocess.CalledProcessError) as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        return {"success": True, "commitOid": oid, "commitUrl": f"{base(request)}/{prefix(rtype)}{owner}/{name}/commit/{oid}",
                "hookOutput": ""}

    # -- two shims over olah's read API (olah 0.5.4 vs huggingface_hub 2.4) --------------------------------
    @app.api_route("/api/{rtype}s/{owner}/{name}", methods=["GET", "HEAD"])
    async def repo_info(rtype: str, owner: str, name: str, request: Request):
        # olah resolves the latest commit of a revision-less repo-info call upstream only, even for a local
        # mirror (offline: 401); the Hub answers it for the default branch, so ask olah for revision/main.
        return await forward(f"api/{rtype}s/{owner}/{name}/revision/main", request)

    @app.get("/api/{rtype}s/{owner}/{name}/commits/{rev}")
    async def commits(rtype: str, owner: str, name: str, rev: str, request: Request):
        # olah lists commit authors as {name, avatar}; huggingface_hub 2.4 reads authors[].user.
        r = await forward(f"api/{rtype}s/{owner}/{name}/commits/{rev}", request)
        if r.status_code != 200:
            return r
        items = json.loads(r.body)
        for item in items:
            for a in item.get("authors", []):
                a.setdefault("user", a.get("name"))
        return JSONResponse(items)

    @app.api_route("/{path:path}", methods=["GET", "HEAD", "POST"])
    async def to_olah(path: str, request: Request):
        return await forward(path, request)

    async def forward(path: str, request: Request) -> Response:
        body = await request.body()
        r = await run_in_threadpool(
            session.request, request.method, olah_url + "/" + path, params=list(request.query_params.multi_items()),
            headers={k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "accept-encoding")},
            data=body, allow_redirects=False, timeout=60)
        drop = {"content-length", "transfer-encoding", "content-encoding", "connection"}
        headers = {k: v for k, v in r.headers.items() if k.lower() not in drop}
        if "location" in headers:  # olah's own redirects (e.g. tree/main -> tree/main/) must come back through us
            headers["location"] = headers["location"].replace(olah_url, base(request))
        if request.method == "HEAD" and "content-length" in r.headers:
            headers["content-length"] = r.headers["content-length"]
        return Response(content=r.content if request.method != "HEAD" else b"", status_code=r.status_code, headers=headers)

    return app


class LoopbackHub:
    """olah (subprocess) + the write layer (uvicorn thread); ``endpoint`` is what HF_ENDPOINT should be."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.mirrors = workdir / "mirrors"
        self.mirrors.mkdir(parents=True, exist_ok=True)
        self.port, self.olah_port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.server: uvicorn.Server | None = None

    def start(self, timeout: float = 60) -> "LoopbackHub":
        olah = OLAH_VENV / "bin" / "olah-cli"
        if not olah.exists():
            raise RuntimeError(f"{olah} not found: run `make setup` (it builds the olah venv)")
        cfg = self.workdir / "olah.toml"
        cfg.write_text(
            "[basic]\n"
            f'host = "127.0.0.1"\nport = {self.olah_port}\n'
            f'mirror-netloc = "127.0.0.1:{self.port}"\nmirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
            f'repos-path = "{self.workdir / "olah-repos"}"\nmirrors-path = ["{self.mirrors}"]\n'
            "metadata-cache-ttl = 0\n"
            "[accessibility]\noffline = true\n"
        )
        self.log = open(self.workdir / "olah.out", "wb")
        self.proc = subprocess.Popen([str(olah), "-c", str(cfg)], cwd=self.workdir, stdout=self.log, stderr=subprocess.STDOUT)
        self.server = uvicorn.Server(uvicorn.Config(write_app(GitStore(self.mirrors), f"http://127.0.0.1:{self.olah_port}"),
                                                    host="127.0.0.1", port=self.port, log_level="warning"))
        threading.Thread(target=self.server.run, daemon=True).start()
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"olah exited: {(self.workdir / 'olah.out').read_text()[-2000:]}")
            try:
                requests.get(f"http://127.0.0.1:{self.olah_port}/api/models/a/b/revision/main", timeout=2)
                requests.get(f"{self.endpoint}/api/models/a/b/revision/main", timeout=2)
                return self
            except requests.RequestException:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("loopback hub did not start in time")

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
