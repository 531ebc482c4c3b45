"""The workbench command, as a person at a terminal uses it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT

WORKBENCH = str(Path(sys.executable).parent / "workbench")


def cli(*args, cwd=ROOT):
    return subprocess.run([WORKBENCH, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_reads_well():
    out = cli("--help").stdout
    assert "Replay streams through online learners" in out
    for command in ("run", "runs", "demo", "report"):
        assert command in out
    run_help = cli("run", "--help").stdout
    assert "--set KEY=VALUE" in run_help and "--db" in run_help and "runs/workbench.duckdb" in run_help


def test_run_with_overrides_then_list(tmp_path):
    db = tmp_path / "w.duckdb"
    result = cli("run", "experiments/agrawal_drifts.yaml", "--db", str(db), "--no-progress",
                 "--set", "source.n=3000", "--set", "source.drifts=[]", "--set", "name=tiny")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(tiny, binary, finished" in out
    assert "events: 3,000" in out and "dead letters: 0" in out
    for column in ("learner", "events", "accuracy", "log_loss", "events_per_s"):
        assert column in out
    for learner in ("logreg", "hat", "naive_bayes"):
        assert learner in out
    listed = cli("runs", "--db", str(db)).stdout
    assert "tiny" in listed and "finished" in listed


def test_bad_config_exits_2_with_the_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(textwrap.dedent("""
        source: {kind: synthetic, generator: agrawal, n: 10}
        learners: [{model: river.linear_model.LogisticRegresion}]
    """))
    result = cli("run", str(config), "--db", str(tmp_path / "w.duckdb"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: learners[0].model: 'river.linear_model.LogisticRegresion' does not resolve")
    assert "Traceback" not in result.stderr


def test_demo_writes_the_database(tmp_path):
    db = tmp_path / "demo.duckdb"
    report = tmp_path / "reports" / "demo.html"
    result = cli("demo", "--db", str(db), "--no-progress", "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert "agrawal-drifts" in result.stdout and db.exists()
    assert f"report of every run: {report}" in result.stdout
    assert 'data-panel="rolling"' in report.read_text()


def test_every_subcommand_has_a_description_and_shows_its_defaults():
    from workbench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        text = command.format_help()
        assert command.description, f"`workbench {name} --help` has no description"
        for action in command._actions:
            if action.help == "==SUPPRESS==" or action.dest == "help":
                continue
            assert action.help, f"workbench {name}: {action.dest} has no help"
            if action.default not in (None, False, []):
                assert f"default: {action.default}" in " ".join(text.split()), (name, action.dest)


def test_drift_without_a_run_scores_the_newest_run_with_alarms(tmp_path):
    from conftest import agrawal_config

    import workbench as wb

    db = tmp_path / "w.duckdb"
    watched = wb.run(agrawal_config(n=3000, drift={"detector": "river.drift.ADWIN"}), db=db, progress=False)
    wb.run(agrawal_config(n=300), db=db, progress=False)  # newer, no detector
    result = cli("drift", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"run {watched.id}: the newest run with drift alarms")
    assert "detected" in result.stdout
