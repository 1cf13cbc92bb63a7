"""What every stage's command shares: the --config/--run-dir/--set options, opening the run, and its log.

The `cspine` command (``cspine.cli``) adds these options to every stage's parser and opens the run with
:func:`open_run`: the validated config (composed by the stage table) and the :class:`~cspine.rundir.RunDir`.
``runs/NAME/config.yaml`` is written once, when the run is created (one options file per run, as in EDM); a
later ``--set`` changes only the stage it is given to, and that stage's ``record.json`` says so. Every
command appends to the run's one log file, ``runs/NAME/log.txt``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import Any

import yaml

from cspine import atomic
from cspine.config import ConfigError, RunConfig, dump_config, load_config_file
from cspine.rundir import RunDir

DEFAULT_CONFIG = Path("configs/demo.yaml")

log = logging.getLogger("cspine")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", type=Path, default=DEFAULT_CONFIG,
        help=f"run config YAML (default: {DEFAULT_CONFIG}, the embedded phantom demo)",
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="run directory (default: runs/<name> from the config)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.max_steps=50 (repeatable; VALUE is parsed as YAML)",
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({err})") from None
    return out


def load_run_config(args: argparse.Namespace, model: type[RunConfig]) -> RunConfig:
    """The config named by ``args`` (``--config``, ``--set``, ``--run-dir``), validated as ``model``."""
    cfg = load_config_file(args.config, model, parse_overrides(getattr(args, "overrides", [])))
    if getattr(args, "run_dir", None) is not None:
        cfg = cfg.model_copy(update={"run_dir": args.run_dir})
    return cfg


def open_run(args: argparse.Namespace, model: type[RunConfig] | None = None) -> tuple[Any, RunDir]:
    """Validate the config named by ``args`` and return it with the run directory (created, with its log).

    ``model`` defaults to ``args.config_model``, which the `cspine` command sets to the composed config.
    """
    cfg = load_run_config(args, model or args.config_model)
    run = RunDir(cfg.resolved_run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    if not run.config.is_file():
        atomic.write_text(run.config, dump_config(cfg))
    attach_run_log(run, _command_line(args))
    return cfg, run


def _command_line(args: argparse.Namespace) -> str:
    """The command as the user could type it again (stage, config, run directory, overrides)."""
    words = ["cspine", str(getattr(args, "command", "") or "")]
    words += ["--config", str(args.config)] + (["--run-dir", str(args.run_dir)] if getattr(args, "run_dir", None) else [])
    for item in getattr(args, "overrides", []):
        words += ["--set", item]
    return shlex.join(words)


def attach_run_log(run: RunDir, command: str) -> None:
    """Send the ``cspine`` loggers to ``run.log`` too (once per process and run), starting with the command line."""
    root = logging.getLogger("cspine")
    path = str(run.log.resolve())
    if any(getattr(h, "baseFilename", None) == path for h in root.handlers):
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    root.info("command: %s", command)
