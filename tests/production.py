"""Helpers for the production-loop tests, benchmark and notebook: a bundle, a Redis server,
a Kafka producer of events and labels, the parts as processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from river import datasets

import workbench as wb
from workbench.export import export

ROOT = Path(__file__).resolve().parent.parent
LEARNER = {
    "name": "lr",
    "model": "river.linear_model.LogisticRegression",
    "preprocessing": ["river.preprocessing.StandardScaler"],
}


def make_bundle(folder: Path, n: int = 500, seed: int = 3, **science) -> Path:
    """An Agrawal classifier trained on ``n`` events, exported (``science``: drift, guard,
    checkpoints keys the update service then applies)."""
    config = {
        "name": "prod",
        "seed": seed,
        "source": {"kind": "synthetic", "generator": "agrawal", "n": n},
        "learners": [LEARNER],
        "metrics": ["accuracy", "log_loss"],
        **science,
    }
    run = wb.run(config, db=folder / "offline.duckdb", progress=False)
    return export(run, "lr", folder / "bundle")


def stream(n: int, seed: int = 11, classification_function: int = 0, start: int = 0) -> list[tuple[int, dict, int]]:
    """``n`` Agrawal events as (id, x, y)."""
    gen = datasets.synth.Agrawal(classification_function=classification_function, seed=seed)
    return [(start + i, x, y) for i, (x, y) in enumerate(gen.take(n))]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """``redis-server`` on a free loopback port, nothing saved to disk."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Producer:
    """Events (with their id) and labels to their topics; ``flush`` waits for every ack."""

    def __init__(self, bootstrap: str, events: str = "events", labels: str = "labels"):
        from confluent_kafka import Producer as KafkaProducer

        self.producer = KafkaProducer({"bootstrap.servers": bootstrap, "linger.ms": 1})
        self.events, self.labels = events, labels

    def event(self, i: int, x: dict) -> None:
        self.producer.produce(self.events, json.dumps({"id": i, **x}).encode(), str(i).encode())

    def label(self, i: int, y) -> None:
        self.producer.produce(self.labels, json.dumps({"id": i, "y": y}).encode(), str(i).encode())

    def flush(self) -> None:
        assert self.producer.flush(30) == 0, "some messages were not acknowledged"


def deploy_config(bundle: Path, bootstrap: str, store: str, db: Path, **extra) -> dict:
    deploy = {
        "bundle": str(bundle),
        "store": store,
        "db": str(db),
        "kafka": {
            "bootstrap_servers": bootstrap,
            "events": {"topic": "events", "id": "id"},
            "labels": {"topic": "labels", "id": "id", "target": "y"},
            "predictions": "predictions",
        },
        "checkpoints": {"every": 100, "seconds": 0.5},
    }
    deploy.update(extra)
    return {"deploy": deploy}


class Part:
    """One part (``workbench learner|serve|deploy ...``) as a process of its own."""

    def __init__(self, *args: str, log: Path | None = None):
        self.args = args
        self.log = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: nothing of the part's shutdown runs
        self.proc.wait()


def wait_for(check, timeout: float = 60, every: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
