"""What a stage package hands the stage table (cspine.stages): its command, as plain functions.

A stage's command module builds one :class:`Command` per subcommand. The `cspine` command adds the shared
run options (cspine.runopts) and calls ``run`` through :func:`cspine.stages.execute`, which keeps the
stage's provenance record; ``cspine release`` calls the same ``run`` with the parser's defaults.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Command:
    """``run(cfg, run, args)`` does the stage's work (raising cspine.errors for expected failures) and
    returns a result; ``summary(result, cfg, run)`` is the one line printed after it. ``configure(cfg, args)``
    turns options that are really config (``audit --exclude-flagged``) into config, so the stage's record
    keeps them; ``verdict(cfg, run)`` returns why a gate is closed after the stage (exit code 1), or None;
    ``reruns(args)`` says whether the options ask for work even when the stage is up to date (``--force``,
    ``evaluate --samplers``), and an ``args.restart`` asks for its folder to be cleared first."""

    description: str
    run: Callable[[Any, Any, argparse.Namespace], Any]
    summary: Callable[[Any, Any, Any], str]
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    configure: Callable[[Any, argparse.Namespace], Any] | None = None
    verdict: Callable[[Any, Any], str | None] | None = None
    reruns: Callable[[argparse.Namespace], bool] = lambda args: bool(getattr(args, "force", False))

    @staticmethod
    def restarts(args: argparse.Namespace) -> bool:
        """Whether the options ask to clear the stage's folder first (``train --no-resume``)."""
        return bool(getattr(args, "restart", False))

    @property
    def module(self) -> str:
        """The module whose ``run`` does the work (what `cspine --help` points a reader to)."""
        return self.run.__module__
