"""What every stage's command shares: the --config/--run-dir/--set options and loading them.

A stage command calls :func:`add_run_options` on its argparse parser and :func:`open_run` with the parsed
args to get the validated :class:`~cspine.config.Config` and the :class:`~cspine.rundir.RunDir`; the
resolved config is written to ``runs/NAME/config.yaml`` so every run folder says how it was made.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

from cspine import atomic
from cspine.config import Config, dump_config, load_config
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
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def open_run(args: argparse.Namespace) -> tuple[Config, RunDir]:
    """Validate the config named by ``args`` and return it with the run directory (created)."""
    cfg = load_config(args.config, parse_overrides(getattr(args, "overrides", [])))
    if getattr(args, "run_dir", None) is not None:
        cfg = cfg.model_copy(update={"run_dir": args.run_dir})
    run = RunDir(cfg.resolved_run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    atomic.write_text(run.config, dump_config(cfg))
    return cfg, run
