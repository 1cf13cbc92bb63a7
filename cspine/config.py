"""Typed run config: the strict base every config section uses, and loading YAML into a composed config.

Each stage owns its section model in its own package (``training.config``, ``privacy.config``, ...) built on
:class:`Strict`; the composed ``Config`` of all sections is assembled from the stage table
(``cspine.stages``), above the stages, so this module imports no stage. Every model forbids unknown keys,
so a misspelt or missing key fails in :func:`load_config_file` with a :class:`ConfigError` naming the key and
the file, before any stage does work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cspine.errors import StageError


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(StageError, ValueError):
    """A config file is missing, unreadable, or has a wrong or missing key (exit code 2)."""


class RunConfig(Strict):
    """The keys of a run that belong to no stage; the stage table adds one field per section."""

    name: str = Field(description="Run name; the run directory is runs/<name> unless run_dir is set.")
    seed: int = Field(0, description="Master seed: data split, training, sampling, study randomisation.")
    run_dir: Path | None = Field(None, description="Run directory (default runs/<name>).")

    @property
    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir is not None else Path("runs") / self.name


C = TypeVar("C", bound=RunConfig)


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


def config_from_dict(raw: Any, model: type[C], source: str = "<dict>") -> C:
    """Validate a parsed mapping as ``model``; errors name each bad key and ``source``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping of keys")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config_file(path: str | Path, model: type[C], overrides: dict[str, Any] | None = None) -> C:
    """Load and validate a YAML config file as ``model``. ``overrides`` are dotted keys (``train.max_steps``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid config {path}: the top level must be a mapping of keys")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"invalid override {dotted}: {part} is not a section in {path}")
        node[leaf] = value
    return config_from_dict(raw, model, str(path))


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML (what a run directory's config.yaml holds)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


#: Inference samplers (cspine.generation.sampling.make_scheduler builds them), named here so the sample and the
#: evaluate configs validate the same names. Every one makes one network evaluation per step.
SamplerName = Literal["ddpm", "ddim", "dpmsolver++", "dpmsolver++-karras", "dpmsolver++-sde",
                      "dpmsolver++-sde-karras", "unipc", "unipc-karras"]
SAMPLER_NAMES: tuple[str, ...] = get_args(SamplerName)
