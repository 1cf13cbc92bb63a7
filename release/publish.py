"""`cspine publish`: copy release/dataset and release/model to a local hub folder (``release.local_hub/OWNER/NAME``,
the default target) that ``load_dataset(path)`` and ``DiffusionPipeline.from_pretrained(path)`` read, or, only when
asked for (``release.target: hub`` or ``--hub``), upload them to the Hugging Face Hub, one commit per repo.

Before anything is copied or uploaded, publish checks again, itself, that the release folders match their
manifests and hold exactly what the privacy audit covered (release.coverage) and no real image
(release.realscan): it does not trust that `cspine package` ran or that nothing changed since.

Hub repos are created private (``release.private``, default true) and may be gated (``release.gated``). The
token comes from ``huggingface_hub.get_token()`` (HF_TOKEN, or `hf auth login`) and is only handed to ``HfApi``;
error messages are scrubbed of it. Re-publishing the same release is a no-op: every file is offered in one
``create_commit`` and the Hub's preupload answer lets ``huggingface_hub`` drop unchanged files. Remote files are
deleted only when this tool uploaded them in an earlier release (they are listed in the remote manifest.json)
and they are no longer part of the release; other files stay unless ``release.prune_remote`` (``--prune``).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from cspine import atomic
from cspine.errors import GateClosed, StageError
from cspine.hashing import sha256_file
from cspine.rundir import RunDir
from release import coverage, manifest

log = logging.getLogger("cspine.publish")

KEEP_REMOTE = {".gitattributes"}


class PublishError(StageError):
    """Publishing failed; the message says why (never containing the token)."""


@dataclass
class Target:
    folder: Path
    repo_id: str
    repo_type: str  # "dataset" | "model"


def targets(cfg, run: RunDir) -> list[Target]:
    """The two release folders with their repos, after checking each against its manifest and the audit."""
    out = [Target(run.release_dataset, cfg.release.dataset_repo, "dataset"), Target(run.release_model, cfg.release.model_repo, "model")]
    for t in out:
        bad = manifest.verify(t.folder)
        if bad:
            raise PublishError(f"{t.folder} is not a complete release (run `cspine package` first):\n  " + "\n  ".join(bad[:5]))
        if t.repo_id.count("/") != 1:
            raise PublishError(f"release repo id {t.repo_id!r} must be OWNER/NAME")
    coverage.check_release(run, run.release_dataset, run.release_model)
    hits = coverage.real_image_hits(run, [t.folder for t in out])
    if hits:
        raise GateClosed("real radiographs found in the release; nothing was published:\n  "
                         + "\n  ".join(str(h) for h in hits[:10]))
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


def ours_on_remote(api, t: Target, remote: set[str]) -> set[str]:
    """The remote files an earlier release of this tool uploaded: those its remote manifest.json lists."""
    if manifest.MANIFEST not in remote:
        return set()
    import json

    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(t.repo_id, manifest.MANIFEST, repo_type=t.repo_type, token=api.token)
        listed = {f["path"] for f in json.loads(Path(path).read_text(encoding="utf-8"))["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return listed | {manifest.MANIFEST}


def publish_hub(t: Target, token: str, rc) -> str:
    """Create the repo (private unless configured public; gated if configured) if needed and upload the folder
    in one commit (none when nothing changed), deleting only remote files of earlier releases of ours."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(t.repo_id, repo_type=t.repo_type, private=rc.private, exist_ok=True)
        if rc.gated:
            api.update_repo_settings(t.repo_id, repo_type=t.repo_type, gated=rc.gated)
        remote = set(api.list_repo_files(t.repo_id, repo_type=t.repo_type))
        files = local_files(t.folder)
        deletable = (remote - KEEP_REMOTE) if rc.prune_remote else ours_on_remote(api, t, remote)
        ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(t.folder / rel)) for rel in files]
        ops += [CommitOperationDelete(path_in_repo=rel) for rel in sorted(deletable - set(files))]
        before = api.repo_info(t.repo_id, repo_type=t.repo_type).sha
        info = api.create_commit(t.repo_id, ops, repo_type=t.repo_type,
                                 commit_message=f"synthetic-cspine release ({len(files)} files)")
    except Exception as err:  # network, auth, server: say which repo and why, never the token
        raise PublishError(_scrub(f"uploading {t.folder} to {t.repo_type} repo {t.repo_id} failed: "
                                  f"{type(err).__name__}: {err}", token)) from None
    state = "unchanged" if info.oid == before else f"commit {info.oid[:10]}"
    return f"{t.repo_type} {t.repo_id}: {state} ({info.commit_url})"


def publish(cfg, run: RunDir) -> list[str]:
    """Publish both repos to ``release.target``; returns one line per repo."""
    from huggingface_hub import get_token

    rc = cfg.release
    if rc.target == "local" and rc.local_hub is None:
        raise PublishError("release.target is local but release.local_hub is not set: set it, or publish to the "
                           "Hub with --hub (release.target: hub)")
    ts = targets(cfg, run)
    if rc.target == "local":
        log.info("publishing to the local hub folder %s", rc.local_hub)
        return [publish_local(t, Path(rc.local_hub)) for t in ts]
    for noisy in ("httpx2", "httpx", "urllib3"):  # request lines are noise here (they never carry the token)
        logging.getLogger(noisy).setLevel(logging.WARNING)
    token = get_token()
    if not token:
        raise PublishError("release.target is hub but there is no Hub token: set HF_TOKEN or run `hf auth login` "
                           "(or publish to the local hub folder with --local)")
    return [publish_hub(t, token, rc) for t in ts]


def load_lines(cfg) -> tuple[str, list[str]]:
    """Where the release goes and the two lines of Python that load it (Hub ids, or local paths)."""
    rc = cfg.release
    if rc.target == "hub" or rc.local_hub is None:
        ds, model = rc.dataset_repo, rc.model_repo
        where = (f"https://huggingface.co/datasets/{ds} and https://huggingface.co/{model} "
                 f"({'private' if rc.private else 'public'}{', gated' if rc.gated else ''})")
    else:
        hub = Path(rc.local_hub).resolve()
        ds, model = str(hub / rc.dataset_repo), str(hub / rc.model_repo)
        where = f"the local hub folder {hub}"
    # a conditional model ships its pipeline class (pipeline.py): diffusers runs it only when trusted
    trust = ", trust_remote_code=True" if cfg.model.condition.curvature else ""
    return where, [
        f'from datasets import load_dataset; ds = load_dataset("{ds}", split="train")',
        f'from diffusers import DiffusionPipeline; pipe = DiffusionPipeline.from_pretrained("{model}"{trust})',
    ]
