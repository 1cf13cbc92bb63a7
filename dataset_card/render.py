"""Rendering of the dataset card and the model card (README.md of each Hub repo) from the Jinja templates in
``dataset_card/templates``. Pure functions: the caller (``release.package``) gathers the facts of a run into a
context dict; this module turns them into the Hub's YAML header plus Markdown."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import yaml

TEMPLATES = Path(__file__).parent / "templates"


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for ``n`` examples."""
    for top, label in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                       (10_000_000, "1M<n<10M")]:
        if n < top:
            return label
    return "10M<n<100M"


def dataset_header(*, license: str, pretty_name: str, n_rows: int, features_yaml: list, num_bytes: int,
                   download_size: int) -> dict:
    """The YAML metadata the Hub reads from a dataset card."""
    return {
        "license": license,
        "pretty_name": pretty_name,
        "task_categories": ["unconditional-image-generation", "image-classification"],
        "tags": ["synthetic", "medical", "radiology", "x-ray", "cervical-spine", "diffusion", "privacy-audited"],
        "size_categories": [size_category(n_rows)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        "dataset_info": {
            "features": features_yaml,
            "splits": [{"name": "train", "num_bytes": int(num_bytes), "num_examples": int(n_rows)}],
            "download_size": int(download_size),
            "dataset_size": int(num_bytes),
        },
    }


def gate_header(gated, terms: str) -> dict:
    """The Hub's access-gate keys for a card (empty when the repo is not gated)."""
    if not gated:
        return {}
    return {"extra_gated_prompt": terms, "extra_gated_fields": {"I agree to these terms": "checkbox"}}


def model_header(*, license: str, dataset_repo: str) -> dict:
    return {
        "license": license,
        "library_name": "diffusers",
        "pipeline_tag": "unconditional-image-generation",
        "tags": ["diffusers", "ddpm", "medical", "radiology", "x-ray", "cervical-spine", "synthetic-data"],
        "datasets": [dataset_repo],
    }


def include_snippet(md: str, figure_prefix: str) -> str:
    """A stage's summary.md made fit for the card: figures/NAME.png -> {figure_prefix}/NAME.png, and its
    headings shifted so the highest is level 3 (below the card's own level-2 sections)."""
    md = re.sub(r"(\]\(|src=[\"'])figures/", lambda m: m.group(1) + figure_prefix.rstrip("/") + "/", md)
    levels = [len(h) for h in re.findall(r"^(#{1,6}) ", md, flags=re.M)]
    shift = max(0, 3 - min(levels)) if levels else 0
    md = re.sub(r"^(#{1,6}) ", lambda m: "#" * min(6, len(m.group(1)) + shift) + " ", md, flags=re.M)
    return md.strip()


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, autoescape=False,
    )


def with_header(header: dict, body: str) -> str:
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" + body


def render_dataset_card(header: dict, ctx: dict) -> str:
    return with_header(header, _env().get_template("dataset_card.md.j2").render(**ctx))


def render_model_card(header: dict, ctx: dict) -> str:
    return with_header(header, _env().get_template("model_card.md.j2").render(**ctx))
