"""Subcommands of the release package: package, verify, publish, release. (Being built: issue 4.)"""

from __future__ import annotations

import argparse

from cspine.stage import add_run_options


def _todo(args: argparse.Namespace) -> int:
    raise SystemExit(f"cspine {args.command}: not built yet")


def register(sub: argparse._SubParsersAction) -> None:
    for name, text in [
        ("package", "write release/"), ("verify", "check a release"), ("publish", "upload release/"), ("release", "run every stage"),
    ]:
        p = sub.add_parser(name, help=text, description=text)
        add_run_options(p)
        p.set_defaults(func=_todo)
