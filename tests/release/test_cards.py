"""The dataset card and the model card: Hub metadata parsed back with huggingface_hub's card classes, the
datasheet sections, stage summaries and figures included when present, and counts that match the shards."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, ModelCard

from dataset_card.render import include_snippet, size_category
from cspine.cli import main as cspine
from tests.release.conftest import write_eval_and_study

SECTIONS = ["## Summary", "## How it was made", "## Intended uses", "## Out-of-scope uses", "## Privacy audit",
            "## Quality metrics", "## Expert reader study", "## Limitations and biases", "## How to load",
            "## Citation", "## Licence"]


def _package(run, config=None):
    assert cspine(["package", "--config", str(run.config)]) == 0


def _figure_links(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def test_dataset_card_metadata_and_sections(audited_run, demo_config):
    run = audited_run
    write_eval_and_study(run)
    _package(run, demo_config)
    card = DatasetCard.load(run.release_dataset / "README.md")
    d = card.data.to_dict()
    assert d["license"] == "cc-by-nc-4.0"
    assert {"synthetic", "medical", "radiology", "x-ray", "cervical-spine"} <= set(d["tags"])
    assert d["size_categories"] == ["n<1K"] and d["pretty_name"]
    assert d["task_categories"]
    assert d["configs"][0]["data_files"][0] == {"split": "train", "path": "data/train-*"}
    info = d["dataset_info"]
    n = sum(pq.read_metadata(p).num_rows for p in (run.release_dataset / "data").glob("*.parquet"))
    assert info["splits"][0]["num_examples"] == n
    assert info["download_size"] == sum(p.stat().st_size for p in (run.release_dataset / "data").glob("*.parquet"))
    assert {"name": "image", "dtype": "image"} in info["features"]
    text = card.text
    pos = [text.index(s) for s in SECTIONS]
    assert pos == sorted(pos)
    assert "CSXA" in text and "@article{ran2024csxa" in text  # training data and its citation
    assert "ddim" in text and "FID | 42.5" in text and "54% accuracy" in text
    assert "Flag rule" in text or "flagged" in text  # the audit's summary.md is included
    links = _figure_links(text)
    assert {"figures/audit/distances.png", "figures/eval/checkpoint_curve.png",
            "figures/study/accuracy_per_rater.png"} <= set(links)
    assert not [link for link in links if link.endswith("examples.png")]  # real pixels never linked
    for link in links:
        assert (run.release_dataset / link).is_file(), link
    assert 'load_dataset("owner/synthetic-cspine", split="train")' in text


def test_sections_without_eval_and_study_say_so(audited_run, demo_config):
    _package(audited_run, demo_config)
    text = DatasetCard.load(audited_run.release_dataset / "README.md").text
    assert "No quality evaluation" in text and "No expert reader study" in text


def test_model_card(audited_run, demo_config):
    run = audited_run
    write_eval_and_study(run)
    _package(run, demo_config)
    card = ModelCard.load(run.release_model / "README.md")
    assert card.data.library_name == "diffusers"
    assert card.data.pipeline_tag == "unconditional-image-generation"
    assert card.data.datasets == ["owner/synthetic-cspine"]
    assert "64 x 64" in card.text and "DDIMScheduler" in card.text and "fid | 42.5" in card.text
    assert (run.release_model / "model_index.json").is_file()
    assert list(Path(run.release_model / "unet").glob("*.safetensors"))


def test_helpers():
    assert size_category(999) == "n<1K" and size_category(1000) == "1K<n<10K" and size_category(250_000) == "100K<n<1M"
    md = "# Title\n\n![a](figures/x.png) <img src=\"figures/y.png\">"
    out = include_snippet(md, "figures/audit")
    assert out.startswith("### Title") and include_snippet("## A\n### B", "f").split("\n") == ["### A", "#### B"] and "figures/audit/x.png" in out and "figures/audit/y.png" in out
