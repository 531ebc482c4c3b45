"""Dumps of Kafka topics: ``kcat -J``, kafka-console-consumer output, the Kafka Connect S3 sink
layout and plain JSON Lines; a path, a list or a glob; gzip read transparently.

A dump is handed on as one stream per file (per partition for the S3 layout): putting them in
event-time order is the replay stage's job (workbench/replay/ordering.py).
"""

from __future__ import annotations

import glob
import itertools
import json
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pjson

from workbench.config import SourceConfig
from workbench.errors import ConfigError, SourceError
from workbench.events import Event, TrueDrift
from workbench.sources.base import DeadLetterSink
from workbench.sources.kafka_records import (
    MAX_NESTING,
    Decoder,
    _Fallback,
    bisect,
    joined_payloads,
)

#: bytes of a dump read (and their messages decoded) together
BLOCK_BYTES = 4 << 20
#: lines longer than this, with more brackets than MAX_NESTING, are decoded one at a time: pyarrow
#: takes seconds to minutes over a deeply nested line (orjson refuses them at once)
LONG_LINE = 2_048
_GZIP = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_S3_NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<offset>\d+)\.json(\.gz)?$")
_CONSOLE_PREFIXES = ("CreateTime:", "LogAppendTime:", "NO_TIMESTAMP", "Partition:", "Offset:")
_ENVELOPE = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("ts", pa.int64()),
        ("payload", pa.string()),
    ]
)
_ENVELOPE_PARSE = pjson.ParseOptions(explicit_schema=_ENVELOPE, unexpected_field_behavior="ignore")
_READ = pjson.ReadOptions(use_threads=False, block_size=1 << 26)


def expand(paths: str | list[str], key: str) -> list[Path]:
    """A path, a glob or a list of them → existing files, sorted within each glob."""
    found: list[Path] = []
    for pattern in [paths] if isinstance(paths, str) else paths:
        matches = (
            sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        )
        files = [Path(m) for m in matches if Path(m).is_file()]
        if not files:
            raise SourceError(f"{key}: no file matches {pattern!r}")
        found.extend(files)
    return found


class Damaged(Exception):
    """The file's bytes end badly (a truncated or corrupt .gz, or garbage after it)."""

    def __init__(self, reason: str, rest: bytes = b""):
        super().__init__(reason)
        self.reason, self.rest, self.line = reason, rest, 0


def _chunks(path: Path) -> Iterator[bytes]:
    """The file's bytes a block at a time, gunzipped if it is gzipped (any number of members).

    Every byte that decompresses is yielded before Damaged is raised, so that the complete lines
    before the damage are read (Python's gzip module drops the block around it).
    """
    with open(path, "rb") as f:
        data = f.read(BLOCK_BYTES)
        if not data.startswith(_GZIP):
            while data:
                yield data
                data = f.read(BLOCK_BYTES)
            return
        inflate, member = zlib.decompressobj(31), True
        while data:
            if not member:  # between members: another one, zero padding, or garbage
                data = data.lstrip(b"\0")
                if not data:
                    data = f.read(BLOCK_BYTES)
                    continue
                if not data.startswith(_GZIP):
                    raise Damaged("the bytes after the end of the gzip stream are not gzip", data)
                inflate, member = zlib.decompressobj(31), True
            try:
                out = inflate.decompress(data, BLOCK_BYTES)
            except zlib.error as exc:
                raise Damaged(f"the gzip stream is corrupt ({exc})") from None
            if out:
                yield out
            if inflate.eof:
                data, member = inflate.unused_data, False
            elif inflate.unconsumed_tail:
                data = inflate.unconsumed_tail
            else:
                data = f.read(BLOCK_BYTES)
        if member and not inflate.eof:
            raise Damaged("the gzip stream is truncated")


def first_line(path: Path) -> bytes:
    """The first non-blank line (without a byte order mark), or b"" for an empty file."""
    head = b""
    try:
        for chunk in _chunks(path):
            head += chunk
            complete = head.removeprefix(_BOM).split(b"\n")[:-1]
            if (line := next((x.strip() for x in complete if x.strip()), None)) is not None:
                return line
    except Damaged:
        pass
    return head.removeprefix(_BOM).strip()


def detect(path: Path) -> str:
    """kcat | console | s3 | jsonl, from the file name and first line; 'empty' for a file that
    holds no line at all (it holds no record either: nothing to read)."""
    if _S3_NAME.match(path.name) and path.parent.name.startswith("partition="):
        return "s3"
    line = first_line(path)
    if not line:
        return "empty"
    if line.startswith(tuple(p.encode() for p in _CONSOLE_PREFIXES)):
        return "console"
    if line.startswith(b"{"):
        try:
            head = json.loads(line.decode("utf-8", "surrogateescape"))
        except (ValueError, RecursionError):
            return "jsonl"
        if isinstance(head, dict) and {"topic", "partition", "offset", "payload"} <= set(head):
            return "kcat"
        return "jsonl"
    raise SourceError(
        f"{path}:1: cannot tell the dump format (not kcat -J, kafka-console-consumer, S3 sink "
        "or JSON Lines); set source.format"
    )


def numbered_lines(path: Path) -> Iterator[tuple[Sequence[int], list[bytes]]]:
    """Blocks of non-empty lines with their 1-based line numbers, read a few MB at a time.

    On damage, the complete lines before it are yielded, then Damaged is raised with the line
    number where it starts and the bytes of the unfinished line in ``rest``.
    """
    first, rest = 1, []
    try:
        for i, chunk in enumerate(_chunks(path)):
            if not i:  # a byte order mark is not part of the first record
                chunk = chunk.removeprefix(_BOM)
            if b"\n" not in chunk:  # a long line: join its pieces once, not at every block
                rest.append(chunk)
                continue
            lines = b"".join([*rest, chunk]).split(b"\n")
            rest = [lines.pop()]
            yield _numbered(lines, first)
            first += len(lines)
    except Damaged as exc:
        exc.rest = b"".join([*rest, exc.rest])
        exc.line = first
        raise
    if tail := b"".join(rest):
        yield _numbered([tail], first)


def _numbered(lines: list[bytes], first: int) -> tuple[Sequence[int], list[bytes]]:
    if any(b"\r" in line for line in lines[:1]):
        lines = [line.rstrip(b"\r") for line in lines]
    numbers: Sequence[int] = range(first, first + len(lines))
    if not all(lines) or any(not line.strip() for line in lines if len(line) < 3):
        kept = [(n, line) for n, line in zip(numbers, lines, strict=True) if line.strip()]
        numbers, lines = [n for n, _ in kept], [line for _, line in kept]
    return numbers, lines


def _deep(line: bytes) -> bool:
    """May the line nest deeper than MAX_NESTING? (A cheap bound: short lines cannot nest much.)"""
    return len(line) > LONG_LINE and line.count(b"{") + line.count(b"[") > MAX_NESTING


def _around_deep(read, numbers: Sequence[int], lines: list[bytes]) -> Iterator[Event]:
    """``read`` over the lines, with lines that may nest deep read alone (the slow path refuses
    them at once; in a block, pyarrow would parse them for minutes)."""
    if not any(map(_deep, lines)):
        yield from read(numbers, lines)
        return
    start = 0
    for i, line in enumerate(lines):
        if _deep(line):
            if start < i:
                yield from read(numbers[start:i], lines[start:i])
            yield from read(numbers[i : i + 1], lines[i : i + 1])
            start = i + 1
    if start < len(lines):
        yield from read(numbers[start:], lines[start:])


class DumpReader:
    """One file of a dump, decoded into events by a shared Decoder."""

    def __init__(self, path: Path, fmt: str, decoder: Decoder):
        self.path, self.fmt, self.decoder = path, fmt, decoder

    def events(self) -> Iterator[Event]:
        if self.fmt == "empty":
            return
        read = {
            "kcat": self._kcat,
            "console": self._console,
            "s3": self._values,
            "jsonl": self._values,
        }[self.fmt]
        try:
            for numbers, lines in numbered_lines(self.path):
                if lines and max(map(len, lines)) > LONG_LINE:
                    yield from _around_deep(read, numbers, lines)
                elif lines:
                    yield from read(numbers, lines)
        except Damaged as exc:
            self.decoder.dead(
                self.origin(exc.line),
                f"{exc.reason}: the lines before this one were read, the rest of the file is "
                "lost (raw holds its unreadable bytes)",
                exc.rest,
            )

    def origin(self, line: int) -> str:
        return f"{self.path}:{line}"

    # -- kcat -J ------------------------------------------------------------------------------
    def _kcat(self, numbers: Sequence[int], lines: list[bytes]) -> Iterator[Event]:
        def block(start: int, stop: int) -> list[Event]:
            try:
                env = pjson.read_json(
                    pa.BufferReader(b"\n".join(lines[start:stop])),
                    parse_options=_ENVELOPE_PARSE,
                    read_options=_READ,
                )
            except pa.ArrowInvalid:  # invalid JSON or raw non-UTF-8 bytes somewhere in the block
                raise _Fallback from None
            if env.num_rows != stop - start or any(
                env.column(c).null_count for c in ("topic", "partition", "offset")
            ):
                raise _Fallback
            payloads = env.column("payload").combine_chunks()
            return self.decoder.block(
                env.column("topic").to_pylist(),
                env.column("partition").to_pylist(),
                env.column("offset").to_pylist(),
                env.column("ts").combine_chunks(),
                joined_payloads(payloads),
                stop - start,
            )

        return bisect(block, lambda i: self._kcat_one(numbers[i], lines[i]), 0, len(lines))

    def _kcat_one(self, number: int, line: bytes) -> Event | None:
        origin = self.origin(number)
        try:
            # Raw non-UTF-8 bytes in a key or payload survive as surrogates and are restored below.
            env = json.loads(line.decode("utf-8", "surrogateescape"))
        except ValueError as exc:
            return self.decoder.dead(origin, f"not a kcat -J line (invalid JSON: {exc})", line)
        except RecursionError:
            return self.decoder.dead(origin, "not a kcat -J line (nested too deep)", line)
        if (
            not isinstance(env, dict)
            or not all(isinstance(env.get(k), int) for k in ("partition", "offset"))
            or not isinstance(env.get("topic"), str)
        ):
            return self.decoder.dead(
                origin, "not a kcat -J line: needs topic, partition and offset", line
            )
        payload = env.get("payload")
        value = None if payload is None else str(payload).encode("utf-8", "surrogateescape")
        ts = env.get("ts") if isinstance(env.get("ts"), int) else None
        return self.decoder.message(
            env["topic"], env["partition"], env["offset"], ts, value, origin, line
        )

    # -- kafka-console-consumer ---------------------------------------------------------------
    def _console(self, numbers: Sequence[int], lines: list[bytes]) -> Iterator[Event]:
        for number, line in zip(numbers, lines, strict=True):
            ev = self._console_one(number, line)
            if ev is not None:
                yield ev

    def _console_one(self, number: int, line: bytes) -> Event | None:
        """``CreateTime:ts  Partition:p  Offset:o  headers  key  value``, any of them absent."""
        origin = self.origin(number)
        fields = line.split(b"\t")
        ts = partition = offset = None
        while fields and fields[0].startswith(
            (b"CreateTime:", b"LogAppendTime:", b"NO_TIMESTAMP", b"Partition:", b"Offset:")
        ):
            name, _, text = fields.pop(0).partition(b":")
            if name == b"NO_TIMESTAMP":
                continue
            if not text.strip().lstrip(b"-").isdigit():
                return self.decoder.dead(origin, f"{name.decode()}: is not a number", line)
            if name == b"Partition":
                partition = int(text)
            elif name == b"Offset":
                offset = int(text)
            else:
                ts = int(text)
        # What is left: [headers] [key] value; a value holding JSON has no raw tabs.
        value = fields[-1] if fields else b""
        value = None if value == b"null" else value
        return self.decoder.message(self.path.name, partition or 0, offset, ts, value, origin, line)

    # -- S3 sink and JSON Lines: one value a line ---------------------------------------------
    def _values(self, numbers: Sequence[int], lines: list[bytes]) -> Iterator[Event]:
        topic, partition, first = self.path.name, 0, -1  # JSON Lines: offset = line number - 1
        if self.fmt == "s3":
            match = _S3_NAME.match(self.path.name)
            topic, partition, first = (
                match["topic"],
                int(match["partition"]),
                int(match["offset"]) - 1,
            )
        offsets = [first + n for n in numbers]

        def block(start: int, stop: int) -> list[Event]:
            n = stop - start
            return self.decoder.block(
                [topic] * n,
                [partition] * n,
                offsets[start:stop],
                None,
                b"\n".join(lines[start:stop]),
                n,
            )

        def one(i: int) -> Event | None:
            return self.decoder.message(
                topic, partition, offsets[i], None, lines[i], self.origin(numbers[i]), lines[i]
            )

        return bisect(block, one, 0, len(lines))


def _start(path: Path, fmt: str) -> tuple[object, int]:
    """(the partition a file starts with, its first offset): the S3 sink's name, or the first
    line of a kcat dump; any other file is a partition of its own."""
    if fmt == "s3":
        match = _S3_NAME.match(path.name)
        return (match["topic"], int(match["partition"])), int(match["offset"])
    if fmt == "kcat":
        try:
            head = json.loads(first_line(path).decode("utf-8", "surrogateescape"))
            return (str(head["topic"]), int(head["partition"])), int(head["offset"])
        except (ValueError, RecursionError, TypeError, KeyError):
            pass
    return path, 0


#: labels looked at to tell the task (set source.task to skip it)
TASK_SAMPLE = 2_000
#: integer labels with more distinct values than this make a regression task
MAX_CLASSES = 20


def infer_task(ys: list) -> str:
    if not ys:
        raise ConfigError(
            "source.task", "no usable labelled record found to infer the task from: set source.task"
        )
    if all(isinstance(y, bool) for y in ys):
        return "binary"
    distinct = len(set(ys))
    if all(isinstance(y, float) for y in ys) or (
        all(isinstance(y, int) for y in ys) and distinct > MAX_CLASSES
    ):
        return "regression"
    return "binary" if distinct <= 2 else "multiclass"


class KafkaDumpSource:
    """``source: {kind: kafka_dump, path, format, target, id, time, labels}``."""

    def __init__(self, config: SourceConfig):
        self.config = config
        self.decoders: list[Decoder] = []

    def files(self, paths: str | list[str], fmt: str, key: str) -> list[tuple[Path, str]]:
        files = expand(paths, key)
        return [(f, detect(f) if fmt == "auto" else fmt) for f in files]

    def validate(self) -> None:
        cfg = self.config
        checks = [(cfg.path, cfg.format, "source.path", cfg.time, "source.time")]
        if cfg.labels is not None:
            if cfg.id is None:
                raise ConfigError(
                    "source.id",
                    "required with source.labels: the payload field that the labels' id matches",
                )
            checks.append(
                (
                    cfg.labels.path,
                    cfg.labels.format,
                    "source.labels.path",
                    cfg.labels.time,
                    "source.labels.time",
                )
            )
        for paths, fmt, key, time, time_key in checks:
            for path, found in self.files(paths, fmt, key):
                if found in ("s3", "jsonl") and time == "kafka":
                    raise ConfigError(
                        time_key,
                        f"{path} is a {found} dump, whose lines hold no message timestamp: "
                        "name the payload field holding the event time",
                    )

    @property
    def task(self) -> str:
        if self.config.task:
            return self.config.task
        quiet = Decoder(self.config, lambda _: None)
        if self.config.labels is None:
            streams = self._streams(quiet, self.config.path, self.config.format, "source.path")
        else:
            lab = self.config.labels
            quiet = Decoder(
                self.config, lambda _: None, target=lab.target, id=lab.id, time=lab.time
            )
            streams = self._streams(quiet, lab.path, lab.format, "source.labels.path")
        self.decoders.remove(quiet)
        return infer_task(
            [ev.y for ev in itertools.islice(itertools.chain.from_iterable(streams), TASK_SAMPLE)]
        )

    @property
    def length(self) -> int | None:
        return self.config.n

    def true_drifts(self) -> list[TrueDrift]:
        return []

    def events(self, dead_letter: DeadLetterSink) -> Iterator[Event]:
        """The dump's events in file order (see ``streams`` for event time)."""
        return itertools.chain.from_iterable(self.streams(dead_letter))

    def streams(self, dead_letter: DeadLetterSink) -> list[Iterator[Event]]:
        """One stream of events per file (per partition for the S3 layout), each in offset order."""
        cfg = self.config
        return self._streams(Decoder(cfg, dead_letter), cfg.path, cfg.format, "source.path")

    def label_streams(self, dead_letter: DeadLetterSink) -> list[Iterator[Event]]:
        """The labels dump: events whose ``y`` is the label and ``key`` the id it belongs to."""
        lab = self.config.labels
        decoder = Decoder(self.config, dead_letter, target=lab.target, id=lab.id, time=lab.time)
        return self._streams(decoder, lab.path, lab.format, "source.labels.path")

    def _streams(self, decoder: Decoder, paths, fmt: str, key: str) -> list[Iterator[Event]]:
        """One stream per partition whose files follow each other, in offset order (by the
        first offset of each, not by name: ``part-10`` comes after ``part-9``); other files
        are streams of their own. Few streams keep the merge's memory flat."""
        self.decoders.append(decoder)
        by_partition: dict[object, list[tuple[int, DumpReader]]] = {}
        for path, found in self.files(paths, fmt, key):
            group, first = _start(path, found)
            by_partition.setdefault(group, []).append((first, DumpReader(path, found, decoder)))
        return [
            itertools.chain.from_iterable(
                r.events() for _, r in sorted(readers, key=lambda item: item[0])
            )
            for readers in by_partition.values()
        ]

    @property
    def n_duplicates(self) -> int:
        return sum(d.n_duplicates for d in self.decoders)
