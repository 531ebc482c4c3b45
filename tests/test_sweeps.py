"""Sweeps: the sweep file, runs on local processes and on a real local Ray cluster, parity with
`workbench run`, a worker killed mid-sweep, resume, and racing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, agrawal_config, hold_database

import workbench as wb
from workbench import cli
from workbench.errors import ConfigError, DatabaseLockedError
from workbench.sweeps import load, plan, sweep

WORKBENCH = str(Path(sys.executable).parent / "workbench")
VOLATILE = ["run_id", "predict_us", "learn_us"]  # timings and ids differ from run to run


def small_sweep(n: int = 1500, **extra) -> dict:
    base = agrawal_config(n, drift={"detector": "river.drift.ADWIN"})
    base["learners"] = base["learners"][:1]
    return {
        "name": "small",
        "base": base,
        "grid": {"learners[0].params.l2": [0.0, 0.01], "seed": {"range": [1, 2]}},
        "objective": {"metric": "accuracy", "mode": "max"},
        **extra,
    }


def test_grid_random_and_streams_expand_into_validated_runs():
    cfg = load(
        {
            **small_sweep(),
            "random": {"samples": 3, "seed": 5, "params": {"drift.params.delta": {"loguniform": [1e-4, 1e-1]}}},
            "streams": [
                {"kind": "synthetic", "generator": "agrawal", "n": 500},
                {"name": "sea", "source": {"kind": "synthetic", "generator": "sea", "n": 500}},
            ],
        }
    )
    assert len(cfg.runs) == 2 * 2 * 2 * 3  # streams × l2 × seeds × random draws
    assert cfg.swept == ["learners[0].params.l2", "seed", "drift.params.delta", "stream"]
    first = cfg.runs[0]
    assert first.config["learners"][0]["params"] == {"l2": 0.0} and first.config["seed"] == 1
    assert {run.params["stream"] for run in cfg.runs} == {"agrawal", "sea"}
    assert {run.config["source"]["generator"] for run in cfg.runs} == {"agrawal", "sea"}
    deltas = sorted({run.params["drift.params.delta"] for run in cfg.runs})
    assert len(deltas) == 3 and all(1e-4 <= d <= 1e-1 for d in deltas)
    assert [r.params for r in load(cfg.raw).runs] == [r.params for r in cfg.runs]  # the same draws again
    assert len({run.key for run in cfg.runs}) == len(cfg.runs)
    twice = load({**small_sweep(), "grid": {"seed": [1, 2, 1], "learners[0].params.l2": [0.0, 0.0]}})
    assert [run.params for run in twice.runs] == [
        {"seed": 1, "learners[0].params.l2": 0.0},
        {"seed": 2, "learners[0].params.l2": 0.0},
    ]
    table = plan(cfg)
    assert len(table) == 24 and {"learners[0].params.l2", "seed", "stream", "key"} <= set(table.columns)


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"grid": {"learners[0].parms.l2": [1]}}, "learners[0]", "unknown key"),
        ({"grid": {"learners[3].params.l2": [1]}}, "learners.3", "list index from 0 to 0"),
        ({"grid": {"seed": {"range": [5, 1]}}}, "grid.seed.range", "[start, stop]"),
        ({"grid": {"seed": 3}}, "grid.seed", "non-empty list"),
        ({"grid": {"learners[0].model": ["river.linear_model.LogisticRegresion"]}}, "learners[0].model", "did you"),
        ({"objective": {"metric": "roc_auc"}}, "objective.metric", "does not compute 'roc_auc'"),
        ({"objective": {"metric": "accuracy", "mode": "up"}}, "objective.mode", "allowed: max, min"),
        ({"objective": {"metric": "accuracy", "learner": "x"}}, "objective.learner", "has no learner 'x'"),
        ({"racing": {"eta": 1}}, "racing.eta", "at least 2"),
        ({"random": {"samples": 2, "params": {"seed": {"normal": [0, 1]}}}}, "random.params.seed", "uniform"),
        ({"grids": {}}, "grids", "unknown key"),
        ({"streams": [{"kind": "python"}]}, "source.kind", "not 'python'"),
        ({"streams": [{"kind": "synthetic", "generator": "agrawal", "n": 0}]}, "source.n", "at least 1"),
    ],
)
def test_mistakes_are_caught_before_anything_runs(change, key, words):
    with pytest.raises(ConfigError) as err:
        load({**small_sweep(), **change})
    assert err.value.key.startswith(key) and words in str(err.value)


def test_racing_needs_the_stream_length():
    raw = small_sweep(racing={"eta": 2, "min_events": 100})
    del raw["base"]["source"]["n"]
    with pytest.raises(ConfigError, match="set source.n"):
        load(raw)


def test_dry_run_prints_the_runs_and_runs_nothing(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_sweep()))
    db = tmp_path / "w.duckdb"
    out = subprocess.run(
        [WORKBENCH, "sweep", str(path), "--dry-run", "--db", str(db)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "sweep small: 4 runs, objective max accuracy" in out.stdout
    assert out.stdout.count("1,500") == 4
    assert not db.exists()


def assert_runs_are_workbench_runs(db: Path, sweep_id: str, tmp_path: Path) -> None:
    """Every run of the sweep has exactly the steps `workbench run` gives its expanded config."""
    store = wb.connect(db)
    rows = store.sweep_runs(sweep_id)
    assert (rows.status == "finished").all()
    for i, row in enumerate(rows.itertuples()):
        path = tmp_path / f"run{i}.yaml"
        path.write_text(yaml.safe_dump(store.run(row.run_id)["config"]))
        alone = tmp_path / f"alone{i}.duckdb"
        assert cli.main(["run", str(path), "--db", str(alone), "--no-progress"]) == 0
        other = wb.connect(alone)
        mine = store.steps(row.run_id).drop(columns=VOLATILE)
        theirs = other.steps(other.latest_run_id()).drop(columns=VOLATILE)
        assert len(mine) == 1500 and mine.equals(theirs)


def test_local_processes_run_a_sweep_like_workbench_run_and_resume_skips_finished(tmp_path, capsys):
    db = tmp_path / "w.duckdb"
    result = sweep(small_sweep(), workers=2, db=db)
    assert result.status == "finished"
    board = result.leaderboard()
    assert list(board["rank"]) == [1, 2, 3, 4] and (board.status == "finished").all()
    assert board.objective.is_monotonic_decreasing
    assert {"learners[0].params.l2", "seed"} <= set(board.columns)
    assert set(wb.connect(db).runs().run_id) == set(board.run_id)  # one record
    assert list((tmp_path / "w.sweeps" / "small").glob("*.duckdb")) == []  # shards merged
    assert_runs_are_workbench_runs(db, "small", tmp_path)
    capsys.readouterr()
    again = sweep(small_sweep(), workers=2, db=db)
    assert "4 of 4 runs already finished: skipped" in capsys.readouterr().out
    assert len(wb.connect(db).runs()) == 4 and again.leaderboard().run_id.tolist() == board.run_id.tolist()


def test_a_sweep_runs_on_a_real_local_ray_cluster(tmp_path):
    import ray

    db = tmp_path / "w.duckdb"
    result = sweep(small_sweep(), workers=2, ray=True, db=db)
    assert not ray.is_initialized()  # the cluster it started is shut down
    assert result.status == "finished"
    assert wb.connect(db).sweeps().executor.tolist() == ["ray"]
    assert_runs_are_workbench_runs(db, "small", tmp_path)


def test_a_sweep_joins_a_running_ray_cluster(tmp_path):
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(small_sweep(n=300)))
        address = ray.get_runtime_context().gcs_address
        db = tmp_path / "w.duckdb"
        out = subprocess.run(
            [WORKBENCH, "sweep", str(path), "--ray-address", address, "--db", str(db)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        assert ray.cluster_resources()["CPU"] == 2  # the cluster it joined is left running
    finally:
        ray.shutdown()
    assert (wb.connect(db).leaderboard("small").status == "finished").all()


def test_a_failing_run_is_reported_and_the_others_kept(tmp_path):
    raw = small_sweep(grid={"source.params": [{}, {"classification_function": 99}]})
    result = sweep(raw, workers=2, db=tmp_path / "w.duckdb")
    assert result.status == "failed"
    board = result.leaderboard()
    assert board.status.tolist() == ["finished", "failed"]
    assert "classification_function" in board.error.iloc[1]


def _workers_of(pid: int) -> list[int]:
    """The grandchildren of the sweep process: its forkserver's children, the run workers."""

    def children(p: int) -> list[int]:
        out = []
        for task in Path(f"/proc/{p}/task").glob("*"):
            out += [int(c) for c in (task / "children").read_text().split()]
        return out

    try:
        return [w for c in children(pid) for w in children(c)]
    except FileNotFoundError:
        return []


def test_killing_a_worker_loses_only_its_run_and_resuming_finishes_the_sweep(tmp_path):
    raw = small_sweep(n=30_000)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    db = tmp_path / "w.duckdb"
    command = [WORKBENCH, "sweep", str(path), "--db", str(db), "--workers", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not (workers := _workers_of(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    shard_dir = tmp_path / "w.sweeps" / "small"
    while not list(shard_dir.glob("*.duckdb")) and time.monotonic() < deadline:  # the run is writing
        time.sleep(0.05)
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "killed by SIGKILL" in out, (out, err, workers, sorted(p.name for p in shard_dir.iterdir()))
    rows = wb.connect(db).sweep_runs("small")
    assert sorted(rows.status) == ["failed", "finished", "finished", "finished"]
    assert len(wb.connect(db).runs()) == 3
    resumed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "3 of 4 runs already finished: skipped" in resumed.stdout
    store = wb.connect(db)
    assert (store.sweep_runs("small").status == "finished").all()
    assert len(store.runs()) == 4 and (store.runs().status == "finished").all()


def test_racing_keeps_the_best_of_each_rung(tmp_path):
    raw = small_sweep(n=2000, racing={"eta": 2, "min_events": 500})
    raw["grid"] = {"learners[0].params.l2": [0.0, 0.01, 0.1, 1.0]}
    result = sweep(raw, workers=2, db=tmp_path / "w.duckdb")
    rows = result.runs()
    assert rows.groupby("rung").size().tolist() == [4, 2, 1]  # budgets 500, 1000, then the whole stream
    assert rows.groupby("rung").budget.first().tolist() == [500, 1000, 2000]
    for rung in (0, 1):
        at = rows[rows.rung == rung].sort_values("objective", ascending=False)
        kept = set(rows[rows.rung == rung + 1].run_key)
        assert kept == set(at.run_key.iloc[: len(kept)]) == set(at[at.promoted].run_key)
    board = result.leaderboard()
    assert board.status.tolist() == ["finished", "stopped", "stopped", "stopped"]
    assert board.rung.tolist() == [2, 1, 0, 0]
    assert len(wb.connect(tmp_path / "w.duckdb").steps(board.run_id.iloc[0])) == 2000


def test_the_record_waits_for_a_reader_instead_of_failing(tmp_path):
    from workbench.store import schema
    from workbench.store.sweeps import SweepRecord

    db = tmp_path / "w.duckdb"
    sweep(small_sweep(n=300), workers=1, db=db)
    held = schema.LOCK_WAIT + 1  # longer than any other part of the workbench waits
    holder = hold_database(db, held)
    with pytest.raises(DatabaseLockedError):
        schema.connect(str(db))
    assert len(SweepRecord(db).rows("small")) == 4  # the sweep's writes waited for the lock
    holder.wait()
