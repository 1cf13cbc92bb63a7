"""Subcommands of the training package. Data commands (demo-data, prepare) live in
``training.cli_data``; model commands (train, sample) in ``training.cli_model``."""

from __future__ import annotations

import argparse

from training import cli_data, cli_model


def register(sub: argparse._SubParsersAction) -> None:
    cli_data.register(sub)
    cli_model.register(sub)
