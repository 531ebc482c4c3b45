"""Kafka messages → events: validate, flatten, de-duplicate. Shared by dumps and live topics.

Two paths give the same events. The fast one decodes a block of messages at once with
pyarrow (its JSON reader runs in C, ~3× the rate of parsing each message in Python); the
slow one decodes one message at a time and says exactly what is wrong with a bad one. A block
that the fast path cannot take whole (a broken record, a type that changed) is split in
halves until the bad records are isolated, so one bad message costs a few slow decodes.
"""

from __future__ import annotations

import gc
import itertools
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from workbench.config import SourceConfig
from workbench.errors import SourceError
from workbench.events import DeadLetter, Event, make_event
from workbench.sources.base import DeadLetterSink

#: blocks smaller than this are decoded one message at a time
SLOW_BLOCK = 32
_READ = pjson.ReadOptions(use_threads=False, block_size=1 << 26)
_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ZEROS = itertools.repeat(0)


class _Fallback(Exception):
    """The fast path cannot decode this block whole."""


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _arrow_kind(kind: pa.DataType) -> str | None:
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return "number"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_null(kind):
        return "null"
    return None  # lists, and strings pyarrow took for timestamps: the slow path decides


def flatten(payload: dict, prefix: str = "") -> dict:
    """Nested objects become ``a.b`` names; nulls are dropped (River's missing value)."""
    out = {}
    for name, value in payload.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{name}."))
        elif value is not None:
            out[f"{prefix}{name}"] = value
    return out


class Decoder:
    """Turns Kafka messages into events for one stream's config (``target``, ``id``, ``time``).

    It remembers each feature's type (a feature that changes type is a bad record), the highest
    offset seen per partition (a dump reads each partition in offset order, so an offset at or
    below it is a duplicate) and, when ``id`` is set, the ids seen.
    """

    def __init__(
        self,
        config: SourceConfig,
        dead_letter: DeadLetterSink,
        target: str | None = None,
        id: str | None = None,
        time: str | None = None,
    ):
        self.target = target if target is not None else config.target
        self.id = id if id is not None else config.id
        self.time = time if time is not None else config.time
        self.us_per_unit = _US_PER[config.time_unit]
        self.unit = _UNIT_NAMES[config.time_unit]
        self.strict = config.strict
        self._dead_letter = dead_letter
        self.kinds: dict[str, str] = {}
        self.high: dict[tuple[str, int], int] = {}
        self.ids: set = set()
        self.n_duplicates = 0
        self.reserved = {
            f for f in (self.target, self.id, None if self.time == "kafka" else self.time) if f
        }

    def dead(self, origin: str, reason: str, raw: bytes | None) -> None:
        if self.strict:
            raise SourceError(
                f"{origin}: {reason} "
                "(source.strict is true: the replay stops at the first bad record)"
            )
        self._dead_letter(DeadLetter(origin, reason, raw))

    # -- one message at a time ------------------------------------------------------------------
    def message(
        self,
        topic: str,
        partition: int,
        offset: int | None,
        ts: int | None,
        value: bytes | None,
        origin: str,
        raw: bytes,
    ) -> Event | None:
        """The event a message holds, or None (a duplicate, or a dead letter handed on)."""
        where = f"{topic}/{partition}/{offset}"
        if offset is not None:
            if offset <= self.high.get((topic, partition), -1):
                self.n_duplicates += 1
                return None
            self.high[(topic, partition)] = offset
        if value is None:
            return self.dead(
                origin, f"message {where} has no value (a null payload, e.g. a tombstone)", raw
            )
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self.dead(
                origin,
                f"payload of {where} is not valid UTF-8 (byte 0x{value[exc.start]:02x} at "
                f"position {exc.start}); JSON text must be UTF-8",
                raw,
            )
        try:
            payload = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return self.dead(origin, f"payload of {where} is not valid JSON: {exc}", raw)
        if not isinstance(payload, dict):
            return self.dead(
                origin, f"payload of {where} is a JSON {type(payload).__name__}, not an object", raw
            )
        x = flatten(payload)
        key = None
        if self.id:
            key = x.pop(self.id, None)
            if key is None:
                return self.dead(origin, f"payload of {where} has no id field {self.id!r}", raw)
        y = None
        if self.target:
            y = x.pop(self.target, None)
            if y is None:
                return self.dead(
                    origin, f"payload of {where} has no target field {self.target!r}", raw
                )
        if self.time == "kafka":
            if ts is None or ts < 0:
                return self.dead(
                    origin, f"message {where} has no timestamp (source.time is 'kafka')", raw
                )
            time = EPOCH + timedelta(milliseconds=ts)
        else:
            stamp = x.pop(self.time, None)
            time = self._time(stamp)
            if time is None:
                return self.dead(
                    origin,
                    f"payload of {where}: time field {self.time!r} is {stamp!r}, not an ISO "
                    f"timestamp or a number of {self.unit} since 1970 (source.time_unit)",
                    raw,
                )
        for name, v in x.items():
            kind = _kind(v)
            if kind is None:
                return self.dead(
                    origin,
                    f"payload of {where}: feature {name!r} is a JSON {type(v).__name__}; "
                    "features must be numbers, strings or booleans",
                    raw,
                )
            known = self.kinds.setdefault(name, kind)
            if known != kind:
                return self.dead(
                    origin,
                    f"payload of {where}: feature {name!r} is a {kind} ({v!r}); "
                    f"earlier records have it as a {known}",
                    raw,
                )
        if self.id:
            if key in self.ids:
                self.n_duplicates += 1
                return None
            self.ids.add(key)
        return Event(x, y, time, key, (topic, partition, offset))

    def _time(self, stamp: Any) -> datetime | None:
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
            # integer arithmetic where possible: a float division would shift some microseconds
            return EPOCH + timedelta(microseconds=stamp * self.us_per_unit)
        if isinstance(stamp, str):
            try:
                parsed = datetime.fromisoformat(stamp)
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        return None

    # -- a block at a time ----------------------------------------------------------------------
    def block(
        self,
        topics: list,
        partitions: list,
        offsets: list,
        ts: pa.Array | None,
        payloads: pa.Buffer | bytes,
        n: int,
    ) -> list[Event]:
        """Decode ``n`` messages whose payloads are ``payloads`` (JSON, one a line) whole, or raise
        _Fallback, leaving no trace."""
        # A block makes ~10 containers a message, none of them in a cycle: without this, the
        # cyclic GC walks them over and over (measured: 4 us a message, more than the parsing).
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._block(topics, partitions, offsets, ts, payloads, n)
        finally:
            if enabled:
                gc.enable()

    def _block(
        self,
        topics: list,
        partitions: list,
        offsets: list,
        ts: pa.Array | None,
        payloads: pa.Buffer | bytes,
        n: int,
    ) -> list[Event]:
        try:
            table = pjson.read_json(pa.BufferReader(payloads), read_options=_READ)
        except pa.ArrowInvalid:
            raise _Fallback from None
        if table.num_rows != n:
            raise _Fallback
        while any(pa.types.is_struct(f.type) for f in table.schema):
            table = table.flatten()
        columns = {name: table.column(name) for name in table.column_names}
        kinds = {}
        for name, col in columns.items():
            if name in self.reserved:
                continue
            kind = _arrow_kind(col.type)
            if kind is None or (kind != "null" and self.kinds.get(name, kind) != kind):
                raise _Fallback
            kinds[name] = kind
        key_col = self._required(columns, self.id)
        y_col = self._required(columns, self.target)
        if self.time == "kafka":
            if ts is None or ts.null_count or pc.min(ts).as_py() < 0:
                raise _Fallback
            # in C, ~15x faster than pyarrow's own tz-aware datetimes
            times = list(
                map(
                    EPOCH.__add__, map(timedelta, _ZEROS, _ZEROS, pc.multiply(ts, 1000).to_pylist())
                )
            )
        else:
            times = self._times(self._required(columns, self.time))
        keys = key_col.to_pylist() if key_col is not None else None
        keep = self._dedup(topics, partitions, offsets, keys)
        names = [name for name, kind in kinds.items() if kind != "null"]
        # Table.to_pylist builds the dicts in C++, ~2x faster than zipping columns in Python.
        xs = table.select(names).to_pylist() if names else [{} for _ in range(n)]
        if any(columns[name].null_count for name in names):
            xs = [{k: v for k, v in x.items() if v is not None} for x in xs]
        for name in names:
            self.kinds.setdefault(name, kinds[name])
        ys = y_col.to_pylist() if y_col is not None else itertools.repeat(None)
        rows = zip(
            xs,
            ys,
            times,
            keys if keys is not None else itertools.repeat(None),
            zip(topics, partitions, offsets, strict=True),
            itertools.repeat(None),
            strict=False,
        )
        if keep is None:
            return list(map(make_event, rows))
        return list(map(make_event, itertools.compress(rows, keep)))

    @staticmethod
    def _required(columns: dict, name: str | None) -> pa.ChunkedArray | None:
        if name is None:
            return None
        col = columns.get(name)
        if col is None or col.null_count or _arrow_kind(col.type) in (None, "null"):
            raise _Fallback
        return col

    def _times(self, col: pa.ChunkedArray) -> list:
        if pa.types.is_timestamp(col.type) or pa.types.is_string(col.type):
            return [self._time(v if isinstance(v, str) else v.isoformat()) for v in col.to_pylist()]
        if pa.types.is_boolean(col.type):
            raise _Fallback
        return [self._time(v) for v in col.to_pylist()]

    def _dedup(
        self, topics: list, partitions: list, offsets: list, keys: list | None
    ) -> list[bool] | None:
        """Which messages to keep (None: all), updating what was seen."""
        if self._no_duplicates(topics, partitions, offsets, keys):
            return None
        high, keep, dropped = self.high, [], 0
        ids = self.ids if keys is not None else None
        for topic, partition, offset, key in zip(
            topics, partitions, offsets, keys or itertools.repeat(None), strict=False
        ):
            if offset is not None:
                where = (topic, partition)
                if offset <= high.get(where, -1):
                    keep.append(False)
                    dropped += 1
                    continue
                high[where] = offset
            if ids is not None:
                if key in ids:
                    keep.append(False)
                    dropped += 1
                    continue
                ids.add(key)
            keep.append(True)
        self.n_duplicates += dropped
        return keep if dropped else None

    def _no_duplicates(
        self, topics: list, partitions: list, offsets: list, keys: list | None
    ) -> bool:
        """The common case, checked with numpy and set operations: one topic, each partition's
        offsets increasing past those seen, ids all new. Records what was seen if so."""
        ids = None
        if keys is not None:
            ids = set(keys)
            if len(ids) != len(keys) or not self.ids.isdisjoint(ids):
                return False
        topic = topics[0] if topics else None
        if topics and (topics.count(topic) != len(topics) or None in offsets):
            return False
        parts, offs = np.asarray(partitions), np.asarray(offsets)
        highs = {}
        for p in np.unique(parts).tolist():
            mine = offs[parts == p]
            if mine[0] <= self.high.get((topic, p), -1) or (
                len(mine) > 1 and not (np.diff(mine) > 0).all()
            ):
                return False
            highs[(topic, p)] = int(mine[-1])
        self.high.update(highs)
        if ids is not None:
            self.ids |= ids
        return True


def joined_payloads(payloads: pa.Array) -> pa.Buffer:
    """The payload strings, one a line, as one buffer (in C, no Python string per message)."""
    if payloads.null_count:
        raise _Fallback
    try:  # pyarrow's JSON reader lets raw non-UTF-8 bytes through: they are bad records
        payloads.validate(full=True)
    except pa.ArrowInvalid:
        raise _Fallback from None
    return pc.binary_join(pa.ListArray.from_arrays([0, len(payloads)], payloads), "\n")[
        0
    ].as_buffer()


def bisect(
    decode_block: Callable[[int, int], list[Event]],
    decode_one: Callable[[int], Event | None],
    start: int,
    stop: int,
) -> Iterator[Event]:
    """Events of messages ``start:stop``: whole blocks where possible, halving around bad ones."""
    if stop - start > SLOW_BLOCK:
        try:
            yield from decode_block(start, stop)
            return
        except _Fallback:
            middle = (start + stop) // 2
            yield from bisect(decode_block, decode_one, start, middle)
            yield from bisect(decode_block, decode_one, middle, stop)
            return
    for i in range(start, stop):
        ev = decode_one(i)
        if ev is not None:
            yield ev


def raw_event(ev: Event) -> bytes:
    """An event's bytes for a dead letter when the message itself is gone (late events)."""
    return json.dumps({"x": ev.x, "y": ev.y, "time": ev.time, "key": ev.key}, default=str).encode()
