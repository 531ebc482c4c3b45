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
import math
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
from workbench.events import DeadLetter, Event, identity, make_event, non_finite, non_finite_reason
from workbench.sources.base import DeadLetterSink, has_non_finite
from workbench.sources.offsets import SeenOffsets

#: blocks smaller than this are decoded one message at a time
SLOW_BLOCK = 32
_READ = pjson.ReadOptions(use_threads=False, block_size=1 << 26)
_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: the last millisecond a datetime can hold (year 9999): later message timestamps are bad records
MAX_TS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - EPOCH) // timedelta(milliseconds=1)
#: deepest nesting of objects in a payload; deeper is a bad record, on both paths
MAX_NESTING = 64
_ZEROS = itertools.repeat(0)
_MISSING = object()


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


def flatten(payload: dict) -> dict:
    """Nested objects become ``a.b`` names; nulls are dropped (River's missing value).

    Raises ValueError when two fields end up with one name (``{"a.b": 1, "a": {"b": 2}}``) or
    objects nest deeper than MAX_NESTING. A loop, not recursion: no RecursionError, ever.
    """
    out: dict = {}
    stack = [("", iter(payload.items()))]
    while stack:
        prefix, items = stack[-1]
        for name, value in items:
            if isinstance(value, dict):
                if len(stack) >= MAX_NESTING:
                    raise ValueError(f"objects are nested deeper than {MAX_NESTING} levels")
                stack.append((f"{prefix}{name}.", iter(value.items())))
                break
            if value is not None:
                full = f"{prefix}{name}"
                if full in out:
                    raise ValueError(f"two fields are named {full!r} once nested objects are flattened to a.b names")
                out[full] = value
        else:
            stack.pop()
    return out


def _parse(text: str) -> Any:
    """The JSON value of a payload; raises ValueError saying what is wrong.

    JSON has no NaN or Infinity, but Python's json and pyarrow write and read them: such a
    payload is parsed here too, so that the record is refused naming the field (the same rule
    as the block path, which pyarrow lets them through).
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise ValueError(f"is nested too deep ({exc})") from None
        if "NaN" in text or "Infinity" in text:
            try:
                return json.loads(text)
            except (ValueError, RecursionError):
                pass
        raise ValueError(f"is not valid JSON: {exc}") from None


def _scalar(value: Any) -> str | None:
    """Why ``value`` cannot be an id or a target, or None."""
    if _kind(value) is None:
        return f"a JSON {type(value).__name__}; it must be a number, a string or a boolean"
    if value.__class__ is float and not math.isfinite(value):
        return f"{value!r}; numbers must be finite"
    return None


class Decoder:
    """Turns Kafka messages into events for one stream's config (``target``, ``id``, ``time``).

    It remembers each feature's type (a feature that changes type is a bad record), the offsets
    seen per partition (a message is a duplicate only if its exact topic/partition/offset was
    read before: see offsets.py) and, when ``id`` is set, the ids seen with their targets (the
    same id again is a duplicate; with another target, a conflict: a dead letter).
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
        self.offsets: dict[tuple[str, int], SeenOffsets] = {}
        self.ids: dict[Any, Any] = {}  # identity(id) -> the target it came with
        self.n_duplicates = 0
        self.reserved = {f for f in (self.target, self.id, None if self.time == "kafka" else self.time) if f}

    def dead(self, origin: str, reason: str, raw: bytes | None) -> None:
        if self.strict:
            raise SourceError(f"{origin}: {reason} (source.strict is true: the replay stops at the first bad record)")
        self._dead_letter(DeadLetter(origin, reason, raw))

    def _seen(self, topic: str, partition: int) -> SeenOffsets:
        seen = self.offsets.get((topic, partition))
        if seen is None:
            seen = self.offsets[(topic, partition)] = SeenOffsets()
        return seen

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
        if offset is not None and not self._seen(topic, partition).add(offset, offset):
            self.n_duplicates += 1
            return None
        if value is None:
            return self.dead(origin, f"message {where} has no value (a null payload, e.g. a tombstone)", raw)
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
            payload = _parse(text)
            if not isinstance(payload, dict):
                raise ValueError(f"is a JSON {type(payload).__name__}, not an object")
            x = flatten(payload)
        except ValueError as exc:
            return self.dead(origin, f"payload of {where} {exc}", raw)
        key = None
        if self.id:
            key = x.pop(self.id, None)
            if key is None:
                return self.dead(origin, f"payload of {where} has no id field {self.id!r}", raw)
            if (why := _scalar(key)) is not None:
                return self.dead(origin, f"payload of {where}: id field {self.id!r} is {why}", raw)
        y = None
        if self.target:
            y = x.pop(self.target, None)
            if y is None:
                return self.dead(origin, f"payload of {where} has no target field {self.target!r}", raw)
            if (why := _scalar(y)) is not None:
                return self.dead(origin, f"payload of {where}: target field {self.target!r} is {why}", raw)
        if self.time == "kafka":
            if ts is None or ts < 0:
                return self.dead(origin, f"message {where} has no timestamp (source.time is 'kafka')", raw)
            if ts > MAX_TS:
                return self.dead(
                    origin,
                    f"message {where} has timestamp {ts} ms, after the year 9999 (the latest "
                    "time a timestamp can hold)",
                    raw,
                )
            time = EPOCH + timedelta(milliseconds=ts)
        else:
            stamp = x.pop(self.time, None)
            time = self._time(stamp)
            if time is None:
                return self.dead(
                    origin,
                    f"payload of {where}: time field {self.time!r} is {stamp!r}, not an ISO "
                    f"timestamp or a number of {self.unit} since 1970 (source.time_unit) "
                    "between the years 1 and 9999",
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
                    f"payload of {where}: feature {name!r} is a {kind} ({v!r}); earlier records have it as a {known}",
                    raw,
                )
        if (name := non_finite(x)) is not None:
            return self.dead(origin, f"payload of {where}: {non_finite_reason(name, x[name])}", raw)
        if self.id:
            seen = self.ids.get(identity(key), _MISSING)
            if seen is _MISSING:
                self.ids[identity(key)] = y
            elif identity(seen) == identity(y):
                self.n_duplicates += 1
                return None
            else:
                return self.dead(
                    origin,
                    f"payload of {where}: id {key!r} came before with {self.target!r} = "
                    f"{seen!r}, here it is {y!r} (conflicting labels: the first one is kept)",
                    raw,
                )
        return Event(x, y, time, key, (topic, partition, offset))

    def _time(self, stamp: Any) -> datetime | None:
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
            try:  # integer arithmetic where possible: a float division would shift some µs
                return EPOCH + timedelta(microseconds=stamp * self.us_per_unit)
            except (OverflowError, ValueError):  # beyond the year 9999, NaN, Infinity
                return None
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
        depth = 1
        while any(pa.types.is_struct(f.type) for f in table.schema):
            table, depth = table.flatten(), depth + 1
        names = table.column_names
        if depth > MAX_NESTING or len(set(names)) != len(names):  # the slow path says why
            raise _Fallback
        columns = {name: table.column(name) for name in names}
        kinds = {}
        for name, col in columns.items():
            if has_non_finite(col):
                raise _Fallback
            if name in self.reserved:
                continue
            kind = _arrow_kind(col.type)
            if kind is None or (kind != "null" and self.kinds.get(name, kind) != kind):
                raise _Fallback
            kinds[name] = kind
        key_col = self._required(columns, self.id)
        y_col = self._required(columns, self.target)
        if self.time == "kafka":
            if ts is None or ts.null_count or pc.min(ts).as_py() < 0 or pc.max(ts).as_py() > MAX_TS:
                raise _Fallback
            # in C, ~15x faster than pyarrow's own tz-aware datetimes
            times = list(map(EPOCH.__add__, map(timedelta, _ZEROS, _ZEROS, pc.multiply(ts, 1000).to_pylist())))
        else:
            times = self._times(self._required(columns, self.time))
        keys = key_col.to_pylist() if key_col is not None else None
        ys = y_col.to_pylist() if y_col is not None else None
        keep = self._dedup(topics, partitions, offsets, keys, ys)
        names = [name for name, kind in kinds.items() if kind != "null"]
        # Table.to_pylist builds the dicts in C++, ~2x faster than zipping columns in Python.
        xs = table.select(names).to_pylist() if names else [{} for _ in range(n)]
        if any(columns[name].null_count for name in names):
            xs = [{k: v for k, v in x.items() if v is not None} for x in xs]
        for name in names:
            self.kinds.setdefault(name, kinds[name])
        rows = zip(
            xs,
            ys if ys is not None else itertools.repeat(None),
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
        if pa.types.is_boolean(col.type):
            raise _Fallback
        if pa.types.is_timestamp(col.type) or pa.types.is_string(col.type):
            times = [self._time(v if isinstance(v, str) else v.isoformat()) for v in col.to_pylist()]
        else:
            times = [self._time(v) for v in col.to_pylist()]
        if None in times:  # out of range, or a string that is no timestamp: the slow path says
            raise _Fallback
        return times

    def _dedup(
        self, topics: list, partitions: list, offsets: list, keys: list | None, ys: list | None
    ) -> list[bool] | None:
        """Which messages to keep (None: all), updating what was seen. An id that comes again
        with another target is a dead letter, which needs the slow path: _Fallback, before
        anything is recorded."""
        if self._no_duplicates(topics, partitions, offsets, keys, ys):
            return None
        ys = ys if ys is not None else [None] * len(offsets)
        if keys is not None and self._conflicts(keys, ys):
            raise _Fallback
        keep, dropped, ids, seen = [], 0, self.ids, self._seen
        for topic, partition, offset, key, y in zip(
            topics, partitions, offsets, keys or itertools.repeat(None), ys, strict=False
        ):
            duplicate = offset is not None and not seen(topic, partition).add(offset, offset)
            if not duplicate and keys is not None:
                duplicate = identity(key) in ids
                ids.setdefault(identity(key), y)
            keep.append(not duplicate)
            dropped += duplicate
        self.n_duplicates += dropped
        return keep if dropped else None

    def _conflicts(self, keys: list, ys: list) -> bool:
        """Does any id come with another target than it came with before (here or earlier)?"""
        first: dict = {}
        for key, y in zip(keys, ys, strict=True):
            k, target = identity(key), identity(y)
            seen = self.ids.get(k, _MISSING)
            if (seen is not _MISSING and identity(seen) != target) or first.setdefault(k, target) != target:
                return True
        return False

    def _no_duplicates(self, topics: list, partitions: list, offsets: list, keys: list | None, ys: list | None) -> bool:
        """The common case, checked with numpy and set operations: one topic, each partition's
        offsets increasing and none of them seen, ids all new. Records what was seen if so."""
        typed = None
        if keys is not None:
            typed = keys if keys and keys[0].__class__ is str else list(map(identity, keys))
            new = set(typed)
            if len(new) != len(keys) or not self.ids.keys().isdisjoint(new):
                return False
        topic = topics[0] if topics else None
        if topics and (topics.count(topic) != len(topics) or None in offsets):
            return False
        parts, offs = np.asarray(partitions), np.asarray(offsets)
        runs = []
        for p in np.unique(parts).tolist():
            mine = offs[parts == p]
            steps = np.diff(mine)
            if not (steps > 0).all():
                return False
            # runs of consecutive offsets (one, unless the topic is compacted)
            cuts = np.flatnonzero(steps != 1)
            firsts = np.concatenate(([mine[0]], mine[cuts + 1])).tolist()
            lasts = np.concatenate((mine[cuts], [mine[-1]])).tolist()
            seen = self._seen(topic, p)
            if not all(map(seen.free, firsts, lasts)):
                return False
            runs.append((seen, firsts, lasts))
        for seen, firsts, lasts in runs:
            for first, last in zip(firsts, lasts, strict=True):
                seen.add(first, last)
        if typed is not None:
            self.ids.update(zip(typed, ys or itertools.repeat(None), strict=False))
        return True


def joined_payloads(payloads: pa.Array) -> pa.Buffer:
    """The payload strings, one a line, as one buffer (in C, no Python string per message)."""
    if payloads.null_count:
        raise _Fallback
    try:  # pyarrow's JSON reader lets raw non-UTF-8 bytes through: they are bad records
        payloads.validate(full=True)
    except pa.ArrowInvalid:
        raise _Fallback from None
    return pc.binary_join(pa.ListArray.from_arrays([0, len(payloads)], payloads), "\n")[0].as_buffer()


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
