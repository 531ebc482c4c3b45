"""What drift detection, checkpoints and the guard cost per event.

The same materialized stream (River's Hyperplane, 40 numeric features) and the same
StandardScaler | LogisticRegression replayed by workbench.run with nothing configured, then
with each of: ADWIN on the error, DDM on the error, a checkpoint every 1,000 updates (keeping
10), checkpoints plus the guard, and feature drift (PSI + KS of all 40 features per 1,000
events). One short warm-up run of each first, so that one-off imports are not counted. Runs
are interleaved round by round (the machine is shared and noisy: only ratios measured in the
same run mean anything); each line gives the median extra microseconds per
event and the throughput ratio against the plain run of the same round.

    python benchmarks/drift_checkpoint_cost.py [--n 50000] [--rounds 3] [--features 40]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from river.datasets import synth

import workbench

LR = {
    "name": "lr",
    "model": "river.linear_model.LogisticRegression",
    "preprocessing": ["river.preprocessing.StandardScaler"],
}
VARIANTS = {
    "nothing configured": {},
    "ADWIN on the error": {"drift": {"detector": "river.drift.ADWIN"}},
    "DDM on the error": {"drift": {"detector": "river.drift.binary.DDM"}},
    "checkpoint every 1,000 updates": {"checkpoints": {"every": 1000, "keep": 10}},
    "checkpoints + guard": {
        "checkpoints": {"every": 1000, "keep": 10},
        "guard": {"metric": "accuracy", "window": 1000, "drop": 0.05},
    },
    "feature drift, 40 features": {"drift": {"features": {"window": 1000}}},
}


def timed(stream, db: Path, extra: dict) -> float:
    config = {"name": "cost", "learners": [LR], "metrics": ["accuracy"], **extra}
    start = time.perf_counter()
    workbench.run(config, db=db, progress=False, stream=stream)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--features", type=int, default=40)
    args = parser.parse_args()
    stream = list(itertools.islice(synth.Hyperplane(seed=7, n_features=args.features), args.n))
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for i, extra in enumerate(
            VARIANTS.values()
        ):  # imports (scipy.stats ~1 s) are not per event
            timed(stream[:2000], Path(tmp) / f"warm-{i}.duckdb", extra)
        for r in range(args.rounds):
            for i, (name, extra) in enumerate(VARIANTS.items()):
                times[name].append(timed(stream, Path(tmp) / f"{r}-{i}.duckdb", extra))
            print(
                f"round {r + 1}: "
                + "  ".join(f"{args.n / t[-1]:,.0f}" for t in times.values())
                + " ev/s"
            )
    plain = times["nothing configured"]
    print(
        f"\nevents: {args.n:,} with {args.features} features; plain replay "
        f"{statistics.median(plain) / args.n * 1e6:.1f} us an event"
    )
    for name, ts in times.items():
        if name == "nothing configured":
            continue
        extra_us = statistics.median((t - p) / args.n * 1e6 for t, p in zip(ts, plain, strict=True))
        ratio = statistics.median(p / t for t, p in zip(ts, plain, strict=True))
        print(f"{name:32s} {extra_us:+6.2f} us an event   throughput ratio vs plain {ratio:.3f}")


if __name__ == "__main__":
    main()
