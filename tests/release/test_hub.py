"""Publishing to a real Hub API on loopback and reading the release back with the real clients.

The server is the ``olah`` Hub mirror behind this project's write layer (tests/release/hubserver.py). The
clients (``cspine publish``, ``datasets.load_dataset``, ``DiffusionPipeline.from_pretrained``) run in a child
process with HF_ENDPOINT pointing at it, a dummy token and HF_HUB_DISABLE_XET=1, exactly as a user would run
them against huggingface.co. The pipeline is the randomly initialised tiny one of tests/fakerun.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cspine.cli import main as cspine
from tests.fakerun import REPO
from tests.release.conftest import PLANTED, audit, audit_summary, plant_training_copy, write_eval_and_study
from tests.release.hubserver import OLAH_VENV, LoopbackHub

TOKEN = "hf_loopbackDummyToken0123456789abcdef"

CLIENT = r"""
import io, json, re, sys
import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from huggingface_hub import HfApi, hf_hub_download
from cspine.cli import main as cspine

phase, config, run_dir = sys.argv[1:4]
api = HfApi()
out = {}
commits = lambda: (len(api.list_repo_commits("owner/synthetic-cspine", repo_type="dataset")),
                   len(api.list_repo_commits("owner/synthetic-cspine-ddpm")))
publish = ["-v", "publish", "--config", config, "--run-dir", run_dir, "--hub"]
if phase == "changed":  # someone else's file in the dataset repo: publish must leave it alone
    api.upload_file(path_or_fileobj=b"notes by the owner", path_in_repo="NOTES.md", repo_id="owner/synthetic-cspine",
                    repo_type="dataset")
assert cspine(publish) == 0
out["after_first"] = commits()
if phase == "first":
    assert cspine(publish) == 0
    out["after_second"] = commits()

    import datasets
    ds = datasets.load_dataset("owner/synthetic-cspine", split="train")
    local = {}
    for p in sorted(__import__("pathlib").Path(run_dir, "release/dataset/data").glob("*.parquet")):
        t = pq.read_table(p, columns=["image_id", "image"]).to_pylist()
        local.update({r["image_id"]: np.array(Image.open(io.BytesIO(r["image"]["bytes"]))) for r in t})
    out["n_rows"] = len(ds)
    out["all_equal"] = len(ds) == len(local) and all(
        np.array_equal(np.array(r["image"]), local[r["image_id"]]) for r in ds)
    out["ids"] = sorted(ds["image_id"])

    # the "How to load" code of the published card works as printed
    card = open(hf_hub_download("owner/synthetic-cspine", "README.md", repo_type="dataset")).read()
    code = re.search(r"## How to load\n\n```python\n(.*?)```", card, re.S).group(1)
    scope = {}
    exec(code, scope)
    out["card_code_rows"] = len(scope["ds"])

    import torch
    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("owner/synthetic-cspine-ddpm")
    img = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    out["sample_shape"] = list(img.shape)
    out["sample_finite"] = bool(np.isfinite(img).all())
else:
    out["files"] = sorted(api.list_repo_files("owner/synthetic-cspine", repo_type="dataset"))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture()
def hub(tmp_path):
    if not (OLAH_VENV / "bin" / "olah-cli").exists():
        pytest.fail(f"{OLAH_VENV} is missing: run `make setup` (it installs olah for this test)")
    h = LoopbackHub(tmp_path / "hub").start()
    yield h
    h.stop()


def _client(hub, tmp_path, phase, config, run):
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1",
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_DATASETS_OFFLINE": "0"}
    r = subprocess.run([sys.executable, "-c", CLIENT, phase, str(config), str(run.root)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=240)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), log


@pytest.mark.timeout(300)
def test_publish_to_loopback_hub_and_read_back(audited_run, hub, tmp_path):
    run = audited_run
    config = run.config
    write_eval_and_study(run)
    assert cspine(["package", "--config", str(config), "--set", "release.shard_size_mb=0.05"]) == 0
    n = len(__import__("pandas").read_parquet(run.samples_table)) - len(audit_summary(run)["excluded"])

    out, log1 = _client(hub, tmp_path, "first", config, run)
    # one commit per repo on top of the repo's initial commit; a second publish of the same release adds none
    assert out["after_first"] == [2, 2]
    assert out["after_second"] == out["after_first"]
    assert out["all_equal"] and out["n_rows"] == n and PLANTED not in out["ids"]
    assert out["card_code_rows"] == n
    assert out["sample_shape"] == [1, 64, 64, 1] and out["sample_finite"]
    # both repos were asked for as private (the default)
    created = [json.loads(line) for line in (hub.mirrors / "create-requests.jsonl").read_text().splitlines()]
    assert created and all(c["private"] is True or c["visibility"] == "private" for c in created)

    # a changed release (one more memorised image, flagged and excluded) is one more commit: stale shards of
    # ours are deleted in it, a file someone else put in the repo stays
    plant_training_copy(run, "final-000010", train_row=1)
    assert audit(run, "--exclude-flagged") == 0 and "final-000010" in audit_summary(run)["excluded"]
    assert cspine(["package", "--config", str(config), "--set", "release.shard_size_mb=0.02"]) == 0
    out2, log2 = _client(hub, tmp_path, "changed", config, run)
    assert out2["after_first"] == [4, 3]  # the owner's upload, then ours; the model card changed too
    local = sorted(p.relative_to(run.release_dataset).as_posix() for p in run.release_dataset.rglob("*") if p.is_file())
    assert [f for f in out2["files"] if f not in (".gitattributes", "NOTES.md")] == local
    assert "NOTES.md" in out2["files"]

    # the token never reaches a log line or a file (run dir, hub storage, client cache)
    assert TOKEN not in log1 + log2
    for root in (run.root, hub.workdir, tmp_path / "hf-home"):
        for p in root.rglob("*"):
            if p.is_file() and p.stat().st_size < 50_000_000:
                assert TOKEN.encode() not in p.read_bytes(), p
