"""CapyMOA's trees vs River's, end to end in ``workbench.run`` (predict, score, learn, log every
step to DuckDB), on the same held-out stream: River's Agrawal generator (9 features, function 0,
seed 42), materialised first and replayed as a Python stream, so that both sides pay the same
replay and logging but not the generator.

Targets: HoeffdingTree >= 1.5x River's HoeffdingTreeClassifier, AdaptiveRandomForest(10)
>= 5x River's ARFClassifier(10), accuracy within 1 point.

One process; the JVM is started (and MOA's code warmed up by a short run) before any timing;
River and CapyMOA take turns in every round, the order alternating; the ratio printed is the
median of the rounds' ratios (the machine is shared and noisy).

    python benchmarks/capymoa_trees.py [--n 60000] [--rounds 3]

Needs the capymoa extra and Java (`apt-get install default-jre-headless`).
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

PAIRS = {
    "HoeffdingTree": (
        {"model": "river.tree.HoeffdingTreeClassifier"},
        {"model": "capymoa.classifier.HoeffdingTree"},
        1.5,
    ),
    "ARF(10)": (
        {"model": "river.forest.ARFClassifier", "params": {"n_models": 10, "seed": 1}},
        {"model": "capymoa.classifier.AdaptiveRandomForestClassifier", "params": {"ensemble_size": 10}},
        5.0,
    ),
}


def replay(learner: dict, rows: list, db: Path) -> tuple[float, float]:
    """(seconds, accuracy) of one ``workbench.run`` of ``learner`` over ``rows``."""
    config = {"name": "trees", "learners": [{"name": "model", **learner}], "metrics": ["accuracy"]}
    started = time.perf_counter()
    run = workbench.run(config, db=db, progress=False, stream=rows)
    elapsed = time.perf_counter() - started
    return elapsed, float(run.summary()["accuracy"].iloc[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60_000, help="events in the stream")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.duckdb"
        rows = list(itertools.islice(synth.Agrawal(classification_function=0, seed=42), args.n))
        for _, capy, _ in PAIRS.values():  # start the JVM, let its JIT see MOA's code
            replay(capy, rows[:5000], db)
        n = len(rows)
        print(f"workbench.run over Agrawal(function 0), {n:,} events; median of {args.rounds} rounds, interleaved")
        for name, (river, capy, target) in PAIRS.items():
            ratios, accuracy = [], {}
            for i in range(args.rounds):
                order = [("river", river), ("capymoa", capy)]
                times = {}
                for side, learner in order if i % 2 == 0 else order[::-1]:
                    times[side], accuracy[side] = replay(learner, rows, db)
                ratios.append(times["river"] / times["capymoa"])
                print(
                    f"  {name} round {i + 1}: River {n / times['river']:9,.0f} events/s  "
                    f"CapyMOA {n / times['capymoa']:9,.0f} events/s  ratio {ratios[-1]:.2f}x"
                )
            ratio = statistics.median(ratios)
            gap = 100 * (accuracy["capymoa"] - accuracy["river"])
            ok = ratio >= target and abs(gap) <= 1
            print(
                f"{name}: CapyMOA / River = {ratio:.2f}x (target >= {target:g}x); "
                f"accuracy River {accuracy['river']:.4f} CapyMOA {accuracy['capymoa']:.4f} "
                f"({gap:+.2f} points; target within 1) -> {'met' if ok else 'MISSED'}"
            )


if __name__ == "__main__":
    main()
