"""`cspine package` and `cspine verify` on a small audited run: the shards load with the real
``datasets.load_dataset`` and hold the sample PNGs byte for byte, flagged images are gone, the manifest catches
corruption and partial files, a failed audit is refused, only allow-listed figures ship, and no private source
metadata is released."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cspine.images import read_gray, write_png
from cspine.cli import main as cspine
from release.leaks import find_leaks, private_needles
from tests.release.conftest import PLANTED, audit, audit_summary, plant_training_copy, write_eval_and_study


def package(run, config=None, *extra):
    """`cspine package` with the run's own config (the one its records were made with)."""
    return cspine(["package", "--config", str(run.config), *extra])


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
    excluded = audit_summary(run)["excluded"]
    assert len(ds) == len(samples) - len(excluded) and PLANTED not in set(ds["image_id"])
    assert isinstance(ds.features["image"], datasets.Image)
    assert {"pixel_flag", "phash_flag", "flagged", "closeness"} <= set(ds.column_names)
    assert set(ds["closeness"]) <= {"<1%", "1-10%", "10-50%", ">=50%"}
    # no exact distance of any kind, no training image ids
    assert not [c for c in ds.column_names if c.endswith("_score") or "distance" in c or c.endswith("_nn_id")]
    files = dict(zip(samples["image_id"], samples["file"]))
    for row in ds:
        got = np.array(row["image"])
        want = read_gray(run.samples / files[row["image_id"]])
        assert got.dtype == want.dtype and np.array_equal(got, want), row["image_id"]
        assert row["scheduler"] == "ddim" and row["checkpoint"] == "final"
    raw = {r["image_id"]: r["image"]["bytes"] for p in shards for r in pq.read_table(p).to_pylist()}
    assert all(raw[i] == (run.samples / files[i]).read_bytes() for i in raw)  # byte for byte: what was audited


def test_verify_accepts_then_names_flipped_byte(audited_run, demo_config, capsys):
    run = audited_run
    assert package(run, demo_config, "--set", "release.shard_size_mb=0.03") == 0
    assert cspine(["verify", str(run.release_dataset)]) == 0
    m = json.loads((run.release_dataset / "manifest.json").read_text())
    shard = next(f for f in m["files"] if f["path"].startswith("data/"))
    assert shard["rows"] > 0 and len(shard["sha256"]) == 64
    assert m["total_rows"] == len(pd.read_parquet(run.samples_table)) - len(audit_summary(run)["excluded"])

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
    # A second memorised image, flagged and excluded by the re-run audit: shards change, stale names go.
    plant_training_copy(run, "final-000010", train_row=1)
    assert audit(run, "--exclude-flagged") == 0
    assert {PLANTED, "final-000010"} <= set(audit_summary(run)["excluded"])
    assert package(run, demo_config, "--set", "release.shard_size_mb=0.03") == 0
    assert cspine(["verify", str(run.release_dataset)]) == 0
    total = sum(pq.read_metadata(p).num_rows for p in (run.release_dataset / "data").glob("*.parquet"))
    assert total == len(pd.read_parquet(run.samples_table)) - len(audit_summary(run)["excluded"])


def test_failed_audit_is_refused(fake_run, capsys):
    plant_training_copy(fake_run)
    assert audit(fake_run, "--set", "audit.exclude_flagged=false") == 1  # the strict gate closes
    capsys.readouterr()
    assert package(fake_run) == 1
    err = capsys.readouterr().err
    assert "did not pass" in err and "audit failed" in err
    assert not (fake_run.release_dataset / "manifest.json").exists()


def test_missing_audit_is_refused(fake_run, capsys):
    assert package(fake_run) == 2  # a stage run before the one it needs: usage
    assert "cspine audit" in capsys.readouterr().err


def test_only_allow_listed_figures_ship(audited_run):
    run = audited_run
    write_eval_and_study(run)  # eval/figures has a real image (examples.png) beside an allow-listed curve
    assert package(run) == 0
    shipped = sorted(p.relative_to(run.release_dataset).as_posix() for p in run.release_dataset.rglob("*.png"))
    assert "figures/eval/checkpoint_curve.png" in shipped and "figures/study/accuracy_per_rater.png" in shipped
    assert not [p for p in shipped if p.endswith("examples.png")]
    card = (run.release_dataset / "README.md").read_text()
    assert "examples.png" not in card and "figures/eval/checkpoint_curve.png" in card


def test_a_real_image_in_an_allow_listed_figure_is_caught(audited_run, capsys):
    run = audited_run
    write_eval_and_study(run)
    real = np.load(run.pixels)[5]
    write_png(run.eval / "figures" / "synthetic_examples.png", real)  # mislabelled: real pixels
    assert package(run) == 1
    err = capsys.readouterr().err
    assert "real radiographs found" in err and "synthetic_examples.png" in err
    assert not run.release_dataset.exists() and not run.release_model.exists()


def test_no_private_metadata_in_released_files(audited_run, demo_config):
    run = audited_run
    write_eval_and_study(run)
    with open(run.study / "summary.md", "a") as fh:  # a stage summary naming a training image and its source
        fh.write("\nThe closest pair was with 1000_0 (source fake/1000_0.png).\n")
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
    run = audited_run
    (run.pipeline / "unet" / "extra.bin").write_bytes(b"not a real pickle")
    assert package(run) == 2  # the weights changed after the audit: the record chain refuses first
    assert "outputs of `cspine train` changed" in capsys.readouterr().err
    from cspine.stages import load_config
    from tests.fakerun import write_records

    write_records(load_config(run.config), run, ("train", "sample"))  # as if training had written it
    assert audit(run, "--exclude-flagged") == 0
    assert package(run) == 2  # then the pickle itself is refused as bad input
    assert "extra.bin" in capsys.readouterr().err
