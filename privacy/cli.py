"""Subcommands of the privacy package: audit. (Being built: issue 3.)"""

from __future__ import annotations

import argparse

from cspine.stage import add_run_options


def _todo(args: argparse.Namespace) -> int:
    raise SystemExit(f"cspine {args.command}: not built yet")


def register(sub: argparse._SubParsersAction) -> None:
    for name, text in [
        ("audit", "privacy audit of samples/ against the training images"),
    ]:
        p = sub.add_parser(name, help=text, description=text)
        add_run_options(p)
        p.set_defaults(func=_todo)
