"""`cspine study ...`: the expert reader study's subcommands (build, serve, analyze, and organiser tools).

  build       held-out real + synthetic images -> study/ (trials, served images, answer key, access codes); first
              checks on the served files that no simple statistic picks the real image (study/blinding.json)
  serve       the rater web app and admin view (reader_study.server)
  analyze     answers -> study/results.json, summary.md, figures/ (reader_study.analyze)
  add-rater   new raters with fresh access codes
  raters      list raters, their access codes and progress
  simulate    simulated raters (demo and tests; flagged, never mixed with human answers)

`serve` never prints the admin token: it prints where the token is (study/admin_token.txt, mode 0600, or
$CSPINE_STUDY_ADMIN_TOKEN), and the organiser types it into the /admin sign-in form (reader_study.server
explains the session cookie). It listens on 127.0.0.1 unless told otherwise and warns when told to speak
plain HTTP on any other address; SERVE_HELP says how to put HTTPS in front.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cspine.runopts import add_run_options, open_run

log = logging.getLogger("cspine.study")

HELP = """\
A blinded visual Turing test of the synthetic radiographs (../shared/DESIGN.md, study/).
Typical use:
  cspine study build                      # trials, served images, access codes (study/access_codes.csv);
                                          # every image with one common histogram (--tone, reader_study/tone.py);
                                          # refuses (exit 1) when a simple statistic tells real from synthetic
  cspine study serve                      # on 127.0.0.1; put an HTTPS reverse proxy in front (serve --help)
  cspine study analyze                    # results.json, summary.md, figures/ (re-run any time)
The answer key (study/answer_key.json) is never read by the server; keep it away from raters.
"""

SERVE_HELP = """\
Serve the rater web app and the admin view (answers go to study/responses.sqlite).

Raters open the page and type their access code (study/access_codes.csv, `cspine study raters`).
The organiser opens /admin and signs in with the admin token: the one line of study/admin_token.txt
(mode 0600, made by `cspine study build`), or $CSPINE_STUDY_ADMIN_TOKEN if set. The token is never
printed and never part of a URL: the sign-in form POSTs it once and gets an HttpOnly, SameSite=Strict
session cookie (scripts may send `Authorization: Bearer <token>` instead).

Access codes, the admin token and real radiographs must not cross a network in plain HTTP. The server
listens on 127.0.0.1 by default; to reach raters on other machines, keep it there and put a reverse
proxy with HTTPS in front, e.g. with Caddy (automatic certificates):
    cspine study serve --port 8765
    caddy reverse-proxy --from study.example.org --to 127.0.0.1:8765
or nginx (`listen 443 ssl; ... location / { proxy_pass http://127.0.0.1:8765;
proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-For $remote_addr; }`).
Without a proxy, uvicorn can speak TLS itself: --ssl-certfile cert.pem --ssl-keyfile key.pem (with --host
set to the address raters reach). For one organiser at a distance, an SSH tunnel also works:
ssh -L 8765:127.0.0.1:8765 host. A --host other than loopback without TLS prints a warning.

The access log on stderr carries method, path and status only, never a query string.
"""

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _paths(args):
    from reader_study.build import StudyPaths

    cfg, run = open_run(args)
    return cfg, run, StudyPaths(run)


def _build(args: argparse.Namespace) -> int:
    from reader_study.build import build_study

    cfg, run = open_run(args)
    if args.allow_tells:
        cfg.study.blinding.allow_tells = True
    if args.tone:
        cfg.study.tone = args.tone
    study = build_study(cfg, run, force=args.force)
    record_build(cfg, run)
    print(f"study {study['study_id']}: {study['n_trials']} trials of {study['alternatives']} in {run.study}")
    print(f"access codes: {run.study / 'access_codes.csv'}   answer key (keep private): {run.study / 'answer_key.json'}")
    blind = run.study / "blinding.json"
    if blind.is_file():
        import json

        print(f"blinding check: {json.loads(blind.read_text()).get('verdict', 'disabled')} ({blind})")
    return 0


def record_build(cfg, run) -> None:
    """study/record.json, as every stage keeps one (cspine.provenance): the real and synthetic images and the
    audit the trials were built from, and the files raters will be served."""
    from cspine import provenance, rundata

    inputs = {**rundata.data_fp(run), "samples": rundata.samples_fp(run),
              "audit/summary.json": rundata.sha256_memo(run.audit_summary)}
    outputs = {"study.json": rundata.sha256_memo(run.study / "study.json"), "assets": rundata.files(run.study / "assets"),
               "blinding.json": rundata.sha256_memo(run.study / "blinding.json")}
    provenance.write_record(run.study, "study build", {"seed": cfg.seed, "study": cfg.study.model_dump(mode="json")},
                            inputs, outputs)


def _serve(args: argparse.Namespace) -> int:
    import os

    from reader_study.build import admin_token, load_study
    from reader_study.server import serve

    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        print("cspine study serve: --ssl-certfile and --ssl-keyfile go together (give both or neither)", file=sys.stderr)
        return 2
    for f in (args.ssl_certfile, args.ssl_keyfile):
        if f and not os.path.isfile(f):
            raise FileNotFoundError(f"{f}: TLS file not found")
    cfg, run, paths = _paths(args)
    load_study(paths)
    host = args.host or cfg.study.host
    port = cfg.study.port if args.port is None else args.port
    token = admin_token(paths)
    scheme = "https" if args.ssl_certfile else "http"
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    where = "$CSPINE_STUDY_ADMIN_TOKEN" if os.environ.get("CSPINE_STUDY_ADMIN_TOKEN") else str(paths.admin_token)
    print(f"rater page: {scheme}://{shown}:{port}/")
    print(f"admin:      {scheme}://{shown}:{port}/admin  (sign in with the token in {where})")
    if host not in _LOOPBACK and not args.ssl_certfile:
        print(f"WARNING: plain HTTP on {host}: access codes, the admin token and the radiographs cross the network "
              "unencrypted. Serve on 127.0.0.1 behind an HTTPS reverse proxy, or pass --ssl-certfile/--ssl-keyfile "
              "(see `cspine study serve --help`).", file=sys.stderr)
    sys.stdout.flush()
    serve(paths.root, token, host, port, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
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

    def action(name: str, text: str, func, description: str | None = None) -> argparse.ArgumentParser:
        q = ssub.add_parser(name, help=text, description=description or text,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        add_run_options(q)
        q.set_defaults(func=_clear_errors(name, func))
        return q

    q = action("build", "build study/ from held-out real images and synthetic samples (skips if built)", _build)
    q.add_argument("--force", action="store_true", help="rebuild even if the same study is built (refused once answers exist)")
    q.add_argument("--allow-tells", action="store_true",
                   help="build even when a simple statistic of the served images picks the real one better than chance "
                        "(the blinding check, study/blinding.json, records the override; default: refuse, exit 1)")
    q.add_argument("--tone", choices=("match", "as_is"), default=None,
                   help="display policy for tone (default study.tone, match): match gives every served image, real or "
                        "synthetic, exactly the same 8-bit histogram, so raters judge the anatomy, not brightness or "
                        "contrast (reader_study/tone.py); as_is serves each image's own tone")

    q = action("serve", "serve the rater web app and the admin view (answers go to study/responses.sqlite)", _serve,
               SERVE_HELP)
    q.add_argument("--host", default=None, help="address to listen on (default study.host, 127.0.0.1; "
                   "keep it and put an HTTPS reverse proxy in front, or use --ssl-* for another address)")
    q.add_argument("--port", type=int, default=None, help="port (default study.port, 8765)")
    q.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this PEM certificate (chain) file")
    q.add_argument("--ssl-keyfile", default=None, help="the private key of --ssl-certfile (PEM)")

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
