"""The ``workbench`` command: run experiments, list runs, run the demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from workbench.errors import WorkbenchError
from workbench.production.cli import add_production_commands, add_replica_arguments
from workbench.store import DEFAULT_DB

DEMO_EXPERIMENTS = ["agrawal_drifts.yaml", "kafka_loans.yaml"]
DEMO_REPORT = "reports/demo.html"
EXIT_INTERRUPTED = 130


def _experiments_dir() -> Path:
    """experiments/ of the checkout (the demo configs live beside the package)."""
    return Path(__file__).resolve().parent.parent / "experiments"


def format_summary(summary: pd.DataFrame) -> str:
    if summary.empty:
        return "(no learners)"
    df = summary.copy()
    for col in df.columns:
        if col in ("events", "labelled"):
            df[col] = df[col].map(lambda v: f"{int(v):,}" if pd.notna(v) else "-")
        elif col == "events_per_s":
            df[col] = df[col].map(lambda v: f"{v:,.0f}" if pd.notna(v) else "-")
        elif col in ("predict_us", "learn_us"):
            df[col] = df[col].map(lambda v: f"{v:.1f}" if pd.notna(v) else "-")
        elif df[col].dtype.kind == "f":
            df[col] = df[col].map(lambda v: f"{v:.4f}" if pd.notna(v) else "-")
    return df.to_string(index=False)


def print_run(run) -> None:
    info = run.info
    counts = {
        k.removeprefix("n_").replace("_", " "): info[k]
        for k in ("n_events", "n_dead_letters", "n_duplicates", "n_late", "n_unlabelled", "n_orphan_labels")
    }
    print(f"\nrun {run.id}  ({info['name']}, {info['task']}, {info['status']}, {info['elapsed_s']:.1f} s)")
    print("  " + "  ".join(f"{k}: {v:,}" for k, v in counts.items()))
    print(format_summary(run.summary()))
    for verdict in run.store.online_vs_batch(run.id).verdict:
        print(f"  A/B: {verdict}")


def cmd_run(args: argparse.Namespace) -> int:
    import workbench

    try:
        run = workbench.run(args.config, db=args.db, overrides=args.set, progress=not args.no_progress)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        failed = _failed_run(args.db, reason)
        if failed is None:  # refused before it started (a config error): main() says why
            raise
        print(f"run {failed} failed: {reason}", file=sys.stderr)
        print(
            f"  the steps logged before it failed are in {args.db}; `workbench runs --db {args.db}` "
            "lists it with its error",
            file=sys.stderr,
        )
        return 1
    print_run(run)
    print(f"\nsteps logged to {run.store.path}; run id {run.id}")
    return EXIT_INTERRUPTED if run.status == "interrupted" else 0


def _failed_run(db: str, reason: str) -> str | None:
    """The newest run of ``db`` that failed with ``reason`` (the one this command started)."""
    import workbench

    if not Path(db).exists():
        return None
    runs = workbench.connect(db).runs()
    failed = runs[(runs.status == "failed") & (runs.error == reason)]
    return None if failed.empty else str(failed.run_id.iloc[-1])


def cmd_runs(args: argparse.Namespace) -> int:
    import workbench

    df = workbench.connect(args.db).runs()
    if df.empty:
        print(f"no runs in {args.db}")
        return 0
    cols = ["run_id", "name", "status", "task", "n_events", "n_dead_letters", "elapsed_s", "created_at"]
    if df.error.notna().any():
        cols.append("error")
    df = df[cols].copy()
    for col in ("n_events", "n_dead_letters"):
        df[col] = df[col].map(lambda v: "-" if pd.isna(v) else f"{int(v):,}")
    df["elapsed_s"] = df.elapsed_s.map(lambda v: "-" if pd.isna(v) else f"{v:,.1f}")
    df["created_at"] = df.created_at.map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S"))
    print(df.to_string(index=False))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import workbench

    for name in DEMO_EXPERIMENTS:
        run = workbench.run(_experiments_dir() / name, db=args.db, progress=not args.no_progress)
        print_run(run)
        if run.status == "interrupted":
            return EXIT_INTERRUPTED
    print(f"\nall steps are in {args.db}: try `workbench runs` or open notebooks/01_quickstart.ipynb")
    if args.report:
        path = workbench.report(args.db, output=args.report)
        print(f"report of every run: {path} (open it in a browser; it works offline)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import workbench

    path = workbench.report(args.db, runs=args.run or None, output=args.output, metric=args.metric, window=args.window,
                            sweep=args.sweep)
    print(f"wrote {path.resolve()} ({path.stat().st_size / 1e6:.1f} MB; open it in a browser, it works offline)")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    import workbench

    row = workbench.connect(args.db).rollback(args.run_id, args.learner, args.to).iloc[0]
    print(
        f"{row.learner}: rolled back from version {row.from_version} to version {row.to_version}; "
        f"it is now the current model as version {row.new_version}"
    )
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    import workbench
    from workbench.drift.scoring import DELAYS_NOTE

    store = workbench.connect(args.db)
    run_id = args.run_id
    if run_id is None:
        alarmed = store.sql(
            "SELECT r.run_id FROM runs r WHERE EXISTS (SELECT 1 FROM drift_events d "
            "WHERE d.run_id = r.run_id AND d.learner <> '') ORDER BY r.created_at DESC LIMIT 1"
        )
        if alarmed.empty:
            print(f"no run in {args.db} has drift alarms (configure drift: {{detector: river.drift.ADWIN}})")
            return 0
        run_id = str(alarmed.run_id.iloc[0])
        print(f"run {run_id}: the newest run with drift alarms (give a RUN_ID for another)")
    scores = store.drift_scores(run_id, args.max_delay)
    if scores.empty:
        print(f"run {run_id} has no drift alarms (configure drift: {{detector: river.drift.ADWIN}})")
        return 0
    print(f"drift detectors of run {run_id} scored against its {int(scores.true_drifts.iloc[0])} true drifts")
    print(scores.drop(columns="delays").to_string(index=False))
    print(DELAYS_NOTE)
    return 0


def cmd_ab(args: argparse.Namespace) -> int:
    import workbench
    from workbench.evaluation.ab import pvalue_text

    store = workbench.connect(args.db)
    row = store.ab(args.run_id, args.a, args.b, args.metric, args.window).iloc[0]
    print(
        f"{args.a} vs {args.b} on {row.n:,} events both scored ({args.metric}): {row.a_value:.4f} vs {row.b_value:.4f}"
    )
    print(row.verdict)
    if row.mcnemar_pvalue == row.mcnemar_pvalue:  # not NaN: a classifier
        p = pvalue_text(row.mcnemar_pvalue)
        print(f"McNemar: statistic {row.mcnemar_statistic:,.2f}, p {'' if p.startswith('<') else '= '}{p}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from workbench.config import StopConfig
    from workbench.sources.kafka_live import kcat_line, messages

    stop = StopConfig(max_events=args.max_events, idle_timeout=args.idle_timeout, end_offsets=not args.follow)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out, "wb") as f:
        try:
            for msg in messages(args.bootstrap_servers, args.topic, start=args.start, stop=stop):
                f.write(kcat_line(msg))
                n += 1
        except KeyboardInterrupt:
            print(f"interrupted: {out} keeps the {n:,} messages recorded so far", file=sys.stderr)
            return EXIT_INTERRUPTED
    print(f"recorded {n:,} messages of {', '.join(args.topic)} to {out} (kcat -J format)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from workbench.export import export
    from workbench.export.signing import SIGNATURE

    path = export(args.run, args.learner, args.output, db=args.db, version=args.version)
    manifest = json.loads((path / "manifest.json").read_text())
    signed = "signed" if (path / SIGNATURE).exists() else "UNSIGNED"
    print(
        f"exported {manifest['learner']} v{manifest['version']} ({manifest['model']}) of run "
        f"{args.run} to {path} ({signed})\nverify it: workbench verify-bundle {path} --run {args.run} "
        f"--db {args.db}"
    )
    return 0


def cmd_sign_bundle(args: argparse.Namespace) -> int:
    from workbench.export.signing import key_id, sign_bundle, signing_key

    path = sign_bundle(args.bundle)
    print(f"signed {args.bundle} with key {key_id(signing_key())}: {path}")
    return 0


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    from workbench.export import verify

    result = verify(args.bundle, args.run, db=args.db, trust_unsigned=args.trust_unsigned)
    print(result)
    return 0 if result.ok else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from workbench.export.app import serve

    if args.store:
        from workbench.production.cli import serve_replica

        return serve_replica(args)
    serve(
        args.bundle,
        host=args.host,
        port=args.port,
        token=args.token,
        state_dir=args.state_dir,
        checkpoint_every=args.checkpoint_every,
        max_body_bytes=args.max_body_bytes,
        protect_predict=args.protect_predict,
        max_batch=args.max_batch,
        read_only=args.read_only,
        workers=args.workers,
        trust_unsigned=args.trust_unsigned,
        keep=args.keep_checkpoints,
    )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from workbench import sweeps

    if args.dry_run:
        cfg = sweeps.load(args.config, args.set)
        racing = f", racing with eta {cfg.racing.eta}" if cfg.racing else ""
        print(f"sweep {cfg.name}: {len(cfg.runs)} runs, objective {cfg.objective.mode} {cfg.objective.metric}{racing}")
        print(sweeps.plan(cfg).to_string(index=False))
        return 0
    result = sweeps.sweep(args.config, workers=args.workers, ray=args.ray, ray_address=args.ray_address,
                          db=args.db, record=args.record, overrides=args.set)
    board = result.leaderboard()
    print(f"\nsweep {result.id} ({result.status}) in {result.store.path}")
    print(board.drop(columns=["metrics", "run_key", "idx", "shard", "error"]).to_string(index=False))
    return 0 if result.status == "finished" else 1


def add_sweep_command(sub, with_db) -> None:
    p = with_db(sub.add_parser(
        "sweep", help="run many configurations of an experiment in parallel and rank them",
        description="Expand a sweep file (base experiment + grid/random/streams) into runs, run them on local "
        "processes or Ray, and record them in the database (sweeps, sweep_runs). Re-running resumes.",
    ))
    p.add_argument("config", help="path to a sweep YAML file")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="runs at a time (default: the cores)")
    p.add_argument("--ray", action="store_true", help="run on a local Ray cluster started for the sweep")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="run on the Ray cluster at ADDR")
    p.add_argument("--dry-run", action="store_true", help="print the expanded runs and stop")
    p.add_argument("--record", default=None, metavar="DIR",
                   help="folder of the runs' shards (default: beside the database, DB.sweeps/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the sweep file, e.g. --set racing.eta=2")
    p.set_defaults(func=cmd_sweep)


_TRUST_HELP = (
    "load a bundle that is not signed (or that cannot be checked: no key here); its model.pkl runs code "
    "when loaded, so only for bundles you made yourself"
)


def add_export_commands(sub, with_db) -> None:
    p = with_db(sub.add_parser("export", help="write a learner of a run as a production bundle"))
    p.add_argument("--run", required=True, help="run id (see `workbench runs`)")
    p.add_argument("--learner", required=True, help="learner name in that run")
    p.add_argument("--version", type=int, default=None, help="checkpoint version (default: the latest)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write the bundle to")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify-bundle", help="replay a run through a bundle; check it predicts what was logged")
    p.add_argument("bundle", metavar="DIR", help="the bundle (a directory written by `workbench export`)")
    p.add_argument("--run", required=True, help="the run the bundle was exported from")
    p.add_argument("--db", default=None, help="DuckDB file of runs (default: the one the bundle came from)")
    p.add_argument("--trust-unsigned", action="store_true", help=_TRUST_HELP)
    p.set_defaults(func=cmd_verify_bundle)

    p = sub.add_parser(
        "sign-bundle",
        help="sign a bundle with the key in $WORKBENCH_SIGNING_KEY (or the file in $WORKBENCH_SIGNING_KEY_FILE)",
        description="Sign a bundle exported without a key (HMAC-SHA256 over its SHA256SUMS), where the key "
        "is kept: serve and verify-bundle refuse unsigned bundles. Its files are checked first.",
    )
    p.add_argument("bundle", metavar="DIR", help="the bundle (a directory written by `workbench export`)")
    p.set_defaults(func=cmd_sign_bundle)

    p = sub.add_parser("serve", help="serve a bundle over HTTP: predict, learn, roll back, metrics")
    p.add_argument(
        "bundle",
        metavar="DIR",
        nargs="?",
        help="the bundle (a directory written by `workbench export`; not with --store)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--token", default=None, help="token for /learn and /rollback (default: $WORKBENCH_TOKEN)")
    p.add_argument("--state-dir", default=None, help="where checkpoints go (default: DIR/state)")
    p.add_argument("--checkpoint-every", type=int, default=1000, metavar="N", help="checkpoint every N updates")
    p.add_argument(
        "--keep-checkpoints", type=int, default=10, metavar="N",
        help="checkpoints kept in the state folder; older ones are deleted (the bundle's version stays)",
    )
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, metavar="N", help="refuse bodies over N bytes")
    p.add_argument("--protect-predict", action="store_true", help="require the token for /predict too")
    p.add_argument("--max-batch", type=int, default=1000, metavar="N", help="refuse batches of over N instances")
    p.add_argument("--read-only", action="store_true", help="serve predictions only: refuse /learn and /rollback")
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="serve from N processes on one port (needs --read-only)"
    )
    p.add_argument("--trust-unsigned", action="store_true", help=_TRUST_HELP)
    p.set_defaults(func=cmd_serve)
    add_replica_arguments(p)
    add_production_commands(sub)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help; an option whose default is "not given" (None, off,
    none) says in words what happens then."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, []) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _describe(sub) -> None:
    """A subcommand without a description of its own gets its one-line help as description."""
    for action in sub._choices_actions:
        command = sub.choices[action.dest]
        if not command.description and action.help:
            command.description = action.help[0].upper() + action.help[1:] + "."


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="workbench",
        description="Replay streams through online learners and log every update to DuckDB.",
        epilog="Example: workbench run experiments/agrawal_drifts.yaml --set source.n=5000",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", default=DEFAULT_DB, help="DuckDB file of runs")
        return p

    p = with_db(
        sub.add_parser(
            "run",
            help="replay one experiment config",
            description="Replay one experiment: every learner predicts, is scored and learns on every "
            "event; every step goes to the DuckDB file.",
        )
    )
    p.add_argument("config", help="path to an experiment YAML file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set source.n=5000 --set learners.0.params.seed=3",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=cmd_run)

    p = with_db(sub.add_parser("runs", help="list the runs in a database"))
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "record",
        help="record live Kafka topics into a kcat -J dump, to replay later",
        description="Consume topics from the start (or --start) to their end offsets at start "
        "(or until --max-events / --idle-timeout) into a kcat -J compatible dump.",
    )
    p.add_argument("--bootstrap-servers", required=True, metavar="HOST:PORT", help="a Kafka broker to start from")
    p.add_argument("--topic", action="append", required=True, help="a topic to record (repeat for more)")
    p.add_argument("--out", required=True, help="the dump file to write")
    p.add_argument("--start", default="earliest", help="earliest, latest, or an ISO timestamp")
    p.add_argument("--max-events", type=int, default=None, help="stop after this many messages")
    p.add_argument("--idle-timeout", type=float, default=None, help="stop after this many seconds without a message")
    p.add_argument(
        "--follow", action="store_true", help="do not stop at the end offsets (needs --max-events or --idle-timeout)"
    )
    p.set_defaults(func=cmd_record)

    p = with_db(sub.add_parser("demo", help="replay the demo experiments and print their summaries"))
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.add_argument(
        "--report",
        default=DEMO_REPORT,
        metavar="PATH",
        help="also write the runs' report here ('' for none)",
    )
    p.set_defaults(func=cmd_demo)

    p = with_db(
        sub.add_parser(
            "report",
            help="write a standalone HTML report of runs",
            description="Write the dashboard's panels for some runs to one HTML "
            "file that opens offline (plotly.js is inlined).",
        )
    )
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="ID",
        help="a run id to include (repeat for several; default: every run)",
    )
    p.add_argument("-o", "--output", default="report.html", help="the HTML file to write")
    p.add_argument("--sweep", default=None, metavar="ID", help="the sweep view of sweep ID instead")
    p.add_argument("--metric", help="rolling metric (default: accuracy, or mae for regression)")
    p.add_argument(
        "--window", type=int, help="rolling window in events (default: the config's rolling_window, else 1000)"
    )
    p.set_defaults(func=cmd_report)

    p = with_db(sub.add_parser("rollback", help="make an earlier checkpoint a learner's current model"))
    p.add_argument("run_id", help="the run (see `workbench runs`)")
    p.add_argument("learner", help="the learner to roll back")
    p.add_argument(
        "--to",
        type=int,
        default=None,
        metavar="VERSION",
        help="checkpoint version to restore (default: the one before the latest)",
    )
    p.set_defaults(func=cmd_rollback)

    p = with_db(sub.add_parser("drift", help="score a run's drift detectors against its true drifts"))
    p.add_argument("run_id", nargs="?", help="the run to score (default: the newest run with drift alarms)")
    p.add_argument(
        "--max-delay", type=int, default=None, help="a first alarm more events than this after a drift is a miss"
    )
    p.set_defaults(func=cmd_drift)

    p = with_db(sub.add_parser("ab", help="paired comparison of two learners of a run"))
    p.add_argument("run_id", help="the run (see `workbench runs`)")
    p.add_argument("a", help="a learner of the run")
    p.add_argument("b", help="another learner of the run")
    p.add_argument("--metric", default="accuracy", help="the metric compared")
    p.add_argument("--window", type=int, default=1000, help="events per window of the bootstrap")
    p.set_defaults(func=cmd_ab)

    add_export_commands(sub, with_db)
    add_sweep_command(sub, with_db)
    _describe(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
