"""Config section of packaging and publishing (`cspine package`, `cspine publish`, `cspine release`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from cspine.config import Strict

CSXA_CITATION = """@article{ran2024csxa,
  title   = {A high-quality dataset featuring classified and annotated cervical spine X-ray atlas},
  author  = {Ran, Yu and Qin, Wanli and Qin, Changlong and Li, Xiaobin and Liu, Yixing and Xu, Lin and Mu, Xiaohong and Yan, Li and Wang, Bei and Dai, Yuxiang and Chen, Jiang and Han, Dongran},
  journal = {Scientific Data},
  volume  = {11},
  pages   = {625},
  year    = {2024},
  doi     = {10.1038/s41597-024-03383-6}
}"""


class ReleaseConfig(Strict):
    """Where the dataset and the model go, how the shards are cut, and what the cards say."""

    dataset_repo: str = Field("owner/synthetic-cspine", description="Hub dataset repo id (owner/name).")
    model_repo: str = Field("owner/synthetic-cspine-ddpm", description="Hub model repo id (owner/name).")
    shard_size_mb: float = Field(500, gt=0, description="Target Parquet shard size in MB (1e6 bytes).")
    rows_per_row_group: int = Field(100, ge=1, description="Rows per Parquet row group; small groups keep the Hub's dataset viewer fast.")
    local_hub: Path | None = Field(
        Path("hub"),
        description="Without a token, publish here: <local_hub>/<owner>/<name>, readable by load_dataset(path) and from_pretrained(path).",
    )
    license: str = Field("cc-by-nc-4.0", description="Hub licence id of both repos.")
    pretty_name: str = Field("Synthetic lateral cervical-spine radiographs", description="Dataset card title.")
    target: Literal["local", "hub"] = Field(
        "local",
        description="Where `cspine publish` and `cspine release` put the release: the local hub folder (local_hub), "
        "or the Hugging Face Hub (hub; needs a token). Uploading is never implied by a token being present.",
    )
    private: bool = Field(True, description="Create the Hub repos as private (the default); false publishes them publicly.")
    gated: Literal[False, "auto", "manual"] = Field(
        False,
        description="Gate access to the Hub repos: users must accept gate_terms first (auto: granted at once; manual: "
        "the owner approves each request). Applies when the repos are public.",
    )
    gate_terms: str = Field(
        "You agree not to attempt to identify any person from these images or the model, and not to use them for "
        "clinical decisions.",
        description="Terms users accept before access when gated (written into both cards).",
    )
    prune_remote: bool = Field(
        False, description="Delete remote files that this tool did not upload (default: only files of its own earlier releases).",
    )
    source_name: str = Field(
        "CSXA (Cervical Spine X-ray Atlas)",
        description="Name of the real training data, for the cards (phantom runs say so instead).",
    )
    source_citation: str = Field(CSXA_CITATION, description="BibTeX of the real training data.")
    citation: str = Field("", description="BibTeX of this dataset (empty: a generated @misc entry).")
