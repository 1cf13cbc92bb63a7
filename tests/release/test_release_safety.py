"""Release safety on the real chain: `cspine release` on a tiny phantom config (demo-data -> prepare -> train ->
sample -> audit -> evaluate -> package -> publish to a local hub), with no hand-written stage output.

- Nothing real leaves: every image anywhere in the released tree (release/ and the local hub: shard images,
  figures) is compared with every real training and holdout image by pixel correlation and perceptual hash,
  here in the test (independently of release.realscan), and the team's real-vs-synthetic figure exists in the
  run but not in the release.
- What ships is what the audit covered: the released images' sha256 are the audited ones and the released
  weights are the audited weights, after a retrain to more steps (`cspine release --set train.max_steps=N`),
  a re-prepare with another split, and altered samples; publish refuses a release changed after packaging.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import imagehash
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cspine import provenance
from cspine.cli import main as cspine
from cspine.hashing import sha256_file
from cspine.rundir import RunDir
from tests.fakerun import REPO

DEMO = REPO / "configs" / "demo.yaml"
TINY = {
    "data.resolution": 32, "data.phantom.count": 40, "data.phantom.cases": 20, "data.phantom.height": 160,
    "data.phantom.width": 128, "data.holdout_fraction": 0.3,
    "model.block_out_channels": "[16, 32]", "model.down_block_types": "[DownBlock2D, DownBlock2D]",
    "model.up_block_types": "[UpBlock2D, UpBlock2D]", "model.norm_num_groups": 8,
    "train.max_steps": 20, "train.batch_size": 8, "train.warmup_steps": 2, "train.checkpoint_every": 10,
    "train.sample_every": 20, "train.grid_images": 4, "train.grid_steps": 4, "train.mixed_precision": '"no"',
    "train.num_threads": 1,
    "sample.num_images": 12, "sample.steps": 8, "sample.shard_size": 6, "sample.batch_size": 6,
    "audit.methods": "[phash, dhash, pixel]", "audit.exclude_flagged": True,
    "evaluate.max_images": 24, "evaluate.frd_max_images": 8, "evaluate.diversity_pairs": 10,
    "evaluate.batch_size": 8,
}
#: Near-copy thresholds of this test's own check (the release scan has its own): a real image and a
#: synthetic one of this tiny model correlate far below 0.95, and pHash copies sit within a few bits.
MAX_CORRELATION = 0.95
MIN_PHASH_BITS = 6


def args(root: Path, **extra) -> list[str]:
    """The tiny config; paths relative to ``root`` (the working directory), so a copied run is the same run."""
    assert Path.cwd() == root
    sets = {**TINY, "data.path": "raw", "release.local_hub": "hub", **extra}
    out = ["--config", str(DEMO), "--run-dir", "run"]
    for k, v in sets.items():
        out += ["--set", f"{k}={v}"]
    return out


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("release-safety")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert cspine(["release", *args(root)]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture()
def root(released, tmp_path, monkeypatch) -> Path:
    """A copy of the released run to change, as the working directory."""
    dst = tmp_path / "copy"
    shutil.copytree(released, dst, symlinks=True)
    monkeypatch.chdir(dst)
    return dst


def _gray_images(path: Path):
    """(label, float image) for every image in a file of the released tree: PNG/JPEG files and shard cells."""
    if path.suffix == ".parquet":
        t = pq.read_table(path, columns=["image_id", "image"])
        for iid, cell in zip(t.column("image_id").to_pylist(), t.column("image").to_pylist()):
            yield f"{path.name}:{iid}", np.asarray(Image.open(io.BytesIO(cell["bytes"])), dtype=np.float64)
    elif path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        with Image.open(path) as im:  # 16-bit PNGs as they are (convert("L") would clip them), colour to gray
            yield path.name, np.asarray(im if im.mode.startswith("I") or im.mode == "L" else im.convert("L"),
                                        dtype=np.float64)


def _small(a: np.ndarray, side: int = 32) -> np.ndarray:
    im = Image.fromarray(a.astype(np.float32), mode="F").resize((side, side), Image.Resampling.BOX)
    v = np.asarray(im, dtype=np.float64).ravel()
    return (v - v.mean()) / (v.std() + 1e-9)


def _phash(a: np.ndarray) -> imagehash.ImageHash:
    lo, hi = float(a.min()), float(a.max())
    u8 = np.rint((a - lo) / (hi - lo + 1e-9) * 255).astype(np.uint8)
    return imagehash.phash(Image.fromarray(u8))


def near_real(run: RunDir, trees: list[Path]) -> list[str]:
    """Every image in ``trees`` whose pixels correlate with, or whose pHash is close to, a real image."""
    real = np.load(run.pixels).astype(np.float64)
    real_vecs = np.stack([_small(r) for r in real])
    real_hashes = [_phash(r) for r in real]
    found = []
    for tree in trees:
        for p in sorted(tree.rglob("*")):
            if not p.is_file():
                continue
            for label, img in _gray_images(p):
                corr = real_vecs @ _small(img) / real_vecs.shape[1]
                bits = min(_phash(img) - h for h in real_hashes)
                if corr.max() >= MAX_CORRELATION or bits < MIN_PHASH_BITS:
                    found.append(f"{p}:{label} (r={corr.max():.3f}, pHash {bits} bits)")
    return found


def prov_complete(run: RunDir) -> bool:
    """Every stage of the chain left a complete record."""
    folders = [run.root / "demo-data", run.data, run.model, run.samples, run.audit, run.eval, run.release, run.published]
    return all((provenance.read_record(f) or {}).get("complete") for f in folders)


def audited(run: RunDir) -> tuple[dict, dict]:
    rec = provenance.read_record(run.audit)
    assert rec and rec["complete"]
    return rec["inputs"]["samples"]["images"], rec["inputs"]["weights"]["final"]


def assert_release_is_audited(root: Path) -> None:
    """Released images and weights (in release/ and in the local hub) are exactly the audited ones."""
    run = RunDir(root / "run")
    images, weights = audited(run)
    audited_shas = set(images.values())
    hub = root / "hub" / "owner"
    for ds in (run.release_dataset, hub / "synthetic-cspine"):
        shas = [hashlib.sha256(c["bytes"]).hexdigest() for p in sorted((ds / "data").glob("*.parquet"))
                for c in pq.read_table(p, columns=["image"]).column("image").to_pylist()]
        assert shas and set(shas) <= audited_shas, ds
    for model in (run.release_model, hub / "synthetic-cspine-ddpm"):
        for rel, sha in weights.items():
            assert sha256_file(model / rel) == sha, (model, rel)
        # and the audited weights are the weights in the run now (the model was not changed after the audit)
    for rel, sha in weights.items():
        assert sha256_file(run.pipeline / rel) == sha, rel


def test_no_real_image_anywhere_in_the_release(released):
    run = RunDir(released / "run")
    assert prov_complete(run)
    trees = [run.release, released / "hub"]
    assert (run.eval / "figures" / "examples.png").is_file()  # the team's figure with real images exists ...
    names = {p.name for t in trees for p in t.rglob("*.png")}
    assert "examples.png" not in names  # ... and is not released
    assert {"synthetic_examples.png", "distances.png"} <= names
    assert near_real(run, trees) == []
    # the check can fail: the team's figure (real tiles) and a real image itself are caught by it
    probe = released / "probe"
    probe.mkdir(exist_ok=True)
    Image.fromarray(np.load(run.pixels)[3]).save(probe / "real.png")
    assert len(near_real(run, [probe])) == 1
    shutil.rmtree(probe)
    card = (run.release_dataset / "README.md").read_text()
    assert "nn_distance" not in card and "membership inference" in card
    cols = pq.read_schema(next((run.release_dataset / "data").glob("*.parquet"))).names
    assert not [c for c in cols if "distance" in c or c.endswith("_score") or c.endswith("_nn_id")]
    assert "closeness" in cols and "flagged" in cols
    assert_release_is_audited(released)


def test_retrain_to_more_steps_redoes_everything_downstream(root, capsys):
    run = RunDir(root / "run")
    old_images, old_weights = audited(run)
    capsys.readouterr()
    assert cspine(["release", *args(root, **{"train.max_steps": 24})]) == 0
    out = capsys.readouterr().out
    for stage in ("train", "sample", "audit", "package", "publish"):
        assert f"] {stage} done" in out, (stage, out)
    new_images, new_weights = audited(run)
    assert new_weights != old_weights and set(new_images.values()) != set(old_images.values())
    assert json.loads((run.model / "train_summary.json").read_text())["step"] == 24
    assert_release_is_audited(root)


def test_reprepare_with_another_split_retrains_from_scratch(root, capsys):
    run = RunDir(root / "run")
    _, old_weights = audited(run)
    assert cspine(["release", *args(root, **{"data.holdout_fraction": 0.5})]) == 0
    rec = provenance.read_record(run.model)
    assert "inputs" in rec["reason"] and rec["complete"]
    assert audited(run)[1] != old_weights
    assert_release_is_audited(root)


def test_altered_samples_are_refused_then_remade(root, capsys):
    run = RunDir(root / "run")
    victim = sorted(run.sample_images.glob("*.png"))[0]
    real = np.load(run.pixels)[0]
    Image.fromarray(real).save(victim)  # a real radiograph slipped in under a sample's name
    capsys.readouterr()
    assert cspine(["package", *args(root)]) == 2
    err = capsys.readouterr().err
    assert "sample" in err and "outputs" in err
    assert cspine(["release", *args(root)]) == 0  # sample stage redone from its weights, then everything after
    assert np.asarray(Image.open(victim)).shape == real.shape and not np.array_equal(np.asarray(Image.open(victim)), real)
    assert near_real(run, [run.release, root / "hub"]) == []
    assert_release_is_audited(root)


def test_publish_rechecks_and_refuses_a_changed_release(root, capsys):
    run = RunDir(root / "run")
    # swap the released weights for other weights: publish must notice by itself
    w = run.release_model / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    from release.manifest import write_manifest

    write_manifest(run.release_model)  # even with a manifest that matches the changed file
    capsys.readouterr()
    assert cspine(["publish", *args(root)]) == 2  # the chain of records: package's outputs changed
    assert "outputs of `cspine package` changed" in capsys.readouterr().err
    # and publish's own check, without the records: it compares the bytes with the audit's record itself
    from cspine.errors import GateClosed
    from cspine.stages import load_config
    from release.publish import publish

    from cspine.runopts import parse_overrides

    cfg = load_config(DEMO, parse_overrides(args(root)[5::2]) | {"run_dir": "run"})
    with pytest.raises(GateClosed, match="diffusion_pytorch_model.safetensors"):
        publish(cfg, run)
    assert not list((root / "hub").rglob("*.tmp-*"))
