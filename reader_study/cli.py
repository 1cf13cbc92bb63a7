"""`cspine study ...`: the expert reader study's subcommands (build, serve, analyze, and organiser tools).

  build       held-out real + synthetic images -> study/ (trials, served images, answer key, access codes)
  serve       the rater web app and admin view (reader_study.server)
  analyze     answers -> study/results.json, summary.md, figures/ (reader_study.analyze)
  add-rater   new raters with fresh access codes
  raters      list raters, their access codes and progress
  simulate    simulated raters (demo and tests; flagged, never mixed with human answers)
"""

from __future__ import annotations

import argparse
import logging
import sys

from cspine.stage import add_run_options, open_run

log = logging.getLogger("cspine.study")

HELP = """\
A blinded visual Turing test of the synthetic radiographs (../shared/DESIGN.md, study/).
Typical use:
  cspine study build                      # trials, served images, access codes (study/access_codes.csv)
  cspine study serve --host 0.0.0.0       # give each rater the URL and their access code
  cspine study analyze                    # results.json, summary.md, figures/ (re-run any time)
The answer key (study/answer_key.json) is never read by the server; keep it away from raters.
"""


def _paths(args):
    from reader_study.build import StudyPaths

    cfg, run = open_run(args)
    return cfg, run, StudyPaths(run)


def _build(args: argparse.Namespace) -> int:
    from reader_study.build import build_study

    cfg, run = open_run(args)
    study = build_study(cfg, run, force=args.force)
    print(f"study {study['study_id']}: {study['n_trials']} trials of {study['alternatives']} in {run.study}")
    print(f"access codes: {run.study / 'access_codes.csv'}   answer key (keep private): {run.study / 'answer_key.json'}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from reader_study.build import admin_token, load_study
    from reader_study.server import serve

    cfg, run, paths = _paths(args)
    load_study(paths)
    host = args.host or cfg.study.host
    port = cfg.study.port if args.port is None else args.port
    token = admin_token(paths)
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    print(f"rater page: http://{shown}:{port}/   admin: http://{shown}:{port}/admin?token={token}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"listening on {host}: anyone who can reach this machine can open the page (access codes still apply)")
    serve(paths.root, token, host, port)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from reader_study.analyze import run_analysis

    cfg, run, paths = _paths(args)
    n_boot = cfg.study.bootstrap if args.bootstrap is None else args.bootstrap
    res = run_analysis(paths, n_boot, cfg.seed, cfg.study.alpha, include_simulated=args.include_simulated)
    if res is None:
        print(f"no answers in {paths.db} yet: nothing analysed (run `cspine study serve` and collect answers)")
        return 0
    acc = res["accuracy"]["pooled"]
    print(f"{res['n_raters']} raters, {res['n_answers']} answers{' (SIMULATED)' if res['simulated'] else ''}: "
          f"accuracy {acc['accuracy']:.3f} (chance {acc['chance']:.3f}, binomial p {acc['p_binomial_two_sided']:.3g}); "
          f"Fleiss kappa {_fmt(res['agreement']['on_choice']['fleiss_kappa'])}")
    for g, d in res["realism"].items():
        print(f"  realism {g}: mean {_fmt(d.get('mean'))} (n {d['n']})")
    print(f"wrote {paths.results}, {paths.summary}, {paths.figures}/")
    return 0


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _add_rater(args: argparse.Namespace) -> int:
    from reader_study.build import add_raters, load_study

    cfg, run, paths = _paths(args)
    study = load_study(paths)
    names = args.name or []
    count = max(args.count, len(names))
    for r in add_raters(paths, cfg.seed, study["n_trials"], count, names=names):
        print(f"{r.rater_id}\t{r.code}\t{r.name}")
    print(f"(also in {paths.access_codes})")
    return 0


def _raters(args: argparse.Namespace) -> int:
    from reader_study import store
    from reader_study.build import load_study

    cfg, run, paths = _paths(args)
    load_study(paths)
    with store.connect(paths.db) as conn:
        for r in store.raters(conn):
            done = store.answered(conn, r.rater_id)
            print(f"{r.rater_id}\t{r.code}\t{done}/{len(r.trial_order)}\t{r.name}{' (simulated)' if r.simulated else ''}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from reader_study.build import load_study
    from reader_study.simulate import simulate

    cfg, run, paths = _paths(args)
    load_study(paths)
    policy = args.policy if args.policy in ("chance", "perfect") else float(args.policy)
    ids = simulate(paths, args.raters, policy, cfg.seed + args.seed_offset, answers=args.answers)
    print(f"simulated raters {', '.join(ids)} ({args.policy}) answered; they are flagged as simulated in {paths.db}")
    return 0


def _clear_errors(name: str, func):
    """Bad input (a missing file, a malformed table) ends with one line naming it, not a traceback."""
    from cspine.config import ConfigError

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ConfigError:
            raise
        except (FileNotFoundError, ValueError) as err:
            print(f"cspine study {name}: {err}", file=sys.stderr)
            return 2

    return run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="expert reader study: build trials, serve the rater app, analyze answers",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = p.add_subparsers(dest="study_command", metavar="ACTION")

    def action(name: str, text: str, func) -> argparse.ArgumentParser:
        q = ssub.add_parser(name, help=text, description=text)
        add_run_options(q)
        q.set_defaults(func=_clear_errors(name, func))
        return q

    q = action("build", "build study/ from held-out real images and synthetic samples (skips if built)", _build)
    q.add_argument("--force", action="store_true", help="rebuild even if the same study is built (refused once answers exist)")

    q = action("serve", "serve the rater web app and the admin view (answers go to study/responses.sqlite)", _serve)
    q.add_argument("--host", default=None, help="address to listen on (default study.host, 127.0.0.1; 0.0.0.0 for a LAN)")
    q.add_argument("--port", type=int, default=None, help="port (default study.port, 8765)")

    q = action("analyze", "statistics of the answers -> study/results.json, summary.md, figures/", _analyze)
    q.add_argument("--bootstrap", type=int, default=None, help="MRMC bootstrap resamples (default study.bootstrap)")
    q.add_argument("--include-simulated", action="store_true", help="analyse simulated raters' answers alongside humans'")

    q = action("add-rater", "add raters with fresh access codes (printed, and written to study/access_codes.csv)", _add_rater)
    q.add_argument("--name", action="append", help="rater name (repeatable; one rater per name)")
    q.add_argument("--count", type=int, default=1, help="how many raters to add (default 1, or one per --name)")

    action("raters", "list raters with access codes and progress", _raters)

    q = action("simulate", "add simulated raters that answer every trial (demo/testing; flagged as simulated)", _simulate)
    q.add_argument("--raters", type=int, default=4, help="how many simulated raters (default 4)")
    q.add_argument("--policy", default="chance", help="chance | perfect | probability of picking the real image (default chance)")
    q.add_argument("--answers", type=int, default=None, help="trials each answers (default all)")
    q.add_argument("--seed-offset", type=int, default=0, help="added to the run seed for the simulated answers")

    def _no_action(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=_no_action)
