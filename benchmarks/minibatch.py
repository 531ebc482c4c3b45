"""Mini-batches (learn_many / predict_proba_many) vs one event at a time, for River's
LogisticRegression (target: >= 2x the throughput).

Measured in one process, the variants taking turns, best of --rounds (the machine is shared
and noisy):
1. River alone: learn_one per event vs learn_many per batch of --batch events (the target);
   then predict and learn, the batches' DataFrames built from the event dicts inside the timing
   (as a replay must);
2. the whole replay: ``workbench.run`` with replay.batch_size = --batch vs 1 (predict, score,
   learn, log every step to DuckDB).

    python benchmarks/minibatch.py [--n 100000] [--batch 500] [--rounds 5]

The whole replay gains less than the learner: scoring (River's metrics) and logging stay per
event.
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


def learn_one(rows) -> None:
    model = linear_model.LogisticRegression()
    for x, y in rows:
        model.learn_one(x, y)


def learn_many(frames) -> None:
    model = linear_model.LogisticRegression()
    for X, y in frames:
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


def interleaved(variants: dict, rounds: int) -> dict[str, float]:
    """Best time of each variant, the variants taking turns in every round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--features", type=int, default=10)
    args = parser.parse_args()
    rows = list(itertools.islice(synth.Hyperplane(seed=7, n_features=args.features), args.n))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.duckdb"
        frames = [(pd.DataFrame.from_records([x for x, _ in rows[i:i + args.batch]]),
                   pd.Series([y for _, y in rows[i:i + args.batch]]))
                  for i in range(0, len(rows), args.batch)]
        best = interleaved({
            "learn_one": lambda: learn_one(rows),
            "learn_many": lambda: learn_many(frames),
            "one": lambda: river_one(rows),
            "many": lambda: river_many(rows, args.batch),
            "run_one": lambda: replay(rows, 1, db),
            "run_many": lambda: replay(rows, args.batch, db),
        }, args.rounds)
    one, many, run_one, run_many = best["one"], best["many"], best["run_one"], best["run_many"]
    n = args.n
    print(
        f"River LogisticRegression, {n:,} events, {args.features} features, batches of {args.batch}"
    )
    lo, lm = best["learn_one"], best["learn_many"]
    print(f"river learn_one:                   {n / lo:>10,.0f} events/s")
    print(f"river learn_many (DataFrames made): {n / lm:>9,.0f} events/s   ratio {lo / lm:.2f}x "
          f"(target >= 2x: {'met' if lo / lm >= 2 else 'NOT met'})")
    print(f"river predict+learn one at a time: {n / one:>10,.0f} events/s")
    print(
        f"river predict+learn many:          {n / many:>10,.0f} events/s   ratio {one / many:.2f}x "
        "(DataFrames built from the event dicts inside the timing)"
    )
    print(f"workbench replay, batch_size=1:    {n / run_one:>10,.0f} events/s")
    print(
        f"workbench replay, batch_size={args.batch}:  {n / run_many:>10,.0f} events/s   "
        f"ratio {run_one / run_many:.2f}x"
    )


if __name__ == "__main__":
    main()
