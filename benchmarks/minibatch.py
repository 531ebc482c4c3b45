"""Mini-batches end to end: ``workbench.run`` with replay.batch_size = --batch vs one event at a
time, for River's LogisticRegression and StandardScaler | LogisticRegression (target: >= 3x).

Both runs replay the same --n events (River's Hyperplane, --features numeric features) and log
every step to DuckDB, once from a list of (dict, label) pairs (a ``python`` source) and once
from a Parquet file (the file read on both sides; the batched run takes each batch's frame
straight from the file's Arrow columns, without dicts). the one-at-a-time run predicts, scores and
learns each event; the batched run predicts the whole batch (predict_proba_many), then learns
it (learn_many), and scores and logs it as columns. For context, River alone: learn_one per
event vs learn_many per batch (its DataFrames made outside the timing), and predict + learn one
at a time vs many at a time (DataFrames built from the event dicts inside the timing).

Measured in one process, the variants taking turns in every round (the machine is shared and
noisy); each ratio is the median over --rounds of the per-round ratios.

    python benchmarks/minibatch.py [--n 100000] [--batch 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from river import compose, linear_model, preprocessing
from river.datasets import synth

import workbench

MODELS = {"LR": False, "scaler + LR": True}


def model(scaler: bool):
    lr = linear_model.LogisticRegression()
    return compose.Pipeline(preprocessing.StandardScaler(), lr) if scaler else lr


def river_one(rows, scaler: bool) -> None:
    m = model(scaler)
    for x, y in rows:
        m.predict_proba_one(x)
        m.learn_one(x, y)


def river_many(rows, scaler: bool, batch: int) -> None:
    m = model(scaler)
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        X = pd.DataFrame.from_records([x for x, _ in chunk])
        y = pd.Series([y for _, y in chunk])
        m.predict_proba_many(X)
        m.learn_many(X, y)


def learn_one(rows, scaler: bool) -> None:
    m = model(scaler)
    for x, y in rows:
        m.learn_one(x, y)


def learn_many(frames, scaler: bool) -> None:
    m = model(scaler)
    for X, y in frames:
        m.learn_many(X, y)


def replay(rows, scaler: bool, batch: int, db: Path, path: Path | None = None) -> None:
    """wb.run over the rows (a python source) or, given a path, over the Parquet file."""
    source = {"kind": "file", "path": str(path), "target": "y"} if path else {"kind": "python"}
    workbench.run(
        {
            "name": f"batch-{batch}",
            "source": source,
            "learners": [
                {
                    "name": "lr",
                    "model": "river.linear_model.LogisticRegression",
                    "preprocessing": ["river.preprocessing.StandardScaler"] if scaler else [],
                }
            ],
            "replay": {"batch_size": batch},
            "metrics": ["accuracy", "log_loss"],
        },
        db=db,
        progress=False,
        stream=None if path else rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--features", type=int, default=10)
    args = parser.parse_args()
    n, b = args.n, args.batch
    # Named features: River's StandardScaler.transform_many fails on integer column names.
    stream = itertools.islice(synth.Hyperplane(seed=7, n_features=args.features), n)
    rows = [({f"x{k}": v for k, v in x.items()}, y) for x, y in stream]
    frames = [
        (pd.DataFrame.from_records([x for x, _ in rows[i : i + b]]), pd.Series([y for _, y in rows[i : i + b]]))
        for i in range(0, n, b)
    ]
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hyperplane.parquet"
        table = {name: [x[name] for x, _ in rows] for name in rows[0][0]}
        pq.write_table(pa.table({**table, "y": [bool(y) for _, y in rows]}), path)
        for _ in range(args.rounds):
            for name, scaler in MODELS.items():
                for variant, fn, fn_args in [
                    ("learn_one", learn_one, (rows, scaler)),
                    ("learn_many", learn_many, (frames, scaler)),
                    ("one", river_one, (rows, scaler)),
                    ("many", river_many, (rows, scaler, b)),
                    ("run_one", replay, (rows, scaler, 1, Path(tmp) / "one.duckdb")),
                    ("run_many", replay, (rows, scaler, b, Path(tmp) / "many.duckdb")),
                    ("file_one", replay, (rows, scaler, 1, Path(tmp) / "file-one.duckdb", path)),
                    ("file_many", replay, (rows, scaler, b, Path(tmp) / "file-many.duckdb", path)),
                ]:
                    start = time.perf_counter()
                    fn(*fn_args)
                    times.setdefault((name, variant), []).append(time.perf_counter() - start)

    def ratio(name: str, slow: str, fast: str) -> float:
        return statistics.median(s / f for s, f in zip(times[name, slow], times[name, fast], strict=True))

    def rate(name: str, variant: str) -> str:
        return f"{n / statistics.median(times[name, variant]):>10,.0f} ev/s"

    print(f"{n:,} events, {args.features} features, batches of {b}, median of {args.rounds} interleaved rounds")
    for name in MODELS:
        print(f"\n{name}")
        print(
            f"  river learn_one / learn_many (frames made):  {rate(name, 'learn_one')} / {rate(name, 'learn_many')}"
            f"   {ratio(name, 'learn_one', 'learn_many'):.2f}x"
        )
        print(
            f"  river predict+learn one / many:              {rate(name, 'one')} / {rate(name, 'many')}"
            f"   {ratio(name, 'one', 'many'):.2f}x"
        )
        print(
            f"  workbench.run batch_size 1 / {b} (logged):  {rate(name, 'run_one')} / {rate(name, 'run_many')}"
            f"   {ratio(name, 'run_one', 'run_many'):.2f}x"
        )
        print(
            f"  workbench.run from Parquet 1 / {b} (logged): {rate(name, 'file_one')} / {rate(name, 'file_many')}"
            f"   {ratio(name, 'file_one', 'file_many'):.2f}x (target >= 3x)"
        )


if __name__ == "__main__":
    main()
