"""An inference replica: ``workbench serve --store URL`` serves the store's current version and
swaps to each new one as it is announced (Redis pub/sub) or seen (polling a store directory).

A watcher thread fetches, verifies (SHA-256, signature) and unpickles a new version; the swap
itself runs on the event loop's thread between two requests, so a response is always made by
one version and carries its number. Replicas do not learn: labels go to the labels topic,
which the update service learns from.

Every prediction is logged to the predictions topic (when given) with its request id (the
``id`` the client sends — the event's id — or a fresh one), the arm and the version, for the
update service to join with its label. With an A/B split, a request is answered by arm b when
the hash of its ``key`` (default: its id) falls in b's share, so a key always meets the same
arm; both arms predict every request and both predictions are logged (the one not returned as
a shadow), so the verdict pairs the arms on the same requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from workbench.export.bundle import load as load_bundle
from workbench.export.service import Refusal, Service, invalid
from workbench.learners.river import gives_proba
from workbench.production.config import ABConfig
from workbench.production.modelstore import StoreError, open_store

#: seconds a replica waits at start for the update service to publish a first version
FIRST_VERSION_WAIT = 120.0
_ID_TYPES = (str, int)


@dataclass
class Arm:
    name: str
    model: Any
    version: int
    proba: bool


def bucket(key: str) -> float:
    """Where ``key`` falls in [0, 1): the same for a key on every replica and every restart."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


class Replica(Service):
    """A Service whose model comes from the model store (and an optional arm b)."""

    def __init__(
        self,
        store: str,
        predictions: str | None = None,
        bootstrap_servers: str | None = None,
        ab: ABConfig | None = None,
        trust_unsigned: bool = False,
    ):
        self.store = open_store(store)
        folder = Path(tempfile.mkdtemp(prefix="workbench-replica-"))
        for name, data in self._bundle_files().items():
            (folder / name).write_bytes(data)
        super().__init__(folder, folder / "state", trust_unsigned=trust_unsigned)
        current = self.store.wait(None, FIRST_VERSION_WAIT)
        if current is None:
            raise RuntimeError(f"{self.store.url} has no published version after {FIRST_VERSION_WAIT:.0f} s")
        self.a = self._arm("a", current)
        self.swaps: dict[int, dict[str, float]] = {}
        self._serve(self.a)
        self.ab = ab
        self.b = None
        if ab is not None:
            if isinstance(ab.b, int):
                self.b = self._arm("b", ab.b)
            else:
                bundle = load_bundle(ab.b, trust_unsigned)
                self.b = Arm("b", bundle.model, bundle.version, self.classifier and gives_proba(bundle.model))
        self.topic = predictions
        self.producer = None
        self.n_dropped = 0
        if predictions:
            from confluent_kafka import Producer

            self.producer = Producer({"bootstrap.servers": bootstrap_servers, "linger.ms": 5})
        self._stop = threading.Event()

    def _bundle_files(self) -> dict[str, bytes]:
        """The deployment's bundle, once the update service has put it in the store."""
        deadline = time.monotonic() + FIRST_VERSION_WAIT
        while True:
            try:
                return self.store.bundle_files()
            except StoreError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _arm(self, name: str, version: int) -> Arm:
        meta, model = self.store.load(version, self.trust_unsigned)
        return Arm(name, model, version, self.classifier and gives_proba(model))

    def _serve(self, arm: Arm) -> None:
        self.model, self.version, self.proba = arm.model, arm.version, arm.proba

    # -- following the store ------------------------------------------------------------------------
    def follow(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the watcher thread; swaps are handed to ``loop``."""
        self._thread = threading.Thread(target=self._watch, args=(loop,), name="workbench-replica", daemon=True)
        self._thread.start()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        seen = self.a.version
        while not self._stop.is_set():
            try:
                current = self.store.wait(seen, 1.0)
                if current is None or current == seen:
                    continue
                meta, model = self.store.load(current, self.trust_unsigned)
            except Exception as exc:  # a store that is briefly unreachable: keep serving, retry
                print(f"workbench serve: cannot follow the store: {exc}", flush=True)
                time.sleep(0.5)
                continue
            seen = current
            arm = Arm("a", model, current, self.classifier and gives_proba(model))
            loop.call_soon_threadsafe(self._swap, arm, meta.get("published_at"))

    def _swap(self, arm: Arm, published_at: float | None) -> None:
        self.a = arm
        self._serve(arm)
        self.swaps[arm.version] = {"published_at": published_at, "swapped_at": time.time()}

    def close(self) -> None:
        self._stop.set()
        if self.producer is not None:
            self.producer.flush(5)
        super().close()

    # -- requests -----------------------------------------------------------------------------------
    def predict(self, body: dict) -> dict[str, Any]:
        body = dict(body)
        ids = body.pop("ids", None) if "instances" in body else body.pop("id", None)
        keys = body.pop("keys", None) if "instances" in body else body.pop("key", None)
        single = "instances" not in body
        n = 1 if single else len(body["instances"]) if type(body.get("instances")) is list else 0
        ids = self._ids(ids, n, single, "ids" if not single else "id")
        keys = ids if keys is None else self._ids(keys, n, single, "keys" if not single else "key")
        answer_a = super().predict(body)
        answer_b = None
        if self.b is not None:
            self._serve(self.b)
            try:
                answer_b = super().predict(body)
            finally:
                self._serve(self.a)
        answers = {"a": answer_a, "b": answer_b}
        if single:
            arm = "b" if self.b is not None and not self.ab.shadow and bucket(keys[0]) < self.ab.split else "a"
            chosen = dict(answers[arm], id=ids[0], arm=arm)
            self._log(ids, answers, [arm])
            return chosen
        arms = ["b" if self.b is not None and not self.ab.shadow and bucket(k) < self.ab.split else "a" for k in keys]
        self._log(ids, answers, arms)
        return self._batch_answer(answers, arms, ids)

    def _batch_answer(self, answers: dict, arms: list[str], ids: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"predictions": [answers[arm]["predictions"][i] for i, arm in enumerate(arms)]}
        if "probas" in answers["a"]:
            out["probas"] = [answers[arm].get("probas", [None] * len(arms))[i] for i, arm in enumerate(arms)]
        out["versions"] = [answers[arm]["version"] for arm in arms]
        out["version"] = answers["a"]["version"]
        out["ids"], out["arms"] = ids, arms
        return out

    @staticmethod
    def _ids(given: Any, n: int, single: bool, name: str) -> list[str]:
        if given is None:
            return [uuid.uuid4().hex for _ in range(n)]
        values = [given] if single else given
        if type(values) is not list or len(values) != n or not all(type(v) in _ID_TYPES for v in values):
            what = "a string or an integer" if single else f"a list of {n} strings or integers, one per instance"
            raise Refusal(422, [invalid(["body", name], f"expected {what}", "type_error")])
        return [str(v) for v in values]

    def _log(self, ids: list[str], answers: dict, arms: list[str]) -> None:
        if self.producer is None:
            return
        now = int(time.time() * 1000)
        for name, answer in answers.items():
            if answer is None:
                continue
            preds = [answer["prediction"]] if "prediction" in answer else answer["predictions"]
            probas = [answer.get("proba")] if "prediction" in answer else answer.get("probas", [None] * len(preds))
            for i, rid in enumerate(ids):
                record = {
                    "id": rid,
                    "arm": name,
                    "version": answer["version"],
                    "prediction": preds[i],
                    "proba": list(probas[i].items()) if probas[i] else None,
                    "answered": arms[i] == name,
                    "served_at": now,
                }
                try:
                    self.producer.produce(self.topic, orjson.dumps(record), rid.encode())
                except BufferError:  # never hold up an answer for the log: count what was dropped
                    self.n_dropped += 1
        self.producer.poll(0)

    def info(self) -> dict[str, Any]:
        info = super().info()
        info.update(
            {
                "store": self.store.url,
                "swaps": {str(v): t for v, t in self.swaps.items()},
                "arms": {arm.name: arm.version for arm in (self.a, self.b) if arm is not None},
                "predictions_dropped": self.n_dropped,
            }
        )
        return info


def serve(
    store: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    predictions: str | None = None,
    bootstrap_servers: str | None = None,
    ab: ABConfig | None = None,
    trust_unsigned: bool = False,
) -> None:
    """Serve the store's current version until interrupted, following every new one."""
    import uvicorn

    from workbench.export.app import create_app

    replica = Replica(store, predictions, bootstrap_servers, ab, trust_unsigned)
    app = create_app(replica, token)

    async def start_following() -> None:
        replica.follow(asyncio.get_running_loop())

    app.router.on_startup.append(start_following)
    print(
        f"workbench serve: replica of {replica.store.url}, version {replica.version}, on http://{host}:{port}",
        flush=True,
    )
    try:
        uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning")
    finally:
        replica.close()
