"""Make the sample dump: loan applications and, minutes later, the decisions on them.

Starts a real Kafka-protocol broker on 127.0.0.1 (librdkafka's mock cluster, from the
confluent-kafka wheel), produces both topics with explicit CreateTime timestamps, and dumps
them with ``kcat -C -J -e`` (the workbench's own recorder, ``kcat_line``, if kcat is not
installed). Run from the repository root:  .venv/bin/python datasets/kafka_sample/make_sample.py
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

from confluent_kafka import Producer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))
from kafka_mock import MockCluster  # noqa: E402

N_APPLICATIONS = 2_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
REGIONS = ["north", "south", "east", "west"]


def applications(rng: random.Random):
    """(partition, timestamp ms, key, value bytes) of every application, broken ones included."""
    t = START_MS
    for i in range(N_APPLICATIONS):
        t += rng.randint(1_000, 20_000)
        income = round(rng.lognormvariate(10.5, 0.5), 2)
        amount = round(rng.uniform(1_000, 50_000), 2)
        app = {
            "application_id": f"A{i:05d}",
            "amount": amount,
            "income": income,
            "age": rng.randint(18, 80),
            "region": rng.choice(REGIONS),
            "employment": {
                "years": rng.randint(0, 40),
                "type": rng.choice(["salaried", "self", "none"]),
            },
        }
        yield i % 3, t, app["application_id"], json.dumps(app).encode(), app


def approved(app: dict, rng: random.Random) -> bool:
    score = (
        2.5 * math.log(app["income"] / app["amount"] * 10) + 0.05 * app["employment"]["years"] - 2
    )
    return rng.random() < 1 / (1 + math.exp(-score))


BROKEN = [  # (what is wrong, value bytes): every kind of broken record the replay must dead-letter
    ("invalid JSON", b'{"application_id": "B1", "amount": 12'),
    ("not an object", b"[1, 2, 3]"),
    (
        "wrong type",
        b'{"application_id": "B3", "amount": 5000.0, "income": 30000.0, "age": "forty", '
        b'"region": "north", "employment": {"years": 3, "type": "salaried"}}',
    ),
    ("not UTF-8", b'{"application_id": "B4", "region": "\xff\xfe"}'),
    ("no id", b'{"amount": 5000.0, "income": 30000.0, "age": 40, "region": "north"}'),
    ("tombstone", None),
]


def main() -> None:
    rng = random.Random(7)
    with MockCluster() as kafka:
        kafka.create_topic("applications", 3)
        kafka.create_topic("decisions", 2)
        producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 5})
        decisions = []
        for partition, ts, key, value, app in applications(rng):
            producer.produce(
                "applications", value, key=key.encode(), partition=partition, timestamp=ts
            )
            if rng.random() < 0.04:
                continue  # never decided: replayed, predicted, logged unlabelled
            delay_ms = rng.randint(30_000, 600_000)
            decisions.append(
                (ts + delay_ms, {"application_id": key, "approved": approved(app, rng)})
            )
            if rng.random() < 0.01:  # the same application sent twice: a duplicate
                producer.produce(
                    "applications", value, key=key.encode(), partition=partition, timestamp=ts + 500
                )
            if rng.random() < 0.05 and len(decisions) % 200 == 0:
                broken = BROKEN[(len(decisions) // 200) % len(BROKEN)][1]
                producer.produce("applications", broken, partition=partition, timestamp=ts + 100)
            if rng.random() < 0.003:  # a straggler stamped 10 minutes in the past: late
                late = dict(app, application_id=key + "-late")
                producer.produce(
                    "applications",
                    json.dumps(late).encode(),
                    partition=partition,
                    timestamp=ts - 600_000,
                )
        for _, broken in BROKEN:  # at least one of each kind
            producer.produce("applications", broken, partition=0, timestamp=ts + 1_000)
        for k in range(5):  # decisions on applications nobody sent: orphans
            decisions.append(
                (START_MS + (k + 1) * 3_600_000, {"application_id": f"X{k:05d}", "approved": True})
            )
        decisions.sort(key=lambda d: d[0])
        for ts, decision in decisions:
            key = decision["application_id"].encode()
            producer.produce(
                "decisions",
                json.dumps(decision).encode(),
                key=key,
                partition=zlib.crc32(key) % 2,
                timestamp=ts,
            )
        if producer.flush(30):
            raise SystemExit("could not deliver every message")
        for topic in ("applications", "decisions"):
            dump(kafka.bootstrap, topic, HERE / f"{topic}.kcat.jsonl")


def dump(bootstrap: str, topic: str, path: Path) -> None:
    if shutil.which("kcat"):
        out = subprocess.run(
            [
                "kcat",
                "-b",
                bootstrap,
                "-C",
                "-J",
                "-e",
                "-q",
                "-t",
                topic,
                # small fetches: partitions interleave in runs of ~100 messages, as
                # kcat does against a busy production cluster
                "-X",
                "fetch.message.max.bytes=32768",
            ],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        path.write_bytes(out)
    else:
        from workbench.sources.kafka_live import kcat_line, messages

        path.write_bytes(b"".join(map(kcat_line, messages(bootstrap, [topic]))))
    lines = path.read_bytes().count(b"\n")
    print(f"{path}: {lines:,} messages")


if __name__ == "__main__":
    main()
