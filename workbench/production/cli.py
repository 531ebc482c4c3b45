"""The production loop's commands: ``deploy``, ``learner``, ``models``, ``alert-rules``, and the
``--store`` options of ``serve``."""

from __future__ import annotations

import argparse

from workbench.errors import WorkbenchError


def _deploy_config(args: argparse.Namespace):
    from workbench.production.config import load

    overrides = list(args.set)
    for flag, key in (
        ("store", "store"),
        ("bootstrap_servers", "kafka.bootstrap_servers"),
        ("replicas", "replicas"),
        ("port", "port"),
        ("db", "db"),
    ):
        if getattr(args, flag, None) is not None:
            overrides.append(f"deploy.{key}={getattr(args, flag)}")
    return load(args.config, overrides)


def cmd_deploy(args: argparse.Namespace) -> int:
    from workbench.production.deploy import deploy

    return deploy(_deploy_config(args))


def cmd_learner(args: argparse.Namespace) -> int:
    from workbench.production.learner import main

    return main(_deploy_config(args))


def serve_replica(args: argparse.Namespace) -> int:
    from workbench.production.config import _ab
    from workbench.production.replica import serve

    if args.bundle:
        raise WorkbenchError("serve: give a bundle or --store, not both (a replica takes the bundle from the store)")
    if args.predictions_topic and not args.bootstrap_servers:
        raise WorkbenchError("serve: --predictions-topic needs --bootstrap-servers")
    ab = None
    if args.ab_b is not None:
        b = int(args.ab_b) if args.ab_b.isdigit() else args.ab_b
        ab = _ab({"b": b, "split": args.ab_split, "shadow": args.ab_shadow})
    serve(
        args.store,
        args.host,
        args.port,
        args.token,
        args.predictions_topic,
        args.bootstrap_servers,
        ab,
        args.trust_unsigned,
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from workbench.production.modelstore import open_store

    store = open_store(args.store)
    try:
        if args.action == "rollback":
            version = store.rollback(args.to)
            print(f"{store.url}: every replica now serves version {version}")
            return 0
        current = store.current()
        for meta in store.versions():
            mark = "*" if meta["version"] == current else " "
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in (meta.get("metrics") or {}).items() if v is not None)
            print(
                f"{mark} v{meta['version']:<5} {meta['reason']:<10} {meta.get('n_updates', 0):>9,} updates  {metrics}"
            )
    finally:
        store.close()
    return 0


def cmd_alert_rules(args: argparse.Namespace) -> int:
    from workbench.production.alerts import write_rules

    print(f"wrote {write_rules(args.output)} (check it: promtool check rules {args.output})")
    return 0


def add_replica_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("replica of a model store (instead of a bundle)")
    g.add_argument("--store", default=None, metavar="URL", help="a store directory or redis://host:port/db")
    g.add_argument("--predictions-topic", default=None, help="log every served prediction to this Kafka topic")
    g.add_argument("--bootstrap-servers", default=None, metavar="HOST:PORT", help="Kafka, for --predictions-topic")
    g.add_argument("--ab-b", default=None, metavar="VERSION|BUNDLE", help="arm b: a version of the store or a bundle")
    g.add_argument("--ab-split", type=float, default=0.5, help="share of keys arm b answers (default: 0.5)")
    g.add_argument("--ab-shadow", action="store_true", help="arm b predicts every request but never answers")


def add_production_commands(sub) -> None:
    def deploy_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("config", help="a bundle directory, or a YAML file with a deploy: key")
        p.add_argument("--store", default=None, help="model store: a directory or redis://host:port/db")
        p.add_argument(
            "--bootstrap-servers", default=None, metavar="HOST:PORT", help="Kafka (deploy.kafka.bootstrap_servers)"
        )
        p.add_argument("--db", default=None, help="DuckDB file for the live run (default: runs/workbench.duckdb)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a key, e.g. --set deploy.kafka.events.topic=applications",
        )
        return p

    p = deploy_args(
        sub.add_parser(
            "deploy",
            help="start the update service and N replicas on this machine",
            description="Start the update service and --replicas serve processes; restart any that dies; "
            "stop all of them on Ctrl-C or SIGTERM.",
        )
    )
    p.add_argument("--replicas", type=int, default=None, help="serve processes (default: 2)")
    p.add_argument("--port", type=int, default=None, help="port of the first replica (default: 8000)")
    p.set_defaults(func=cmd_deploy)

    p = deploy_args(
        sub.add_parser(
            "learner",
            help="the update service: learn from Kafka, publish versions to the model store",
            description="Learn from the events and labels topics, publish a version every N updates or T seconds, "
            "log the steps as a live run; resumes from the store after a restart.",
        )
    )
    p.set_defaults(func=cmd_learner)

    p = sub.add_parser(
        "models",
        help="list the versions of a model store, or roll every replica back",
        description="versions: list them (* marks the one served). rollback: serve an earlier one.",
    )
    p.add_argument("action", choices=["versions", "rollback"], help="list the versions, or roll back")
    p.add_argument("--store", required=True, metavar="URL", help="a store directory or redis://host:port/db")
    p.add_argument("--to", type=int, default=None, metavar="VERSION", help="default: the one before the current")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("alert-rules", help="write the production alerts as a Prometheus rules file")
    p.add_argument("-o", "--output", default="alerts.yml", help="the rules file to write")
    p.set_defaults(func=cmd_alert_rules)
