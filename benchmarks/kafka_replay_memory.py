"""Peak memory while replaying a kcat dump must be flat: it must not grow with the dump.

The same kind of dump (3 interleaved partitions, labels in the messages) is made at each size in
--sizes, and each is replayed by ``workbench.run`` (event-time ordering, one learner of bounded
memory, every step logged to DuckDB) in a fresh process that reports its own peak resident
memory. Target: the largest dump (>= 2,000,000 messages) peaks within 1.10x of the smallest.
The smallest is large enough for the fixed-size buffers to fill: the writer's queue (16 batches
of 8,192 steps waiting for DuckDB) and DuckDB's cache (capped by the writer's memory_limit).

    python benchmarks/kafka_replay_memory.py [--sizes 500000 1000000 2000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kafka_parse_rate import make_dump  # noqa: E402

CHILD = """
import json, resource, sys, time
import workbench
path, db = sys.argv[1], sys.argv[2]
start = time.perf_counter()
source = {"kind": "kafka_dump", "path": path, "target": "approved", "task": "binary"}
# a model whose own memory is bounded: what is measured is the replay's
learners = [{"name": "prior", "model": "river.dummy.PriorClassifier"}]
config = {"name": "memory", "source": source, "learners": learners, "metrics": ["accuracy"]}
run = workbench.run(config, db=db, progress=False)
print(json.dumps({"n_events": run.info["n_events"], "seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def replay(path: Path, db: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[500_000, 1_000_000, 2_000_000])
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"dump-{n}.kcat.jsonl"
            started = time.perf_counter()
            make_dump(path, n)
            made = time.perf_counter() - started
            result = replay(path, Path(tmp) / f"runs-{n}.duckdb")
            assert result["n_events"] == n, result
            results.append(result)
            print(
                f"{n:>10,} messages ({path.stat().st_size / 1e6:,.0f} MB, made in {made:.0f} s): "
                f"replayed in "
                f"{result['seconds']:.1f} s, peak RSS {result['peak_mb']:,.0f} MB"
            )
            path.unlink()
    growth = results[-1]["peak_mb"] / results[0]["peak_mb"]
    print(
        f"peak memory {args.sizes[-1]:,} vs {args.sizes[0]:,} messages: {growth:.2f}x "
        f"(target: flat, <= 1.10x: {'met' if growth <= 1.10 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
