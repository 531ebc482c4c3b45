"""Mini-batches (learn_many / predict_proba_many) vs one event at a time, for River's
LogisticRegression (target: >= 2x the throughput).

Measured in one process, interleaved, best of --rounds (the machine is shared and noisy):
1. River alone: learn_one per event vs learn_many per batch of --batch events, the batches'
   DataFrames built from the event dicts inside the timing (as a replay must);
2. the whole replay: ``workbench.run`` with replay.batch_size = --batch vs 1 (predict, score,
   learn, log every step to DuckDB).

    python benchmarks/minibatch.py [--n 100000] [--batch 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import pandas as pd
from river import linear_model
from river.datasets import synth

import workbench


def river_one(rows) -> None:
    model = linear_model.LogisticRegression()
    for x, y in rows:
        model.predict_proba_one(x)
        model.learn_one(x, y)


def river_many(rows, batch: int) -> None:
    model = linear_model.LogisticRegression()
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        X = pd.DataFrame.from_records([x for x, _ in chunk])
        y = pd.Series([y for _, y in chunk])
        model.predict_proba_many(X)
        model.learn_many(X, y)


def replay(rows, batch: int, db: Path) -> None:
    workbench.run(
        {
            "name": f"batch-{batch}",
            "learners": [{"name": "lr", "model": "river.linear_model.LogisticRegression"}],
            "replay": {"batch_size": batch},
            "metrics": ["accuracy"],
        },
        db=db,
        progress=False,
        stream=rows,
    )


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--features", type=int, default=10)
    args = parser.parse_args()
    rows = list(itertools.islice(synth.Hyperplane(seed=7, n_features=args.features), args.n))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.duckdb"
        one = best(lambda: river_one(rows), args.rounds)
        many = best(lambda: river_many(rows, args.batch), args.rounds)
        run_one = best(lambda: replay(rows, 1, db), args.rounds)
        run_many = best(lambda: replay(rows, args.batch, db), args.rounds)
    n = args.n
    print(
        f"River LogisticRegression, {n:,} events, {args.features} features, batches of {args.batch}"
    )
    print(f"river predict+learn one at a time: {n / one:>10,.0f} events/s")
    print(
        f"river predict+learn many:          {n / many:>10,.0f} events/s   ratio {one / many:.2f}x "
        f"(target >= 2x: {'met' if one / many >= 2 else 'NOT met'})"
    )
    print(f"workbench replay, batch_size=1:    {n / run_one:>10,.0f} events/s")
    print(
        f"workbench replay, batch_size={args.batch}:  {n / run_many:>10,.0f} events/s   "
        f"ratio {run_one / run_many:.2f}x"
    )


if __name__ == "__main__":
    main()
