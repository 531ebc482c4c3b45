"""What a logged step costs DuckDB: appends of --small steps vs whole row groups, the writer's way.

The replay's writer (workbench/store/writer.py) attaches the file with row groups of
schema.ROW_GROUP_SIZE and appends each learner's steps in whole groups: those go to the file
compressed, straight from the insert, where smaller appends go through the write-ahead log and
a checkpoint after. This appends --n steps (a run's shape: text labels, numbers, null event
times) both ways into a fresh file, through the writer's own INSERT, and prints the CPU time a
step of each and their ratio, median of --rounds rounds taking turns. Also printed: DuckDB's
default row groups with appends of --small steps, as the writer appended before.

    python benchmarks/duckdb_append.py [--n 491520] [--small 8192] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from workbench.store import schema
from workbench.store.writer import _INSERT_STEPS


def steps(n: int) -> pa.Table:
    rng = np.random.default_rng(7)
    correct = rng.random(n) < 0.8
    labels = pa.array(np.where(rng.random(n) < 0.5, "1", "0"))
    return pa.table(
        {
            "seq": np.arange(n),
            "event_time": pa.nulls(n, pa.timestamp("us", tz="UTC")),
            "y_true": labels,
            "y_pred": labels,
            "y_proba": rng.random(n),
            "correct": correct,
            "loss": rng.random(n),
            "predict_ns": rng.integers(1_000, 20_000, n),
            "learn_ns": rng.integers(1_000, 20_000, n),
            "model_version": np.zeros(n, np.int32),
        }
    )


def append(path: Path, table: pa.Table, size: int, writer_file: bool) -> float:
    """CPU seconds to append ``table`` in pieces of ``size`` steps and close the file."""
    for stale in (path, Path(f"{path}.wal")):
        stale.unlink(missing_ok=True)
    con = schema.connect_writer(str(path)) if writer_file else duckdb.connect(str(path))
    con.execute("SET threads = 1")
    schema.create(con)
    start = time.process_time()
    for offset in range(0, table.num_rows, size):
        arrow_steps = table.slice(offset, size)  # noqa: F841 — read by DuckDB's replacement scan
        con.execute(_INSERT_STEPS, {"run_id": "20261202-120000-a1b2c3", "learner": "lr"})
    con.close()
    schema.release(str(path))
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30 * schema.ROW_GROUP_SIZE)
    parser.add_argument("--small", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    table = steps(args.n)
    ways = {
        f"default row groups, appends of {args.small:,}": (args.small, False),
        f"row groups of {schema.ROW_GROUP_SIZE:,}, appends of {args.small:,}": (args.small, True),
        f"row groups of {schema.ROW_GROUP_SIZE:,}, whole groups (the writer)": (schema.ROW_GROUP_SIZE, True),
    }
    cpu: dict[str, list[float]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for way, (size, writer_file) in ways.items():
                cpu[way].append(append(Path(tmp) / "steps.duckdb", table, size, writer_file))
    us = {way: statistics.median(ts) / args.n * 1e6 for way, ts in cpu.items()}
    print(f"{args.n:,} steps, CPU time a step (median of {args.rounds} rounds):")
    for way, value in us.items():
        print(f"  {way:55s} {value:6.3f} us")
    first, last = list(us.values())[0], list(us.values())[-1]
    print(f"whole row groups are {first / last:.2f}x cheaper a step than appends of {args.small:,}")


if __name__ == "__main__":
    main()
