"""Typed run config: one YAML file per run under ``configs/``, validated with pydantic.

Each stage owns its section model in its own package (``training.config``, ``privacy.config``, ...);
this module composes them into :class:`Config` and loads YAML. Every model forbids unknown keys, so a
misspelt or missing key fails in :func:`load_config` with a :class:`ConfigError` naming the key and the
file, before any stage does work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from cspine.schema import Strict

from evaluation.config import EvaluateConfig
from privacy.config import AuditConfig
from reader_study.config import StudyConfig
from release.config import ReleaseConfig
from training.config import DataConfig, ModelConfig, SampleConfig, TrainConfig


class ConfigError(ValueError):
    """A config file is missing, unreadable, or has a wrong or missing key."""


class Config(Strict):
    """The whole run config. ``run_dir`` defaults to ``runs/<name>`` relative to the working directory."""

    name: str = Field(description="Run name; the run directory is runs/<name> unless run_dir is set.")
    seed: int = Field(0, description="Master seed: data split, training, sampling, study randomisation.")
    run_dir: Path | None = Field(None, description="Run directory (default runs/<name>).")
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    sample: SampleConfig
    audit: AuditConfig = Field(default_factory=AuditConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)

    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir is not None else Path("runs") / self.name


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/demo.yaml for the keys)"
        elif e["type"] == "missing":
            msg = "missing required key"
        else:
            msg = e["msg"]
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def config_from_dict(raw: Any, source: str = "<dict>") -> Config:
    """Validate a parsed mapping; errors name each bad key and ``source``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping of keys")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load and validate a YAML config file. ``overrides`` are dotted keys (``train.max_steps``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config_from_dict(raw, str(path))


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML (what a run directory's config.yaml holds)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
