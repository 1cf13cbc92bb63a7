"""`cspine package` and `cspine verify` on a small audited run: the shards load with the real
``datasets.load_dataset`` and decode to the sampled pixels, excluded images are gone, the manifest catches
corruption and partial files, a failed audit is refused, and no private source metadata is released."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cspine.images import read_gray
from release.cli import main as cspine
from release.leaks import find_leaks, private_needles
from tests.release.conftest import EXCLUDED, write_audit, write_eval_and_study


def package(run, config, *extra):
    return cspine(["package", "--config", str(config), "--run-dir", str(run.root), "--workers", "2", *extra])


def test_shards_load_with_datasets_and_match_samples(audited_run, demo_config):
    import datasets

    run = audited_run
    assert package(run, demo_config, "--set", "release.shard_size_mb=0.03", "--set", "release.rows_per_row_group=4") == 0
    shards = sorted((run.release_dataset / "data").glob("*.parquet"))
    assert len(shards) > 1
    assert all(p.name.endswith(f"-of-{len(shards):05d}.parquet") for p in shards)
    assert [p.name for p in shards][0] == f"train-00000-of-{len(shards):05d}.parquet"
    for p in shards:
        md = pq.read_metadata(p)
        assert all(md.row_group(i).num_rows <= 4 for i in range(md.num_row_groups))
        assert b"huggingface" in md.schema.to_arrow_schema().metadata

    ds = datasets.load_dataset(str(run.release_dataset), split="train")
    samples = pd.read_parquet(run.samples_table)
    assert len(ds) == len(samples) - 1 and EXCLUDED not in set(ds["image_id"])
    assert isinstance(ds.features["image"], datasets.Image)
    assert {"pixel_nn_distance", "phash_nn_distance", "pixel_flag", "flagged"} <= set(ds.column_names)
    assert not [c for c in ds.column_names if c.endswith("_score")]
    assert not any(c.endswith("_nn_id") for c in ds.column_names)
    files = dict(zip(samples["image_id"], samples["file"]))
    for row in ds:
        got = np.array(row["image"])
        want = read_gray(run.samples / files[row["image_id"]])
        assert got.dtype == want.dtype and np.array_equal(got, want), row["image_id"]
        assert row["scheduler"] == "ddim" and row["checkpoint"] == "final"


def test_verify_accepts_then_names_flipped_byte(audited_run, demo_config, capsys):
    run = audited_run
    assert package(run, demo_config, "--set", "release.shard_size_mb=0.03") == 0
    assert cspine(["verify", str(run.release_dataset)]) == 0
    m = json.loads((run.release_dataset / "manifest.json").read_text())
    shard = next(f for f in m["files"] if f["path"].startswith("data/"))
    assert shard["rows"] > 0 and len(shard["sha256"]) == 64
    assert m["total_rows"] == len(pd.read_parquet(run.samples_table)) - 1

    target = run.release_dataset / shard["path"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    capsys.readouterr()
    assert cspine(["verify", str(run.release_dataset)]) == 1
    err = capsys.readouterr().err
    assert target.name in err and "sha256" in err
    assert cspine(["verify", str(run.release_model)]) == 0  # the model folder has its own manifest


def test_rerun_keeps_finished_shards_and_refreshes_stale_ones(audited_run, demo_config):
    run = audited_run
    assert package(run, demo_config, "--set", "release.shard_size_mb=0.03") == 0
    shards = sorted((run.release_dataset / "data").glob("*.parquet"))
    before = {p.name: p.stat().st_mtime_ns for p in shards}
    assert package(run, demo_config, "--set", "release.shard_size_mb=0.03") == 0
    assert {p.name: p.stat().st_mtime_ns for p in shards} == before
    # The audit now excludes a second image: shards change, stale names disappear, verify passes.
    write_audit(run, excluded=(EXCLUDED, "final-000010"))
    assert package(run, demo_config, "--set", "release.shard_size_mb=0.03") == 0
    assert cspine(["verify", str(run.release_dataset)]) == 0
    total = sum(pq.read_metadata(p).num_rows for p in (run.release_dataset / "data").glob("*.parquet"))
    assert total == len(pd.read_parquet(run.samples_table)) - 2


def test_failed_audit_is_refused(fake_run, demo_config, capsys):
    write_audit(fake_run, passed=False)
    assert package(fake_run, demo_config) == 1
    err = capsys.readouterr().err
    assert "did not pass" in err and "audit failed" in err
    assert not (fake_run.release_dataset / "manifest.json").exists()


def test_missing_audit_is_refused(fake_run, demo_config, capsys):
    assert package(fake_run, demo_config) == 1
    assert "audit" in capsys.readouterr().err


def test_no_private_metadata_in_released_files(audited_run, demo_config):
    run = audited_run
    write_eval_and_study(run)
    assert package(run, demo_config) == 0
    idx = pd.read_parquet(run.index)
    needles = private_needles(run)
    assert "fake/1000_0.png" in needles and "1000_0" in needles  # the scan looks for the real thing
    assert find_leaks(run.release, needles) == []
    # and, independently of the needle list, the raw ids and paths of the index are nowhere in the text files
    text = "\n".join(p.read_text(errors="replace") for p in run.release.rglob("*") if p.suffix in (".md", ".json"))
    for src, img in zip(idx["source"], idx["image_id"]):
        assert src not in text and img not in text
    assert "[redacted]" in (run.release_dataset / "README.md").read_text()


def test_pipeline_with_pickled_weights_is_refused(audited_run, demo_config, capsys):
    (audited_run.pipeline / "unet" / "extra.bin").write_bytes(b"not a real pickle")
    assert package(audited_run, demo_config) == 1
    assert "extra.bin" in capsys.readouterr().err
