"""`cspine publish`: upload release/dataset and release/model to the Hugging Face Hub, one commit per repo, or,
without a token, copy them to a local hub folder (``release.local_hub/OWNER/NAME``) that ``load_dataset(path)`` and
``DiffusionPipeline.from_pretrained(path)`` read the same way.

The token comes from ``huggingface_hub.get_token()`` (HF_TOKEN, or `hf auth login`) and is only handed to
``HfApi``; error messages are scrubbed of it. Re-publishing the same release is a no-op: every file is offered in
one ``create_commit`` and the Hub's preupload answer (the remote oid of each path) lets ``huggingface_hub`` drop
unchanged files, so an unchanged release makes no commit; files no longer in the release are deleted in that commit.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from cspine import atomic
from cspine.config import Config
from cspine.rundir import RunDir
from release import manifest
from cspine.hashing import sha256_file

log = logging.getLogger("cspine.publish")

KEEP_REMOTE = {".gitattributes"}


class PublishError(RuntimeError):
    """Publishing failed; the message says why (never containing the token)."""


@dataclass
class Target:
    folder: Path
    repo_id: str
    repo_type: str  # "dataset" | "model"


def targets(cfg: Config, run: RunDir) -> list[Target]:
    out = [Target(run.release_dataset, cfg.release.dataset_repo, "dataset"), Target(run.release_model, cfg.release.model_repo, "model")]
    for t in out:
        bad = manifest.verify(t.folder)
        if bad:
            raise PublishError(f"{t.folder} is not a complete release (run `cspine package` first):\n  " + "\n  ".join(bad[:5]))
        if t.repo_id.count("/") != 1:
            raise PublishError(f"release repo id {t.repo_id!r} must be OWNER/NAME")
    return out


def local_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


# -- local hub folder -----------------------------------------------------------------------------------------
def publish_local(t: Target, hub: Path) -> str:
    """Mirror ``t.folder`` into ``hub/OWNER/NAME``: copy changed files (temp then rename), drop stale ones."""
    dst = hub / t.repo_id
    changed = 0
    wanted = set(local_files(t.folder))
    for rel in sorted(wanted):
        src, out = t.folder / rel, dst / rel
        if out.is_file() and out.stat().st_size == src.stat().st_size and sha256_file(out) == sha256_file(src):
            continue
        with atomic.atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)
        changed += 1
    if dst.is_dir():
        for rel in local_files(dst):
            if rel not in wanted and not rel.startswith(".cache/"):
                (dst / rel).unlink()
                changed += 1
    return f"{t.repo_type} {t.repo_id} -> {dst} ({changed} file(s) changed)"


# -- the Hub ------------------------------------------------------------------------------------------------
def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def publish_hub(t: Target, token: str, private: bool) -> str:
    """Create the repo if needed and upload the folder in one commit (none when nothing changed)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(t.repo_id, repo_type=t.repo_type, private=private, exist_ok=True)
        remote = set(api.list_repo_files(t.repo_id, repo_type=t.repo_type))
        files = local_files(t.folder)
        ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(t.folder / rel)) for rel in files]
        ops += [CommitOperationDelete(path_in_repo=rel) for rel in sorted(remote - set(files) - KEEP_REMOTE)]
        before = api.repo_info(t.repo_id, repo_type=t.repo_type).sha
        info = api.create_commit(t.repo_id, ops, repo_type=t.repo_type,
                                 commit_message=f"synthetic-cspine release ({len(files)} files)")
    except Exception as err:  # network, auth, server: say which repo and why, never the token
        raise PublishError(_scrub(f"uploading {t.folder} to {t.repo_type} repo {t.repo_id} failed: "
                                  f"{type(err).__name__}: {err}", token)) from None
    state = "unchanged" if info.oid == before else f"commit {info.oid[:10]}"
    return f"{t.repo_type} {t.repo_id}: {state} ({info.commit_url})"


def publish(cfg: Config, run: RunDir, local: bool = False) -> list[str]:
    """Publish both repos; returns one line per repo."""
    from huggingface_hub import get_token

    ts = targets(cfg, run)
    for noisy in ("httpx2", "httpx", "urllib3"):  # request lines are noise here (they never carry the token)
        logging.getLogger(noisy).setLevel(logging.WARNING)
    token = None if local else get_token()
    if token:
        return [publish_hub(t, token, cfg.release.private) for t in ts]
    if cfg.release.local_hub is None:
        raise PublishError("no Hub token (set HF_TOKEN or run `hf auth login`) and release.local_hub is not set")
    log.info("no Hub token: publishing to the local hub folder %s", cfg.release.local_hub)
    return [publish_local(t, Path(cfg.release.local_hub)) for t in ts]
