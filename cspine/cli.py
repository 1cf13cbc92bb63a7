"""The `cspine` command, derived from the stage table (cspine.stages): one subcommand per stage, the tools,
and `cspine release`, which runs every stage in order by calling :func:`cspine.stages.execute` directly.

From ``cspine --help`` a newcomer reaches the code of a stage in two hops: the epilog names each stage's
command module, whose ``run`` calls the function doing the work. Heavy imports (torch, diffusers) happen
inside the stages' ``run`` functions, so ``cspine --help`` is instant. Run it as ``cspine``,
``python -m cspine`` or, for several processes, ``accelerate launch -m cspine train``.

Exit codes (cspine.errors): 0 success, 1 a gate or check said no, 2 bad input or usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from cspine.errors import GateClosed, StageError
from cspine.runopts import add_run_options, open_run
from cspine import stages
from cspine.stages import Stage, execute

RELEASE_HELP = ("run every stage above in order, resuming what is done (what `make release` runs)")


def _epilog() -> str:
    width = max(len(s.name) for s in (*stages.STAGES, *stages.TOOLS))
    lines = ["stages, in pipeline order (each writes STAGE/record.json; ../shared/DESIGN.md):"]
    for s in stages.STAGES:
        lines.append(f"  {s.name:<{width}}  {s.help}  [{s.command.module}]")
    lines.append(f"  {'study':<{width}}  expert reader study: build trials, serve the rater app, analyze answers  "
                 "[reader_study.cli]")
    lines.append(f"  {'release':<{width}}  {RELEASE_HELP}")
    lines.append("tools:")
    for s in stages.TOOLS:
        lines.append(f"  {s.name:<{width}}  {s.help}  [{s.command.module}]")
    lines.append("\nRun `cspine STAGE --help` for a stage's options. Every stage takes --config (default "
                 "configs/demo.yaml).\nExit codes: 0 done, 1 a gate or check refused, 2 bad input or usage.")
    return "\n".join(lines)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `cspine` parser and each stage's subparser (by name)."""
    from reader_study import cli as study_cli

    parser = argparse.ArgumentParser(
        prog="cspine",
        description="synthetic-cspine: from radiographs you may not share to an audited synthetic dataset you may share.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(config_model=stages.Config)
    sub = parser.add_subparsers(dest="command", metavar="STAGE")
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for stage in (*stages.STAGES, *stages.TOOLS):
        p = sub.add_parser(stage.name, help=stage.help, description=stage.command.description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if stage.folder is not None:
            add_run_options(p)
        stage.command.add_arguments(p)
        p.set_defaults(func=lambda args, stage=stage: run_command(stage, args))
        subparsers[stage.name] = p
    study_cli.register(sub)
    p = sub.add_parser("release", help=RELEASE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run " + ", ".join(s.name for s in stages.STAGES) + " in order (demo-data only for "
                       "phantom configs, evaluate only when evaluate.enabled), each under its record: a stage "
                       "that is up to date is skipped, one whose inputs changed is redone, so re-running after an "
                       "interruption, a retrain or a re-prepare resumes safely. Publishes to the local hub folder "
                       "unless release.target is hub.")
    add_run_options(p)
    p.set_defaults(func=lambda args: run_release(args, subparsers))
    return parser, subparsers


def run_command(stage: Stage, args: argparse.Namespace) -> int:
    """One stage from the command line: open the run, apply option-config, execute under its record."""
    if stage.folder is None:
        outcome = execute(stage, None, None, args)
        print(outcome.summary)
        return 0
    cfg, run = open_run(args)
    if stage.command.configure:
        cfg = stage.command.configure(cfg, args)
    outcome = execute(stage, cfg, run, args)
    print(outcome.summary)
    if outcome.verdict:
        raise GateClosed(outcome.verdict)
    return 0


def run_release(args: argparse.Namespace, subparsers: dict[str, argparse.ArgumentParser]) -> int:
    """Every stage of :func:`release_stages` in order, each with its default options."""
    cfg, run = open_run(args)
    order = stages.release_stages(cfg)
    t_all = time.perf_counter()
    for k, stage in enumerate(order, 1):
        print(f"[{k}/{len(order)}] {stage.name} ...", flush=True)
        stage_args = subparsers[stage.name].parse_args([])
        stage_cfg = stage.command.configure(cfg, stage_args) if stage.command.configure else cfg
        try:
            outcome = execute(stage, stage_cfg, run, stage_args)
        except StageError as err:
            print(f"[{k}/{len(order)}] {stage.name} FAILED: {err}\nfix the cause and re-run: stages that are up "
                  "to date are skipped", file=sys.stderr, flush=True)
            return err.exit_code
        print(f"  {outcome.summary}")
        if outcome.verdict:
            print(f"[{k}/{len(order)}] {stage.name}: {outcome.verdict}", file=sys.stderr, flush=True)
            return GateClosed.exit_code
        state = f"done in {outcome.seconds:.1f} s ({outcome.why})" if outcome.ran else "up to date"
        print(f"[{k}/{len(order)}] {stage.name} {state}", flush=True)
    print(f"release done in {time.perf_counter() - t_all:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except StageError as err:
        print(f"cspine {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("cspine: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
