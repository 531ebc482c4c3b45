"""The update service: learns from the live events and labels topics, publishes versions.

Events (features, with an id) and labels (the id and the target, later) are decoded by the
replay's own Kafka decoder (bad records become dead letters) and joined on the id as the
replay's label join does: a label that comes before its event is held until the event comes.
Each event is predicted when it arrives and learned when its label does, by an arm of the
runner with the run's supervisor attached (drift detector and action, guard rollback,
checkpoints every N updates); a checkpoint is also taken after T seconds with updates. Every
checkpoint is **published** to the model store, and its steps go to DuckDB as a run with status
``live``.

Delivery: a published version carries the service's *resume state* (the consumer's position in
every partition, the events still waiting for labels, the labels waiting for events), and the
same positions are then committed to Kafka. After a crash (even ``kill -9``) the service restarts
from the newest published version and its positions: every label after the last committed offset
is read again, and none before it is learned twice. Messages are handled in the order they
arrive, which is the order a live system sees them.

Served predictions (logged by the replicas to the predictions topic) are joined to the same
labels and scored per version and per arm into the run's ``served`` table; with
``served_guard``, a current version whose served accuracy falls below arm b's (the baseline) or
the bundle's by more than ``drop`` is rolled back in the store.
"""

from __future__ import annotations

import pickle
import signal
import threading
import time
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from workbench import __version__
from workbench import config as config_mod
from workbench.config import SourceConfig
from workbench.evaluation.metrics import names_for
from workbench.experiment import new_run_id
from workbench.export.bundle import load as load_bundle
from workbench.production.config import DeployConfig
from workbench.production.feedback import Feedback
from workbench.production.metrics import LearnerMetrics
from workbench.production.modelstore import StoreError, open_store
from workbench.runner import make_arm
from workbench.sources.kafka_live import POLL_MESSAGES, POLL_SECONDS, _partitions, _timestamp
from workbench.sources.kafka_records import Decoder
from workbench.store import RunWriter
from workbench.supervision import attach
from workbench.versioning import Checkpoint

#: seconds between two hand-overs of steps to the DuckDB writer
FLUSH_SECONDS = 1.0


def _experiment(bundle, cfg: DeployConfig) -> config_mod.Config:
    """The bundle's learner with the science the service applies (its drift and guard)."""
    config, settings = bundle.config, bundle.settings
    raw = {
        "name": f"{bundle.manifest['run_name']}-live",
        "source": {"kind": "python", "task": bundle.task},
        "learners": config["learners"],
        "metrics": config.get("metrics", []),
        "checkpoints": {"every": cfg.every, "keep": 10},
    }
    if settings.get("drift_from") == "run" or (settings.get("drift") or {}).get("action", "none") != "none":
        raw["drift"] = settings["drift"]
    if settings.get("guard"):
        raw["guard"] = settings["guard"]
    return config_mod.load(raw)


class UpdateService:
    def __init__(self, cfg: DeployConfig):
        self.cfg = cfg
        self.store = open_store(cfg.store)
        self.bundle = bundle = load_bundle(cfg.bundle, cfg.trust_unsigned)
        self.learner = bundle.learner
        self.experiment = exp = _experiment(bundle, cfg)
        task = bundle.task
        labels = bundle.target.get("type")  # text labels: log_loss is CrossEntropy, as in the replay
        self.arm = make_arm(self.learner, bundle.model, task, names_for(exp.metrics, task, labels), labels)
        attach([self.arm], {self.learner}, exp, task)
        self.supervisor = self.arm.supervisor
        self.metrics = LearnerMetrics(self)
        self.run_id = new_run_id()
        self.writer = RunWriter(cfg.db, self.run_id)
        source = SourceConfig(kind="kafka", time_unit="s" if cfg.events.time == "kafka" else "ms")
        self.events = Decoder(source, self.writer.dead_letter, target=None, id=cfg.events.id, time=cfg.events.time)
        self.labels = Decoder(
            source, self.writer.dead_letter, target=cfg.labels.target, id=cfg.labels.id, time=cfg.labels.time
        )
        # the resume state: everything consumed is in the model or in these
        self.positions: dict[tuple[str, int], int] = {}
        self.waiting: dict[Any, tuple[int, Any]] = {}  # event id -> (seq, event) asked, no label yet
        self.early: dict[Any, Any] = {}  # event id -> label that came before its event
        self.seq = 0
        self.n_updates = 0
        self.current: int | None = None  # the store's current version, as this service last saw it
        self.feedback = Feedback(
            bundle.task != "regression",
            self.metrics,
            cfg.guard_window,
            cfg.guard_drop,
            bundle.manifest.get("metrics", {}).get("accuracy"),
        )
        self._n_cps = 0
        self._updates_at_publish = 0

    # -- start --------------------------------------------------------------------------------------
    def _start(self) -> None:
        """Resume from the store's newest version with a resume state, or publish the bundle."""
        resume = self.store.resume()
        if resume is None:
            self.store.put_bundle(self.bundle.path)
            manifest = self.bundle.manifest
            self.arm.version = self.bundle.version
            state = (self.bundle.path / "model.pkl").read_bytes()
            cp = Checkpoint(
                self.learner,
                self.bundle.version,
                0,
                state,
                manifest["files"]["model.pkl"],
                manifest.get("metrics", {}),
                "bundle",
            )
            self.current = self.store.current()
            if not self._publish(cp):
                raise StoreError(f"{self.store.url} changed while the bundle was being published: start again")
            return
        meta, blob = resume
        state = pickle.loads(blob)
        _, model = self.store.load(meta["version"], self.cfg.trust_unsigned)
        self.arm.set_model(model)
        self.arm.version = max(m["version"] for m in self.store.versions())
        self.arm._pending = state["pending"]
        for key in ("positions", "waiting", "early", "seq", "n_updates"):
            setattr(self, key, state[key])
        self.feedback.restore(state["feedback"])
        self._updates_at_publish = self.n_updates
        self.current = meta["version"]

    def _resume_state(self) -> bytes:
        return pickle.dumps(
            {
                "positions": self.positions,
                "waiting": self.waiting,
                "early": self.early,
                "pending": self.arm._pending,
                "feedback": self.feedback.state(),
                "seq": self.seq,
                "n_updates": self.n_updates,
                "run_id": self.run_id,
            },
            protocol=5,
        )

    # -- versions -----------------------------------------------------------------------------------
    def _publish(self, cp: Checkpoint) -> bool:
        meta = {
            "version": cp.version,
            "learner": cp.learner,
            "reason": cp.reason,
            "seq": cp.seq,
            "n_updates": self.n_updates,
            "metrics": cp.metrics,
            "sha256": cp.sha256,
            "run_id": self.run_id,
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
        started = time.perf_counter()
        if not self.store.publish(meta, cp.state, self._resume_state(), expect=self.current):
            return False
        self.current = cp.version
        self._updates_at_publish = self.n_updates
        self.metrics.published(cp, time.perf_counter() - started)
        self._last_publish = time.monotonic()
        if self.positions and hasattr(self, "consumer"):
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in self.positions.items()], asynchronous=False
            )
        return True

    def _publish_new(self) -> None:
        """Publish the checkpoints the supervisor took since the last look."""
        cps = self.arm.batch.checkpoints
        while self._n_cps < len(cps):
            cp = cps[self._n_cps]
            self._n_cps += 1
            if not self._publish(cp):
                self._adopt()

    def _adopt(self, reason: str = "manual") -> None:
        """The store's current version was moved (a rollback): serve that model, as a new version."""
        current = self.store.current()
        if current is None or current == self.current:
            return
        meta, state = self.store.get(current)
        self.arm.version = max(self.arm.version, max(m["version"] for m in self.store.versions()))
        cp = Checkpoint(
            self.learner, current, meta.get("seq", self.seq), state, meta["sha256"], meta.get("metrics", {})
        )
        before = len(self.arm.batch.checkpoints)
        self.supervisor._rollback(cp, self.seq, reason)
        self.supervisor._restart()
        self.current = current
        self._n_cps = before
        self.feedback.restart()
        self._publish_new()

    # -- the loop -----------------------------------------------------------------------------------
    def _assign(self) -> None:
        cfg = self.cfg
        self.consumer = Consumer(
            {
                "bootstrap.servers": cfg.bootstrap_servers,
                "group.id": cfg.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # a label is learned soon after it lands, not at the broker's next fetch deadline
                "fetch.wait.max.ms": 10,
            }
        )
        topics = [cfg.events.topic, cfg.labels.topic] + ([cfg.predictions] if cfg.predictions else [])
        assignment = []
        for topic in topics:
            for p in _partitions(self.consumer, topic):
                assignment.append(TopicPartition(topic, p, self.positions.get((topic, p), OFFSET_BEGINNING)))
        self.consumer.assign(assignment)

    def run(self, stop: threading.Event) -> str:
        """Learn until ``stop`` is set; returns how the run ended."""
        self._start()
        self._assign()
        cfg = self.cfg
        self.writer.begin(
            self.experiment.name,
            {**self.experiment.to_dict(), **cfg.to_dict()},
            self.bundle.task,
            self.experiment.seed,
            __version__,
            status="live",
        )
        self.writer.feature_schema(self._schema())
        self.metrics.serve(cfg.metrics_port)
        self._publish_new()
        started, status, error = time.perf_counter(), "stopped", None
        self._last_publish = last_flush = time.monotonic()
        try:
            while not stop.is_set():
                batch = self.consumer.consume(POLL_MESSAGES, POLL_SECONDS)
                self._handle(batch)
                now = time.monotonic()
                if now - self._last_publish >= cfg.seconds and self.n_updates > self._updates_at_publish:
                    self.supervisor._checkpoint(max(self.seq - 1, 0), "scheduled")
                    self._publish_new()
                if self.store.current() != self.current:
                    self._adopt()
                if now - last_flush >= FLUSH_SECONDS:
                    self._flush()
                    last_flush = now
            if self.n_updates > self._updates_at_publish:
                self.supervisor._checkpoint(max(self.seq - 1, 0), "final")
                self._publish_new()
        except BaseException as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._flush(final=True)
            counts = {
                "n_events": self.seq,
                "n_dead_letters": self.writer.n_dead_letters,
                "n_unlabelled": len(self.arm._pending),
                "n_orphan_labels": len(self.early),
                "n_duplicates": self.events.n_duplicates + self.labels.n_duplicates,
            }
            learner_row = {
                "learner": self.learner,
                "kind": "online",
                "model": self.bundle.manifest["model"],
                "spec": self.bundle.config["learners"][0],
                "metrics": self.arm.metric_values(),
            }
            self.writer.finish(status, counts, [learner_row], time.perf_counter() - started, error)
            self.consumer.close()
            self.store.close()
            self.metrics.stop()
        return status

    def _schema(self) -> list[dict]:
        features = [{"role": "feature", **f} for f in self.bundle.features]
        target = {"role": "target", "name": self.cfg.labels.target, "name_type": "str", **self.bundle.target}
        return features + [target]

    def _handle(self, batch: list) -> None:
        cfg, arm = self.cfg, self.arm
        answers: list[tuple] = []
        batched = cfg.batch_size > 1 and arm.batched
        for msg in batch:
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            value, origin = msg.value(), f"{topic}/{partition}/{offset}"
            if topic == cfg.events.topic:
                ev = self.events.message(topic, partition, offset, _timestamp(msg), value, origin, value)
                if ev is not None:
                    self._question(ev)
            elif topic == cfg.labels.topic:
                lab = self.labels.message(topic, partition, offset, _timestamp(msg), value, origin, value)
                if lab is not None:
                    answer = self._label(lab, _timestamp(msg))
                    if answer is not None:
                        answers.append(answer)
            else:
                self.feedback.served(value)
                self._served_guard()
            self.positions[(topic, partition)] = offset + 1
            if answers and (not batched or len(answers) >= cfg.batch_size):
                self._learn(answers, batched)
                answers = []
            self._publish_new()
        if answers:
            self._learn(answers, batched)
            self._publish_new()

    def _question(self, ev) -> None:
        seq, self.seq = self.seq, self.seq + 1
        self.arm.ask(seq, ev)
        if ev.key in self.early:
            label, ts = self.early.pop(ev.key)
            self._learn([(seq, ev, label, ts)], False)
        else:
            self.waiting[ev.key] = (seq, ev)

    def _label(self, lab, ts: int | None) -> tuple | None:
        key = lab.key
        self.feedback.label(str(key), lab.y, ts)
        self._served_guard()
        if key in self.waiting:
            seq, ev = self.waiting.pop(key)
            return seq, ev, lab.y, ts
        self.early[key] = (lab.y, ts)  # (a second label for an id was dropped by its decoder)
        return None

    def _learn(self, answers: list[tuple], batched: bool) -> None:
        arm, started = self.arm, time.perf_counter()
        if batched:
            _answer_many(arm, answers)
        else:
            for seq, ev, y, _ in answers:
                arm.answer(seq, ev, y)
        self.n_updates += len(answers)
        self.metrics.learned(answers, time.perf_counter() - started)

    def _served_guard(self) -> None:
        """Roll back in the store when the served accuracy fell below the baseline's."""
        if not self.feedback.breached():
            return
        try:
            self.store.rollback()
        except StoreError:
            return
        self._adopt("served_guard")

    # -- hand-overs ---------------------------------------------------------------------------------
    def _flush(self, final: bool = False) -> None:
        if final:
            self.arm.flush_unanswered()
        self._publish_new()
        self.metrics.history(self.arm.batch)
        self._n_cps = 0
        self.writer.write([self.arm.take()])
        self.writer.served(self.feedback.take(final))
        self.metrics.lag(self.consumer, self.positions)


def _answer_many(arm, answers: list[tuple]) -> None:
    """Learn a mini-batch of answers with one ``learn_many``, then score each stored prediction."""
    import pandas as pd

    X = pd.DataFrame.from_records([ev.x for _, ev, _, _ in answers])
    y = pd.Series([label for _, _, label, _ in answers])
    t0 = time.perf_counter_ns()
    arm.model.learn_many(X, y)
    share = (time.perf_counter_ns() - t0) // len(answers)
    for seq, ev, label, _ in answers:
        pred, predict_ns, version, _ = arm._pending.pop(seq)
        arm._record(seq, ev.time, label, pred, predict_ns, share, version)


def main(cfg: DeployConfig) -> int:
    """Run the update service until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    service = UpdateService(cfg)
    print(
        f"workbench learner: {service.learner} from {cfg.events.topic} + {cfg.labels.topic} "
        f"on {cfg.bootstrap_servers}; versions to {cfg.store}; run {service.run_id} in {cfg.db}",
        flush=True,
    )
    status = service.run(stop)
    print(
        f"workbench learner: {status} after {service.n_updates:,} updates; current version {service.current}",
        flush=True,
    )
    return 0
