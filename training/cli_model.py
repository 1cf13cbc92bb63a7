"""Placeholder (being built)."""

from __future__ import annotations

import argparse

from cspine.stage import add_run_options


def _todo(args: argparse.Namespace) -> int:
    raise SystemExit(f"cspine {args.command}: not built yet")


def register(sub: argparse._SubParsersAction) -> None:
    for name, text in [("train", "train the DDPM into model/"), ("sample", "generate synthetic images into samples/")]:
        p = sub.add_parser(name, help=text, description=text)
        add_run_options(p)
        p.set_defaults(func=_todo)
