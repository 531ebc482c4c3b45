"""Replay overhead: workbench.run (every update logged to DuckDB) vs River's progressive_val_score.

Three cases, each a materialized stream of --n events from River's Hyperplane (numeric
features), written to a Parquet file:
1. 40 features, StandardScaler | LogisticRegression (23-35 us an event, the range DESIGN.md budgets for);
2. 10 features, StandardScaler | LogisticRegression (~11 us: the fixed costs weigh most);
3. 10 features, LogisticRegression alone (cheaper still).

What each side includes, timed from the call to its return:
- River: ``evaluate.progressive_val_score(rows, model, Accuracy())`` over the file's rows, already
  decoded into a Python list of (dict, label) (``Table.to_pylist``, outside the timing);
- workbench, python source: ``workbench.run(config, stream=rows)`` over the same list: config,
  DuckDB connect and schema, the run row, every step logged (prediction, probability, label,
  correct, loss, predict/learn time, version), the final checkpoint, the run's summary rows;
- workbench, file source: the same, reading and decoding the Parquet file itself.
On this machine a busy second thread or process slows the first by ~1.3-1.8x (the two cores share
one physical core's resources), so the writer thread's work counts nearly in full.
Each side gets a fresh model; the workbench logs into one DuckDB file per case and side, as a
notebook logging run after run into runs/workbench.duckdb does. The sides take turns in every
round (the machine is shared and noisy); a ratio is River's time over the workbench's, per round,
and the median over --rounds is printed (target: >= 0.90 with the file read, >= 0.95 from the list).
The same ratio of CPU time (every thread of the process: the workbench's writer and DuckDB
threads count) is printed beside it: on a loaded machine it is steadier than wall time.

The profile splits case 2 into stages, each timed alone in this process (the fastest of the rounds:
the least disturbed on a shared machine),
per event: River's model alone (predict_proba_one, argmax, learn_one), the Parquet decode to
events, the runner's timing, scoring and step building (the runner over the materialized events
minus the model), the store alone over the runner's step batches (connect, Arrow, DuckDB
appends, finish), what wb.run adds over the runner, and the fixed cost of a run of one event.

    python benchmarks/replay_overhead.py [--n 100000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from river import compose, evaluate, linear_model, metrics, preprocessing
from river.datasets import synth

import workbench
from workbench.config import load
from workbench.experiment import new_run_id
from workbench.learners.river import build
from workbench.replay.labels import Delay
from workbench.runner import Runner, make_arm
from workbench.sources import open_source
from workbench.store.writer import RunWriter

CASES = {"40 features, scaler + LR": (40, True), "10 features, scaler + LR": (10, True), "10 features, LR": (10, False)}


def make_stream(path: Path, n: int, n_features: int) -> list[tuple[dict, bool]]:
    rows = list(itertools.islice(synth.Hyperplane(seed=7, n_features=n_features), n))
    table = pa.Table.from_pylist([{**{f"x{k}": v for k, v in x.items()}, "label": y} for x, y in rows])
    pq.write_table(table, path)
    # River gets the very rows the file holds, already materialized in memory.
    return [({k: v for k, v in r.items() if k != "label"}, r["label"]) for r in table.to_pylist()]


def river_model(scaler: bool):
    lr = linear_model.LogisticRegression()
    return compose.Pipeline(preprocessing.StandardScaler(), lr) if scaler else lr


def config(path: Path | None, scaler: bool) -> dict:
    return {
        "name": "overhead",
        "source": {"kind": "file", "path": str(path), "target": "label"} if path else {"kind": "python"},
        "learners": [
            {
                "name": "lr",
                "model": "river.linear_model.LogisticRegression",
                "preprocessing": ["river.preprocessing.StandardScaler"] if scaler else [],
            }
        ],
        "metrics": ["accuracy"],
    }


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def timed_cpu(fn, *args) -> tuple[float, float]:
    """(wall, CPU of every thread of the process) seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - start, time.process_time() - cpu


def river_side(rows, scaler: bool) -> None:
    evaluate.progressive_val_score(rows, river_model(scaler), metrics.Accuracy())


def workbench_side(cfg: dict, db: Path, rows=None) -> None:
    workbench.run(cfg, db=db, progress=False, stream=rows)


def model_alone(rows, scaler: bool) -> None:
    model = river_model(scaler)
    predict, learn = model.predict_proba_one, model.learn_one
    for x, y in rows:
        proba = predict(x)
        max(proba, key=proba.get)
        learn(x, y)


def decode(path: Path) -> None:
    # each event dropped as the next comes, as in a replay (a list of them all would make the
    # garbage collector walk them over and over: ~2x the cost)
    collections.deque(open_source(load(config(path, True)).source, 0, None).events(lambda d: None), maxlen=0)


def runner_alone(rows, scaler: bool) -> list:
    """The runner over the rows, the model included; its step batches, as handed to the store."""
    cfg = load(config(None, scaler))
    source = open_source(cfg.source, cfg.seed, rows)
    arm = make_arm("lr", build(cfg.learners[0], "binary", "learners[0]"), "binary", ["accuracy"])
    runs = Runner([arm], Delay("none"), False).run(source.events(lambda d: None))
    return [batch for batches in runs for batch in batches]


def store_alone(batches: list, db: Path) -> None:
    """The store's whole work for a run of those steps: connect, convert, append, finish."""
    writer = RunWriter(str(db), new_run_id())
    writer.begin("overhead", {}, "binary", 0, "bench")
    writer.write(batches)
    writer.finish("finished", {"n_events": sum(map(len, batches))}, [], 0.0)


def measure(tmp: Path, n: int, rounds: int) -> tuple[dict, dict]:
    ratios: dict[str, dict[str, list[float]]] = {}
    stages: dict[str, list[float]] = {}
    streams = {}
    for name, (n_features, scaler) in CASES.items():
        path = tmp / f"{n_features}-{scaler}.parquet"
        streams[name] = (path, make_stream(path, n, n_features), scaler)
        ratios[name] = {"python": [], "file": [], "python cpu": [], "file cpu": []}
    for r in range(rounds):
        for name, (path, rows, scaler) in streams.items():
            key = f"{path.stem}"
            t_river, c_river = timed_cpu(river_side, rows, scaler)
            t_py, c_py = timed_cpu(workbench_side, config(None, scaler), tmp / f"{key}-py.duckdb", rows)
            t_file, c_file = timed_cpu(workbench_side, config(path, scaler), tmp / f"{key}-file.duckdb")
            ratios[name]["python"].append(t_river / t_py)
            ratios[name]["file"].append(t_river / t_file)
            ratios[name]["python cpu"].append(c_river / c_py)
            ratios[name]["file cpu"].append(c_river / c_file)
            print(
                f"round {r + 1}, {name}: river {n / t_river:,.0f} ev/s, workbench {n / t_py:,.0f} ev/s "
                f"(list), {n / t_file:,.0f} ev/s (Parquet)",
                flush=True,
            )
        # the profile of case 2, stage by stage
        path, rows, scaler = streams["10 features, scaler + LR"]
        py = config(None, scaler)
        batches = runner_alone(rows, scaler)
        for stage, (fn, *args) in {
            "river": (river_side, rows, scaler),
            "model": (model_alone, rows, scaler),
            "decode": (decode, path),
            "runner": (runner_alone, rows, scaler),
            "store": (store_alone, batches, tmp / "store.duckdb"),
            "store fixed": (store_alone, [], tmp / "store.duckdb"),
            "run": (workbench_side, py, tmp / "stages.duckdb", rows),
            "fixed": (workbench_side, py, tmp / "stages.duckdb", rows[:1]),
        }.items():
            stages.setdefault(stage, []).append(timed(fn, *args))
    return ratios, {stage: min(ts) for stage, ts in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        ratios, st = measure(Path(tmp), n, args.rounds)
    print(f"\n{n:,} events a run; throughput ratio workbench / River (median of {args.rounds} interleaved rounds)")
    print(f"{'case':28s} {'python source':>14s} {'Parquet file':>14s}   (CPU time: python, file)")
    for name, r in ratios.items():
        print(
            f"{name:28s} {statistics.median(r['python']):14.3f} {statistics.median(r['file']):14.3f}"
            f"   ({statistics.median(r['python cpu']):.3f}, {statistics.median(r['file cpu']):.3f})"
        )
    print("targets (10 features, scaler + LR): >= 0.95 from the python source, >= 0.90 reading the file")
    us = {k: v / n * 1e6 for k, v in st.items()}
    print("\nprofile, 10 features, scaler + LR, us an event (each stage timed alone, fastest of the rounds):")
    print(f"  River progressive_val_score          {us['river']:6.2f}")
    print(
        f"    of which the model (predict, argmax, learn) {us['model']:6.2f}; River's loop and metric "
        f"{us['river'] - us['model']:.2f}"
    )
    print(f"  Parquet decode to events             {us['decode']:6.2f}")
    print(f"  runner: events, timing, scoring, step building, metric {us['runner'] - us['model']:6.2f}")
    print(
        f"  store alone: connect, Arrow, DuckDB appends, finish {us['store']:6.2f}"
        f" (of which a run's fixed cost, {st['store fixed'] * 1e3:.1f} ms, is {us['store fixed']:.2f})"
    )
    print(
        f"  workbench.run from the python source {us['run']:6.2f}: over the runner "
        f"{us['run'] - us['runner']:.2f} (a run of one event takes {st['fixed'] * 1e3:.1f} ms)"
    )
    budget = us["river"] / 0.95 - us["model"]
    print(
        f"  the 0.95 target leaves {budget:.2f} us an event beside the model for everything the workbench does "
        f"(River's own loop takes {us['river'] - us['model']:.2f})"
    )


if __name__ == "__main__":
    main()
