"""Helpers for the export and serve tests: a run with a mid-run checkpoint, a real server."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from river.linear_model import LogisticRegression

import workbench as wb
from workbench.config import load
from workbench.export.signing import sign_bundle
from workbench.sources import open_source
from workbench.store import Store

N = 1200
AT = 800  # where the mid-run checkpoint is taken
TOKEN = "test-token-123"


def config(n: int = N) -> dict:
    return {
        "name": "export",
        "seed": 5,
        "source": {"kind": "synthetic", "generator": "agrawal", "n": n},
        "learners": [
            {
                "name": "lr",
                "model": "river.linear_model.LogisticRegression",
                "preprocessing": ["river.preprocessing.StandardScaler"],
            },
            {"name": "tree", "model": "river.tree.HoeffdingTreeClassifier"},
        ],
        "metrics": ["accuracy", "log_loss"],
    }


def run_with_mid_checkpoint(db: Path, scratch: Path) -> str:
    """A run whose learners have a checkpoint at AT (version 1) and the final one (version 2),
    with steps numbered by version the way scheduled checkpoints number them.

    The state at AT is the final state of the same stream cut at AT (a synthetic stream with a
    seed is the same prefix whatever its length).
    """
    run = wb.run(config(), db=db, progress=False)
    prefix = wb.run(config(AT), db=scratch, progress=False)
    store = Store(db)
    store.sql("UPDATE checkpoints SET version = 2 WHERE run_id = ?", [run.id])
    store.sql("UPDATE steps SET model_version = 1 WHERE run_id = ? AND seq >= ?", [run.id, AT])
    for learner in ("lr", "tree"):
        cp = Store(scratch).checkpoint_state(prefix.id, learner)
        store.sql(
            "INSERT INTO checkpoints VALUES (?, ?, 1, ?, now(), 'scheduled', ?, ?, ?)",
            [run.id, learner, AT, json.dumps(cp["metrics"]), cp["sha256"], cp["state"]],
        )
    return run.id


def events(n: int = N) -> list:
    return list(open_source(load(config(n)).source, 5).events(lambda _: None))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`workbench serve` in a subprocess on 127.0.0.1; ``stop()`` (or ``kill()``) ends it."""

    def __init__(
        self, bundle: Path, *args: str, token: str | None = TOKEN, env: dict | None = None
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "workbench.cli",
            "serve",
            str(bundle),
            "--port",
            str(self.port),
            *args,
        ]
        if token:
            command += ["--token", token]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read()}")
            try:
                if call(self.url + "/health")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not answer /health within 60 s")
            time.sleep(0.1)

    def stop(self) -> str:
        """Stop it (SIGTERM, as a supervisor would) and return what it printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stdout.read()

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no shutdown code runs
        self.proc.wait()
        self.proc.stdout.close()


def call(
    url: str,
    body=None,
    token: str | None = None,
    raw: bytes | None = None,
    method: str | None = None,
) -> tuple[int, object]:
    """(status, parsed JSON or text) of one request; 4xx answers are returned, not raised."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, method=method or ("POST" if data is not None else "GET")
    )
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text, kind = (
                response.status,
                response.read().decode(),
                response.headers["content-type"],
            )
    except urllib.error.HTTPError as exc:
        status, text, kind = exc.code, exc.read().decode(), exc.headers["content-type"]
    return status, json.loads(text) if kind.startswith("application/json") else text


class FlakyClassifier(LogisticRegression):
    """A model that fails the way a buggy one would: learning a record with salary -1 raises,
    and after learning one with salary -2 it can no longer predict. Served from a bundle, it is
    unpickled by the server: run that with this folder on PYTHONPATH."""

    def learn_one(self, x, y):
        if x.get("salary") == -1:
            raise ValueError("salary -1 breaks this model")
        if x.get("salary") == -2:
            self.broken = True
        super().learn_one(x, y)

    def predict_proba_one(self, x):
        if getattr(self, "broken", False):
            raise RuntimeError("this model was poisoned")
        return super().predict_proba_one(x)


def flaky_bundle(db: Path, run_id: str, out: Path) -> Path:
    """The run's lr bundle with its model swapped for a FlakyClassifier, signed as its exporter
    would sign it."""
    bundle = wb.export(run_id, "lr", out, db=db)
    model = FlakyClassifier()
    for ev in events(300):
        model.learn_one(ev.x, ev.y)
    rehash(bundle, "model.pkl", pickle.dumps(model))
    sign_bundle(bundle)
    return bundle


def rehash(bundle: Path, name: str, data: bytes) -> None:
    """Replace one file of a bundle and recompute its hashes in the manifest and SHA256SUMS (as
    whoever can write the bundle can)."""
    (bundle / name).write_bytes(data)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(data).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    names = [*manifest["files"], "manifest.json"]
    sums = "".join(f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    (bundle / "SHA256SUMS").write_text(sums)
