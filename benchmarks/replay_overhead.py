"""Replay overhead: workbench.run (every update logged to DuckDB) vs River's progressive_val_score.

Same materialized stream (a Parquet file of N events), same StandardScaler | LogisticRegression,
timed interleaved in one process (the machine is shared and noisy, so only ratios measured in
the same run mean anything). Target: the workbench keeps >= 0.90 of River's throughput.

The stream is River's Hyperplane with --features numeric features (default 40, where the
pipeline costs 23-35 us an event, the range DESIGN.md budgets for). With few features the model
is so cheap that the fixed ~1-2 us of reading, timing, scoring and logging weigh more: run
with --features 10 to see that case too.

    python benchmarks/replay_overhead.py [--n 100000] [--rounds 3] [--features 40]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from river import compose, evaluate, linear_model, metrics, preprocessing
from river.datasets import synth

import workbench


def make_stream(path: Path, n: int, n_features: int) -> list[tuple[dict, bool]]:
    rows = list(itertools.islice(synth.Hyperplane(seed=7, n_features=n_features), n))
    table = pa.Table.from_pylist([{**{f"x{k}": v for k, v in x.items()}, "label": y} for x, y in rows])
    pq.write_table(table, path)
    # River gets the very rows the file holds, already materialized in memory.
    return [({k: v for k, v in r.items() if k != "label"}, r["label"]) for r in table.to_pylist()]


def time_river(stream) -> float:
    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    start = time.perf_counter()
    evaluate.progressive_val_score(stream, model, metrics.Accuracy())
    return time.perf_counter() - start


def time_workbench(path: Path, db: Path, stream=None) -> tuple[float, workbench.Run]:
    config = {
        "name": "overhead",
        "source": {"kind": "file", "path": str(path), "target": "label"} if stream is None else {"kind": "python"},
        "learners": [{"name": "lr", "model": "river.linear_model.LogisticRegression",
                      "preprocessing": ["river.preprocessing.StandardScaler"]}],
        "metrics": ["accuracy"],
    }
    start = time.perf_counter()
    run = workbench.run(config, db=db, progress=False, stream=stream)
    return time.perf_counter() - start, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--features", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.parquet"
        stream = make_stream(path, args.n, args.features)
        river_s, mem_s, file_s = [], [], []
        for r in range(args.rounds):
            t_river = time_river(stream)
            t_mem, run = time_workbench(path, Path(tmp) / f"mem-{r}.duckdb", stream)
            t_file, _ = time_workbench(path, Path(tmp) / f"file-{r}.duckdb")
            river_s.append(t_river)
            mem_s.append(t_mem)
            file_s.append(t_file)
            print(f"round {r + 1}: river {args.n / t_river:,.0f} ev/s   workbench (same list) "
                  f"{args.n / t_mem:,.0f} ev/s   workbench (reading the file) {args.n / t_file:,.0f} ev/s")
        steps = run.store.sql("SELECT count(*) AS n FROM steps").n.iloc[0]
        size = os.path.getsize(Path(tmp) / f"mem-{args.rounds - 1}.duckdb")
        ratio_mem = statistics.median(a / b for a, b in zip(river_s, mem_s, strict=False))
        ratio_file = statistics.median(a / b for a, b in zip(river_s, file_s, strict=False))
        print(f"\nevents: {args.n:,} with {args.features} features; steps logged per run: {steps:,}")
        print(f"river progressive_val_score: {args.n / statistics.median(river_s):,.0f} events/s "
              f"({statistics.median(river_s) / args.n * 1e6:.1f} us an event)")
        print(f"throughput ratio workbench/river, same materialized stream: {ratio_mem:.3f} (target >= 0.90)")
        print(f"throughput ratio workbench/river, workbench also reading the Parquet file: {ratio_file:.3f}")
        print(f"bytes per logged step: {size / steps:.1f} (DuckDB file of {size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
