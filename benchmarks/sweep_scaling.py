"""Sweeps: scaling from 1 to 2 workers, per-run overhead of Ray vs local processes, and the time
to load the leaderboard of 1,000 runs — each measured in this one run.

    .venv/bin/python benchmarks/sweep_scaling.py [--events 20000] [--runs 16] [--rounds 2]

1. A 16-run sweep (4 L2 penalties × 4 seeds, 20,000 events, logistic regression + Hoeffding tree)
   on 1 then 2 local worker processes: wall time, speed-up (target ≥ 1.7× on 2 cores).
2. Per-run overhead: 16 runs of 10 events each on one worker, local processes vs a local Ray
   cluster (started before the clock), minus the same runs done in-process with ``wb.run``.
3. The leaderboard of a sweep of 1,000 runs (rows written with SQL): time of ``Store.leaderboard``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import workbench as wb
from workbench.store.sweeps import SweepRecord
from workbench.sweeps import load
from workbench.sweeps.config import Objective
from workbench.sweeps.executors import LocalProcesses, RayCluster
from workbench.sweeps.sweep import modules
from workbench.sweeps.worker import Task


def sweep_file(events: int, runs: int) -> dict:
    seeds = max(1, runs // 4)
    return {
        "name": "scaling",
        "base": {
            "name": "scaling",
            "source": {"kind": "synthetic", "generator": "agrawal", "n": events},
            "learners": [
                {
                    "name": "lr",
                    "model": "river.linear_model.LogisticRegression",
                    "preprocessing": ["river.preprocessing.StandardScaler"],
                },
                {"name": "tree", "model": "river.tree.HoeffdingTreeClassifier"},
            ],
            "metrics": ["accuracy"],
        },
        "grid": {"learners[0].params.l2": [0.0, 0.001, 0.01, 0.1][: runs // seeds], "seed": {"range": [1, seeds]}},
        "objective": {"metric": "accuracy"},
    }


def scaling(events: int, runs: int, rounds: int, folder: Path) -> None:
    """Interleaved rounds (1, 2, 1, 2, ...), the best of each: other load on a shared machine
    only ever slows a round down."""
    raw = sweep_file(events, runs)
    times: dict[int, list[float]] = {1: [], 2: []}
    for i in range(rounds):
        for workers in (1, 2):
            started = time.perf_counter()
            result = wb.sweep(raw, workers=workers, db=str(folder / f"w{workers}-{i}.duckdb"), progress=False)
            times[workers].append(time.perf_counter() - started)
            board = result.leaderboard()
            assert result.status == "finished" and len(board) == runs
            # the runs' own time over the wall time: how many workers were kept busy, whatever else
            # the machine was doing
            busy = board.elapsed_s.sum() / times[workers][-1]
            print(
                f"  {runs} runs × {events:,} events on {workers} worker(s): {times[workers][-1]:.1f} s, "
                f"{busy:.2f} workers busy on average (load average {os.getloadavg()[0]:.1f})"
            )
    best = {w: min(t) for w, t in times.items()}
    print(f"scaling 1 → 2 workers: {best[1] / best[2]:.2f}× (best of {rounds}; target ≥ 1.7×)")


def overhead(folder: Path, runs: int = 16) -> None:
    raw = sweep_file(10, runs)
    cfg = load(raw)
    bare = []
    wb.run(cfg.runs[0].config, db=folder / "warmup.duckdb", progress=False)  # imports, as a warm worker has
    for i, spec in enumerate(cfg.runs):
        started = time.perf_counter()
        wb.run(spec.config, db=folder / f"bare{i}.duckdb", progress=False)
        bare.append(time.perf_counter() - started)
    per_bare = statistics.median(bare)
    print(f"  one 10-event run in-process (wb.run): {per_bare * 1000:.0f} ms")

    def per_run(executor, tag: str) -> float:
        tasks = [Task(s.key, 0, s.config, str(folder / tag / f"{s.key}.duckdb")) for s in cfg.runs]
        started = time.perf_counter()
        for _, error in executor.run(tasks, lambda task, pid: None):
            assert error is None, error
        return (time.perf_counter() - started) / len(tasks)

    local = per_run(LocalProcesses(1, modules(cfg)), "local")
    started = time.perf_counter()
    ray = RayCluster(workers=1)
    print(f"  Ray local cluster start: {time.perf_counter() - started:.1f} s (once per sweep)")
    try:
        per_run(ray, "ray-warmup")  # the first task starts Ray's worker process
        remote = per_run(ray, "ray")
    finally:
        ray.close()
    print(f"  per run, one worker: local processes {local * 1000:.0f} ms, Ray {remote * 1000:.0f} ms")
    print(
        f"per-run overhead over wb.run: local processes {(local - per_bare) * 1000:.0f} ms, "
        f"Ray {(remote - per_bare) * 1000:.0f} ms (Ray / local: {remote / local:.2f}×)"
    )


def leaderboard(folder: Path, n: int = 1000) -> None:
    db = folder / "board.duckdb"
    SweepRecord(db).begin("big", {}, Objective("accuracy"), "processes", n, str(folder))
    store = wb.connect(db)
    store.sql(
        f"""INSERT INTO sweep_runs (sweep_id, run_key, rung, budget, idx, label, params, config, run_id, status,
                                    objective, metrics, n_events, elapsed_s)
            SELECT 'big', 'k' || i, 0, 20000, i, 'run ' || i,
                   json_object('learners[0].params.l2', random(), 'drift.params.delta', random(), 'seed', i % 5),
                   '{{}}', 'run-' || i, 'finished', random(), json_object('accuracy', random()), 20000, 2.0
            FROM range({n}) t(i)"""
    )
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        board = store.leaderboard("big")
        timings.append(time.perf_counter() - started)
    assert len(board) == n
    print(f"leaderboard of {n:,} runs: {statistics.median(timings) * 1000:.0f} ms (median of 5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scaling(args.events, args.runs, args.rounds, folder)
        overhead(folder)
        leaderboard(folder)


if __name__ == "__main__":
    main()
