"""Config section of packaging and publishing (`cspine package`, `cspine publish`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from cspine.schema import Strict


class ReleaseConfig(Strict):
    """Where the dataset and the model go, and how the shards are cut."""

    dataset_repo: str = Field("owner/synthetic-cspine", description="Hub dataset repo id.")
    model_repo: str = Field("owner/synthetic-cspine-ddpm", description="Hub model repo id.")
    shard_size_mb: int = Field(500, ge=1, description="Target Parquet shard size.")
    rows_per_row_group: int = Field(100, ge=1, description="Small row groups keep the Hub's dataset viewer fast.")
    local_hub: Path | None = Field(
        None, description="Without a token, publish to this folder (default: hub/ beside the runs)."
    )
    license: str = "cc-by-nc-4.0"
    pretty_name: str = "Synthetic lateral cervical-spine radiographs"
    private: bool = False
