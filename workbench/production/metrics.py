"""The update service's Prometheus metrics: what the alert rules (``alerts.py``) watch."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: served outcomes per arm in the rolling accuracy gauge
SERVED_WINDOW = 500


class LearnerMetrics:
    def __init__(self, service):
        self.registry = r = CollectorRegistry()
        self.updates = Counter("workbench_updates", "Labels learned", registry=r)
        self.update_latency = Histogram(
            "workbench_update_latency_seconds",
            "From a label's arrival on its topic to the model having learned it",
            buckets=_LATENCY,
            registry=r,
        )
        self.learn_seconds = Histogram(
            "workbench_learn_seconds", "Wall time of one mini-batch of updates", buckets=_LATENCY, registry=r
        )
        self.join_lag = Histogram(
            "workbench_label_join_lag_seconds",
            "From a label's arrival to its join with the served prediction",
            buckets=_LATENCY,
            registry=r,
        )
        self.publish_seconds = Histogram(
            "workbench_publish_seconds", "Time to publish a version to the model store", buckets=_LATENCY, registry=r
        )
        self.versions = Counter("workbench_versions_published", "Versions published, by reason", ["reason"], registry=r)
        self.rollbacks = Counter("workbench_rollbacks", "Rollbacks, by reason", ["reason"], registry=r)
        self.drift = Counter("workbench_drift_events", "Drift detector alarms", ["kind"], registry=r)
        self.consumer_lag = Gauge("workbench_consumer_lag", "Messages not yet consumed", ["topic"], registry=r)
        self.served_total = Counter(
            "workbench_served_outcomes",
            "Served predictions joined with their label",
            ["arm", "version", "correct"],
            registry=r,
        )
        self.served_accuracy = Gauge(
            "workbench_served_accuracy",
            f"Accuracy of the last {SERVED_WINDOW} served predictions",
            ["arm"],
            registry=r,
        )
        self.baseline_accuracy = Gauge(
            "workbench_baseline_accuracy", "Accuracy of the bundle at export (the batch reference)", registry=r
        )
        self.unlabelled_share = Gauge(
            "workbench_unlabelled_share", "Served predictions still waiting for a label, as a share", registry=r
        )
        Gauge("workbench_model_version", "The store's current version", registry=r).set_function(
            lambda: service.current or 0
        )
        accuracy = service.bundle.manifest.get("metrics", {}).get("accuracy")
        if accuracy is not None:
            self.baseline_accuracy.set(accuracy)
        self._windows: dict[str, deque] = {}
        self._n_served = 0
        self._server = None

    def serve(self, port: int | None) -> None:
        if port is not None:
            self._server, _ = start_http_server(port, "127.0.0.1", registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def published(self, cp, seconds: float) -> None:
        self.versions.labels(cp.reason).inc()
        self.publish_seconds.observe(seconds)

    def learned(self, answers: list[tuple], seconds: float) -> None:
        now = time.time()
        self.updates.inc(len(answers))
        self.learn_seconds.observe(seconds)
        for *_, ts in answers:
            if ts is not None:
                self.update_latency.observe(max(0.0, now - ts / 1000))

    def served(self, rec: dict, correct: bool | None, lag: float) -> None:
        self._n_served += 1
        self.join_lag.observe(lag)
        self.served_total.labels(rec["arm"], str(rec["version"]), str(correct).lower()).inc()
        if correct is not None:
            window = self._windows.setdefault(rec["arm"], deque(maxlen=SERVED_WINDOW))
            window.append(correct)
            self.served_accuracy.labels(rec["arm"]).set(sum(window) / len(window))

    def unlabelled(self, waiting: int) -> None:
        total = waiting + self._n_served
        self.unlabelled_share.set(waiting / total if total else 0.0)

    def history(self, batch) -> None:
        for _, _, kind, *_ in batch.drift_events:
            self.drift.labels(kind).inc()
        for row in batch.rollbacks:
            self.rollbacks.labels(row[3]).inc()

    def lag(self, consumer, positions: dict) -> None:
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            try:
                _, high = consumer.get_watermark_offsets(tp, timeout=1.0, cached=True)
            except Exception:  # a broker that is slow to answer: the gauge keeps its last value
                continue
            if high >= 0:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - positions.get((tp.topic, tp.partition), 0))
        for topic, n in lag.items():
            self.consumer_lag.labels(topic).set(n)
