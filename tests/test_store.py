"""The record in DuckDB: complete, reproducible, kept on interrupt, guarded against a second writer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, agrawal_config, hold_database

import workbench as wb
from workbench.errors import DatabaseLockedError

TIMING = ["run_id", "predict_us", "learn_us"]


def test_every_update_is_logged(db):
    run = wb.run(agrawal_config(n=3000), db=db, progress=False)
    steps = run.steps()
    assert len(steps) == 2 * 3000
    for _, group in steps.groupby("learner"):
        assert group.seq.tolist() == list(range(3000))
    assert steps.y_true.notna().all()
    assert set(steps.y_true.unique()) == {"0", "1"}  # Agrawal labels are 0 and 1
    assert (steps.predict_us > 0).all() and (steps.learn_us > 0).all()
    assert (steps.model_version == 0).all()
    info = run.info
    assert info["status"] == "finished" and info["n_events"] == 3000
    assert info["config"]["source"]["generator"] == "agrawal"
    assert wb.connect(str(db)).true_drifts(run.id).to_dict("records") == [{"seq": 1500, "width": 1}]
    summary = run.summary()
    assert summary.learner.tolist() == ["lr", "tree"]
    # The cumulative accuracy equals the steps' own record of correctness.
    for row in summary.itertuples():
        learner_steps = steps[steps.learner == row.learner]
        scored = learner_steps.correct.dropna()
        assert row.accuracy == pytest.approx(scored.mean())
        assert row.labelled == 3000


def test_same_config_and_seed_give_the_same_steps_bit_for_bit(db):
    a = wb.run(agrawal_config(n=2000), db=db, progress=False).steps().drop(columns=TIMING)
    b = wb.run(agrawal_config(n=2000), db=db, progress=False).steps().drop(columns=TIMING)
    c = wb.run(agrawal_config(n=2000, seed=8), db=db, progress=False).steps().drop(columns=TIMING)
    assert a.equals(b)
    assert not a.equals(c)


def test_rolling_metric_is_a_windowed_mean(db):
    run = wb.run(agrawal_config(n=3000), db=db, progress=False)
    rolled = run.rolling("accuracy", window=500)
    steps = run.steps("lr")
    expected = steps.correct.astype(float).rolling(500, min_periods=1).mean()
    lr = rolled[rolled.learner == "lr"].set_index("seq").value
    assert lr.values == pytest.approx(expected.loc[lr.index].values)
    assert 50 < len(lr) <= 3000


class Interrupting:
    """A stream that is interrupted (as by Ctrl-C) after ``at`` events."""

    task = "Binary classification"

    def __init__(self, at):
        self.at = at

    def __iter__(self):
        from river.datasets import synth

        for i, (x, y) in enumerate(synth.Agrawal(seed=1)):
            if i == self.at:
                raise KeyboardInterrupt
            yield x, y


def test_interrupt_keeps_steps_and_marks_run(db):
    config = {"name": "ctrl-c", "learners": agrawal_config()["learners"]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = wb.run(config, db=db, progress=False, stream=Interrupting(at=20_000))
    assert run.status == "interrupted"
    message = str(caught[-1].message)
    assert message.startswith("replay interrupted after 20,000 events: run ")
    assert "keeps the 40,000 steps logged so far" in message and "marked 'interrupted'" in message
    info = run.info
    assert info["status"] == "interrupted" and info["n_events"] == 20_000
    assert len(run.steps()) == 40_000


def test_ctrl_c_in_a_terminal_keeps_steps(tmp_path, db):
    config = tmp_path / "long.yaml"
    config.write_text(
        textwrap.dedent("""
        name: long
        source: {kind: synthetic, generator: agrawal, n: 10000000}
        learners: [{name: lr, model: river.linear_model.LogisticRegression}]
    """)
    )
    command = str(Path(sys.executable).parent / "workbench")  # the console script users run
    # Ctrl-C reaches the replay as in a terminal, even when the tests run in a background job
    # (which ignores SIGINT, and its children inherit that): a caught signal is reset on exec.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [command, "run", str(config), "--db", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    # Press Ctrl-C once the progress bar shows thousands of events replayed, however slow the start.
    shown = b""
    deadline = time.monotonic() + 120
    while not re.search(rb"\d+k/10\.0M", shown) and time.monotonic() < deadline:
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:  # the command ended on its own: the assertions below say how
            break
        shown += chunk
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out, err = out.decode(), (shown + err).decode()
    assert proc.returncode == 130, err
    assert "replay interrupted after" in err and "marked 'interrupted'" in err
    assert "interrupted" in out
    runs = wb.connect(str(db)).runs()
    assert runs.status.tolist() == ["interrupted"]
    n = int(runs.n_events.iloc[0])
    assert n > 1000
    steps = wb.connect(str(db)).sql("SELECT count(*) AS n, max(seq) AS last FROM steps")
    assert steps.n.iloc[0] == n and steps["last"].iloc[0] == n - 1


def test_a_failing_learner_marks_the_run_failed(db):
    class Breaks:
        task = "Binary classification"

        def __iter__(self):
            # past the first 200 events, which preprocessing is checked against before the run
            yield from [({"a": 1.0}, True)] * 300
            yield {"a": "oops"}, False  # the scaler cannot handle a string

    config = {"name": "breaks", "learners": agrawal_config()["learners"][:1]}
    with pytest.raises(TypeError):
        wb.run(config, db=db, progress=False, stream=Breaks())
    runs = wb.connect(str(db)).runs()
    assert runs.status.tolist() == ["failed"]
    assert runs.error.iloc[0].startswith("TypeError")
    assert wb.connect(str(db)).sql("SELECT count(*) AS n FROM steps").n.iloc[0] == 300


def test_a_second_process_gets_a_clear_error_on_a_busy_database(db):
    holder = hold_database(db, 60)
    try:
        with pytest.raises(DatabaseLockedError) as info:
            wb.run(agrawal_config(n=100), db=db, progress=False)
        message = str(info.value)
        assert message.startswith(f"{db} is in use by process {holder.pid}")
        assert "--db" in message
        with pytest.raises(DatabaseLockedError):
            wb.connect(str(db)).runs()
    finally:
        holder.kill()
        holder.wait()
    # Nothing was corrupted: the file opens and the run goes through now.
    assert wb.run(agrawal_config(n=100), db=db, progress=False).status == "finished"
    duckdb.connect(str(db)).close()


def test_reading_while_the_same_process_writes(db):
    """A notebook can read the database (e.g. a dashboard) while its own replay writes."""
    seen = []

    class Peeking:
        task = "Binary classification"

        def __iter__(self):
            from river.datasets import synth

            for i, pair in enumerate(synth.SEA(seed=1)):
                if i == 20_000:  # the writer thread records the run as it starts: give it a moment
                    deadline = time.monotonic() + 10
                    while not (n := len(wb.connect(str(db)).runs())) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    seen.append(n)
                if i == 25_000:
                    return
                yield pair

    wb.run({"name": "peek", "learners": agrawal_config()["learners"][:1]}, db=db, progress=False, stream=Peeking())
    assert seen == [1]


def test_missing_database_is_explained(tmp_path):
    with pytest.raises(wb.WorkbenchError, match="no database at .*replay an experiment first"):
        wb.connect(str(tmp_path / "nope.duckdb")).runs()


def test_bytes_per_step_stay_small(db):
    wb.run(agrawal_config(n=20_000), db=db, progress=False)
    assert os.path.getsize(db) / 40_000 < 200


def test_rolling_metrics_river_computes_match_river_rolling(db):
    """F1 and ROC AUC are windowed by River itself over the logged steps."""
    from river import metrics, utils

    run = wb.run({**agrawal_config(n=3000), "metrics": ["f1", "roc_auc"]}, db=db, progress=False)
    steps = run.steps("lr")
    for name, metric in [("f1", metrics.F1), ("roc_auc", metrics.ROCAUC)]:
        rolled = run.rolling(name, window=300)
        lr = rolled[rolled.learner == "lr"]
        expected = utils.Rolling(metric, window_size=300)
        values = {}
        for seq, y, pred, p in zip(steps.seq, steps.y_true, steps.y_pred, steps.y_proba, strict=False):
            y, pred = int(y), int(pred)  # labels 0/1, and predictions in the same vocabulary
            expected.update(y, {pred: p, 1 - pred: 1 - p} if name == "roc_auc" else pred)
            values[seq] = expected.get()
        assert lr.value.tolist() == pytest.approx([values[s] for s in lr.seq])
    with pytest.raises(wb.WorkbenchError, match="rolling metric 'mae' is not available for this binary run"):
        run.rolling("mae")


def test_steps_go_in_whole_row_groups(db):
    """The writer appends each learner's steps in whole DuckDB row groups (the cheap way in:
    straight to the file, compressed), the last part of the run in one piece at the end."""
    from workbench.store.schema import ROW_GROUP_SIZE

    n = 2 * ROW_GROUP_SIZE + 1000
    run = wb.run({**agrawal_config(n=n), "learners": agrawal_config()["learners"][:1]}, db=db, progress=False)
    with duckdb.connect(str(db), read_only=True) as con:
        sizes = [
            count
            for (count,) in con.execute(
                "SELECT count(*) FROM steps WHERE run_id = ? GROUP BY seq // ? ORDER BY 1 DESC",
                [run.id, ROW_GROUP_SIZE],
            ).fetchall()
        ]
        groups = con.execute(
            "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('steps') WHERE segment_type = 'BIGINT'"
        ).fetchone()[0]
    assert sizes == [ROW_GROUP_SIZE, ROW_GROUP_SIZE, 1000]
    assert groups == 3  # not ~16 groups of 8,192-step appends checkpointed from the log
    # the learners row is summed up as the steps go in: the same as the steps say
    summary, steps = run.summary().iloc[0], run.steps("lr")
    assert summary.labelled == n
    assert summary.predict_us == pytest.approx(steps.predict_us.mean(), rel=1e-4)
    assert summary.learn_us == pytest.approx(steps.learn_us.mean(), rel=1e-4)


@pytest.mark.parametrize("name", ["it's a \"db\" é.duckdb", "spaces and; semicolons.duckdb"])
def test_hostile_database_names(tmp_path, name):
    db = tmp_path / name
    first = wb.run(agrawal_config(n=500), db=db, progress=False)
    second = wb.run(agrawal_config(n=500), db=db, progress=False)
    assert {first.id, second.id} <= set(wb.connect(str(db)).runs().run_id)
    assert len(second.steps()) == 1000


def test_a_plain_connection_open_in_the_process_is_shared_by_the_replay(db):
    """A notebook holding duckdb.connect(db) open does not stop its own replay."""
    wb.run(agrawal_config(n=200), db=db, progress=False)
    held = duckdb.connect(str(db))
    try:
        run = wb.run(agrawal_config(n=500), db=db, progress=False)
        assert held.execute("SELECT count(*) FROM steps WHERE run_id = ?", [run.id]).fetchone()[0] == 1000
    finally:
        held.close()


def test_model_states_past_the_writers_memory_keep_the_database_usable(db):
    # DuckDB's checkpoint rewrites the checkpoints table's last row group whole, every state in
    # it: within the writer's memory limit it failed once the file held ~60 MB of states (five
    # runs of two forests), and the database was unusable for the rest of the process
    import hashlib

    from workbench.store import RunWriter
    from workbench.store.writer import WRITER_MEMORY_MB
    from workbench.versioning import Checkpoint

    size, per_run, runs = 2_500_000, 6, 10
    assert size * per_run * runs > (2 * WRITER_MEMORY_MB) << 20
    ids = []
    for run in range(runs):
        writer = RunWriter(str(db), f"run-{run}")
        writer.begin("states", {}, "binary", 0, "test")
        for version in range(1, per_run + 1):
            state = os.urandom(size)
            writer.checkpoint(Checkpoint("m", version, version * 100, state, hashlib.sha256(state).hexdigest()))
        writer.finish("finished", {"n_events": 0}, [], 0.0)
        ids.append(f"run-{run}")
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall() == [(i, "finished") for i in ids]
    assert con.execute("SELECT count(*), sum(octet_length(state)) FROM checkpoints").fetchone() == (
        runs * per_run, size * per_run * runs
    )
    con.close()
