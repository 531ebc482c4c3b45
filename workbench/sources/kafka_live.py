"""Live Kafka topics (``kind: kafka``) through confluent-kafka, and ``workbench record``.

A live topic goes through the same decoder and the same replay stage as a dump, so a live run
and a dump of the same messages give the same steps.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from workbench.config import SourceConfig, StopConfig
from workbench.errors import ConfigError, SourceError
from workbench.events import Event, TrueDrift
from workbench.sources.base import DeadLetterSink
from workbench.sources.kafka_records import Decoder

#: messages asked for per poll, and how long a poll waits (longer stalls on a last partial batch)
POLL_MESSAGES, POLL_SECONDS = 500, 0.1
METADATA_TIMEOUT = 10.0


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=METADATA_TIMEOUT).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise SourceError(
            f"source.topics: topic {topic!r} does not exist or has no partitions"
            + (f" ({meta.error})" if meta is not None and meta.error else "")
        )
    return sorted(meta.partitions)


def _start_offsets(
    consumer: Consumer, topic: str, partitions: list[int], start: Any
) -> list[TopicPartition]:
    if start == "earliest":
        return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
    if start == "latest":
        return [TopicPartition(topic, p, OFFSET_END) for p in partitions]
    if isinstance(start, dict):
        offsets = start.get(topic, start)
        return [
            TopicPartition(topic, p, int(offsets.get(p, offsets.get(str(p), OFFSET_BEGINNING))))
            for p in partitions
        ]
    ms = int(datetime.fromisoformat(start).timestamp() * 1000)
    return consumer.offsets_for_times(
        [TopicPartition(topic, p, ms) for p in partitions], timeout=METADATA_TIMEOUT
    )


def messages(
    bootstrap_servers: str,
    topics: list[str],
    group_id: str | None = None,
    start: Any = "earliest",
    stop: StopConfig | None = None,
) -> Iterator[Any]:
    """Messages of ``topics`` until the stop condition: max_events, idle_timeout, or the end
    offsets the partitions had when the replay started (whichever comes first)."""
    stop = stop or StopConfig()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            # A group given by the user resumes from (and commits) its offsets; else a throwaway.
            "group.id": group_id or f"workbench-{secrets.token_hex(4)}",
            "enable.auto.commit": group_id is not None,
            "auto.offset.reset": "latest" if start == "latest" else "earliest",
            "enable.partition.eof": False,
        }
    )
    try:
        remaining: dict[tuple[str, int], int] = {}
        assignment = []
        for topic in topics:
            starts = _start_offsets(consumer, topic, _partitions(consumer, topic), start)
            if group_id is not None:  # resume where the group left off, where it has
                committed = consumer.committed(starts, timeout=METADATA_TIMEOUT)
                starts = [c if c.offset >= 0 else s for c, s in zip(committed, starts, strict=True)]
            assignment += starts
            for tp in starts if stop.end_offsets else []:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, tp.partition), timeout=METADATA_TIMEOUT
                )
                # OFFSET_END, or -1 from a broker asked for a time after the last message
                first = low if tp.offset == OFFSET_BEGINNING else tp.offset
                if first >= 0 and high > max(first, low):
                    remaining[(topic, tp.partition)] = high
        consumer.assign(assignment)
        yield from _poll(consumer, remaining, stop)
    finally:
        consumer.close()


def _poll(
    consumer: Consumer, remaining: dict[tuple[str, int], int], stop: StopConfig
) -> Iterator[Any]:
    n, last = 0, time.monotonic()
    while True:
        if stop.end_offsets and not remaining:
            return
        batch = consumer.consume(POLL_MESSAGES, POLL_SECONDS)
        if not batch:
            if stop.idle_timeout is not None and time.monotonic() - last >= stop.idle_timeout:
                return
            continue
        last = time.monotonic()
        for msg in batch:
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise SourceError(f"source.bootstrap_servers: {KafkaException(msg.error())}")
            yield msg
            n += 1
            where = (msg.topic(), msg.partition())
            if where in remaining and msg.offset() + 1 >= remaining[where]:
                del remaining[where]
            if stop.max_events is not None and n >= stop.max_events:
                return


def _timestamp(msg) -> int | None:
    kind, ts = msg.timestamp()
    return None if kind == 0 or ts < 0 else ts  # 0: TIMESTAMP_NOT_AVAILABLE


def decode(msgs: Iterator[Any], decoder: Decoder) -> Iterator[Event]:
    for msg in msgs:
        topic, partition, offset, value = msg.topic(), msg.partition(), msg.offset(), msg.value()
        ev = decoder.message(
            topic, partition, offset, _timestamp(msg), value, f"{topic}/{partition}/{offset}", value
        )
        if ev is not None:
            yield ev


def kcat_line(msg) -> bytes:
    """A message as ``kcat -J`` writes it (bytes that are not UTF-8 written raw, as kcat does)."""

    def text(b: bytes | None) -> str | None:
        return None if b is None else b.decode("utf-8", "surrogateescape")

    kind, _ = msg.timestamp()
    record: dict[str, Any] = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "tstype": {1: "create", 2: "logappend"}.get(kind, "unknown"),
        "ts": _timestamp(msg) if _timestamp(msg) is not None else -1,
        "broker": -1,
    }
    if msg.headers():
        record["headers"] = [
            text(part) if isinstance(part, bytes) else part
            for pair in msg.headers()
            for part in pair
        ]
    record["key"] = text(msg.key())
    record["payload"] = text(msg.value())
    return (
        json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogateescape"
        )
        + b"\n"
    )


class KafkaSource:
    """``source: {kind: kafka, bootstrap_servers, topics, group_id, start, stop, ...}``."""

    def __init__(self, config: SourceConfig):
        self.config = config
        self.decoders: list[Decoder] = []

    def validate(self) -> None:
        cfg = self.config
        if cfg.labels is not None and cfg.id is None:
            raise ConfigError(
                "source.id",
                "required with source.labels: the payload field that the labels' id matches",
            )
        if cfg.task is None:
            raise ConfigError(
                "source.task",
                "required for a live topic (telling it would consume messages): "
                "binary, multiclass or regression",
            )
        consumer = Consumer(
            {"bootstrap.servers": cfg.bootstrap_servers, "group.id": "workbench-check"}
        )
        try:
            for topic in cfg.topics + ([cfg.labels.topic] if cfg.labels is not None else []):
                _partitions(consumer, topic)
        except KafkaException as exc:
            raise SourceError(
                f"source.bootstrap_servers: cannot reach {cfg.bootstrap_servers}: {exc}"
            ) from None
        finally:
            consumer.close()

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def length(self) -> int | None:
        return self.config.n or (self.config.stop.max_events if self.config.stop else None)

    def true_drifts(self) -> list[TrueDrift]:
        return []

    def events(self, dead_letter: DeadLetterSink) -> Iterator[Event]:
        return self.streams(dead_letter)[0]

    def streams(self, dead_letter: DeadLetterSink) -> list[Iterator[Event]]:
        cfg = self.config
        decoder = Decoder(cfg, dead_letter)
        self.decoders.append(decoder)
        return [
            decode(
                messages(cfg.bootstrap_servers, cfg.topics, cfg.group_id, cfg.start, cfg.stop),
                decoder,
            )
        ]

    def label_streams(self, dead_letter: DeadLetterSink) -> list[Iterator[Event]]:
        cfg, lab = self.config, self.config.labels
        decoder = Decoder(cfg, dead_letter, target=lab.target, id=lab.id, time=lab.time)
        self.decoders.append(decoder)
        # Labels are read to the same end (but not capped at max_events, which counts events).
        stop = (
            StopConfig(idle_timeout=cfg.stop.idle_timeout, end_offsets=cfg.stop.end_offsets)
            if cfg.stop
            else None
        )
        return [
            decode(messages(cfg.bootstrap_servers, [lab.topic], None, "earliest", stop), decoder)
        ]

    @property
    def n_duplicates(self) -> int:
        return sum(d.n_duplicates for d in self.decoders)
