"""Parse rate of a kcat -J dump into events (target: >= 300,000 messages/s).

A dump of --n messages of three interleaved partitions, each payload a JSON object of 8 fields
(one nested), is decoded into events by the kafka_dump source (block path: pyarrow's JSON reader)
and, in the same run for comparison, one message at a time (the path bad records take: orjson).
The machine is shared and noisy: the best of --rounds is reported, and the ratio between the two
paths measured in the same process.

    python benchmarks/kafka_parse_rate.py [--n 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from workbench.config import SourceConfig
from workbench.sources.kafka_dump import DumpReader, KafkaDumpSource
from workbench.sources.kafka_records import Decoder

T0 = 1_767_225_600_000


def make_dump(path: Path, n: int) -> None:
    rng = random.Random(1)
    offsets = [0, 0, 0]
    with open(path, "w") as f:
        for i in range(n):
            partition = (i // 120) % 3  # kcat's runs of ~120 messages per partition
            payload = {
                "application_id": f"A{i:07d}",
                "amount": round(rng.uniform(1e3, 5e4), 2),
                "income": round(rng.lognormvariate(10.5, 0.5), 2),
                "age": rng.randint(18, 80),
                "region": rng.choice(["north", "south", "east", "west"]),
                "employment": {"years": rng.randint(0, 40), "type": "salaried"},
                "approved": rng.random() < 0.5,
            }
            offsets[partition] += 1
            f.write(
                json.dumps(
                    {
                        "topic": "applications",
                        "partition": partition,
                        "offset": offsets[partition],
                        "tstype": "create",
                        "ts": T0 + i * 10,
                        "broker": 1,
                        "key": payload["application_id"],
                        "payload": json.dumps(payload),
                    }
                )
                + "\n"
            )


def config(path: Path) -> SourceConfig:
    return SourceConfig(
        kind="kafka_dump", path=str(path), target="approved", id="application_id", time="kafka"
    )


def parse_blocks(path: Path) -> int:
    dead = []
    n = sum(1 for _ in KafkaDumpSource(config(path)).events(dead.append))
    assert not dead
    return n


def parse_one_by_one(path: Path) -> int:
    reader = DumpReader(path, "kcat", Decoder(config(path), lambda d: None))
    n = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            n += reader._kcat_one(number, line.rstrip(b"\n")) is not None
    return n


def best(fn, path: Path, rounds: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        n = fn(path)
        times.append(time.perf_counter() - start)
    return min(times), n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dump.kcat.jsonl"
        make_dump(path, args.n)
        block_s, n = best(parse_blocks, path, args.rounds)
        one_s, n_one = best(parse_one_by_one, path, args.rounds)
    assert n == n_one == args.n
    rate = n / block_s
    print(f"kcat dump: {n:,} messages")
    print(
        f"block path (pyarrow):        {rate:>10,.0f} messages/s  "
        f"(target >= 300,000: {'met' if rate >= 300_000 else 'NOT met'})"
    )
    print(f"one at a time (orjson):      {n / one_s:>10,.0f} messages/s")
    print(f"ratio block / one-at-a-time: {one_s / block_s:.2f}x")


if __name__ == "__main__":
    main()
