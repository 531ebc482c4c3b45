"""Files: CSV, Parquet and JSON Lines (optionally gzipped), read in Arrow batches."""

from __future__ import annotations

import collections
import functools
import itertools
import json
import operator
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from workbench.columns import Columns, float_matrix
from workbench.config import SourceConfig
from workbench.errors import ConfigError, SourceError
from workbench.events import DeadLetter, Event, TrueDrift, make_event, non_finite, non_finite_reason
from workbench.sources import careful
from workbench.sources.base import DeadLetterSink, has_non_finite

BATCH_ROWS = 16_384
#: rows made into events at a time: whoever reads only the first events (the schema) waits for no more
EVENT_ROWS = 1024
FORMATS = ("csv", "parquet", "jsonl")
# Integer targets with more distinct values than this are taken as a regression target.
MAX_CLASSES = 20


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".gzip")]
    ext = suffixes[-1].lstrip(".") if suffixes else ""
    fmt = {
        "csv": "csv",
        "tsv": "csv",
        "parquet": "parquet",
        "pq": "parquet",
        "jsonl": "jsonl",
        "ndjson": "jsonl",
        "json": "jsonl",
    }.get(ext)
    if fmt is None:
        raise ConfigError(
            "source.path",
            f"cannot tell the format of {path.name}; allowed extensions: .csv, .parquet, .jsonl (optionally .gz)",
        )
    return fmt


class FileSource:
    def __init__(self, config: SourceConfig):
        self.config = config

    @property
    def path(self) -> Path:
        return Path(self.config.path or "")

    def _batches(
        self, columns: list[str] | None = None, dead_letter: DeadLetterSink | None = None
    ) -> Iterator[tuple[pa.RecordBatch, int]]:
        """``(batch, line of its first row)`` (a row number for Parquet) for each Arrow batch of
        the file. Lines Arrow's streaming reader stops at are read on with careful.py: the bad
        ones go to ``dead_letter`` (dropped without one), the rest come as batches."""
        path, fmt = self.path, detect_format(self.path)
        if fmt == "parquet":
            line = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
                yield batch, line
                line += batch.num_rows
            return
        delimiter = "\t" if ".tsv" in path.name.lower() else ","
        line = first_line = {"csv": 2, "jsonl": 1}[fmt]
        schema = None
        try:
            stream = pa.input_stream(str(path), compression="detect")
            if fmt == "csv":
                reader = pcsv.open_csv(
                    stream,
                    read_options=pcsv.ReadOptions(block_size=1 << 22),
                    parse_options=pcsv.ParseOptions(delimiter=delimiter),
                    convert_options=pcsv.ConvertOptions(include_columns=columns),
                )
            else:
                reader = pjson.open_json(stream, read_options=pjson.ReadOptions(block_size=1 << 22))
            for batch in reader:
                batch = batch.select(columns) if columns else batch
                schema = schema or batch.schema
                yield batch, line
                line += batch.num_rows
        except (OSError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            yield from careful.read_on(
                path,
                "csv" if fmt == "csv" else "json",
                skip=line - first_line,
                first_line=first_line,
                schema=schema,
                columns=columns,
                target=self.config.target,
                delimiter=delimiter,
                dead_letter=dead_letter or (lambda _dead: None),
            )

    @functools.cached_property
    def schema(self) -> pa.Schema:
        if not self.path.exists():
            raise SourceError(f"source.path: {self.path} does not exist")
        first = next(self._batches(), None)
        if first is None:
            raise SourceError(f"source.path: {self.path} holds no rows")
        return first[0].schema

    @functools.cached_property
    def feature_names(self) -> list[str]:
        """The feature columns; the same str objects for every event's dict (a pickled model
        holding them is then the same bytes however its events were batched)."""
        cfg, names = self.config, self.schema.names
        if cfg.features:
            return list(cfg.features)
        return [n for n in names if n not in (cfg.target, cfg.time)]

    def validate(self) -> None:
        detect_format(self.path)
        names = self.schema.names
        for key, column in [("source.target", self.config.target), ("source.time", self.config.time)]:
            if column is not None and column not in names:
                raise ConfigError(key, f"no column {column!r} in {self.path.name}; columns: {', '.join(names)}")
        for feature in self.config.features or []:
            if feature not in names:
                raise ConfigError(
                    "source.features", f"no column {feature!r} in {self.path.name}; columns: {', '.join(names)}"
                )

    @functools.cached_property
    def _target_column(self) -> pa.ChunkedArray:
        batches = [batch for batch, _ in self._batches([self.config.target])]
        return pa.Table.from_batches(batches).column(0)

    @property
    def task(self) -> str:
        if self.config.task:
            return self.config.task
        col = self._target_column
        kind = col.type
        if pa.types.is_boolean(kind):
            return "binary"
        if pa.types.is_floating(kind):
            return "regression"
        n_classes = len(pc.unique(col.drop_null()))
        if pa.types.is_integer(kind) and n_classes > MAX_CLASSES:
            return "regression"
        return "binary" if n_classes <= 2 else "multiclass"

    @property
    def length(self) -> int | None:
        if detect_format(self.path) == "parquet":
            rows = pq.ParquetFile(self.path).metadata.num_rows
        else:
            rows = len(self._target_column)
        return min(rows, self.config.n) if self.config.n else rows

    def true_drifts(self) -> list[TrueDrift]:
        return []

    def _times(self, column: pa.Array) -> list:
        kind = column.type
        if pa.types.is_integer(kind):
            column = column.cast(pa.timestamp(self.config.time_unit, tz="UTC"))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            column = pc.cast(column, pa.timestamp("us"))
        return column.to_pylist()

    def _read(self, dead_letter: DeadLetterSink | None) -> Iterator[tuple[pa.RecordBatch, int, bool]]:
        """``(batch, first line, clean)`` for each Arrow batch of the rows to replay (``source.n``
        of them): the feature, target and time columns. Clean: no empty target, no NaN or
        Infinity, so that every row is an event."""
        cfg, names = self.config, self.feature_names
        remaining = cfg.n if cfg.n is not None else float("inf")
        wanted = list(dict.fromkeys(names + [cfg.target] + ([cfg.time] if cfg.time else [])))
        for batch, line in self._batches(wanted, dead_letter):
            if remaining <= 0:
                return
            if batch.num_rows > remaining:
                batch = batch.slice(0, int(remaining))
            remaining -= batch.num_rows
            non_finite_rows = any(has_non_finite(batch.column(n)) for n in [*names, cfg.target])
            yield batch, line, not batch.column(cfg.target).null_count and not non_finite_rows

    def events(self, dead_letter: DeadLetterSink) -> Iterator[Event]:
        for batch, line, clean in self._read(dead_letter):
            for start in range(0, batch.num_rows, EVENT_ROWS):
                yield from self._events(batch.slice(start, EVENT_ROWS), line + start, clean, dead_letter)

    def _events(self, batch: pa.RecordBatch, line: int, clean: bool, dead_letter: DeadLetterSink) -> Iterator[Event]:
        cfg, names = self.config, self.feature_names
        lines = range(line, line + batch.num_rows)
        xs = _dicts(batch, names)
        if any(batch.column(n).null_count for n in names):
            # River's convention for a missing value is an absent key.
            xs = ({k: v for k, v in x.items() if v is not None} for x in xs)
        ys = batch.column(cfg.target).to_pylist()
        times = self._times(batch.column(cfg.time)) if cfg.time else itertools.repeat(None)
        rows = zip(xs, ys, times, itertools.repeat(None), lines, itertools.repeat(None))
        if clean:
            yield from map(make_event, rows)
            return
        for row in rows:
            reason = _bad_row(row, cfg.target)
            if reason is not None:
                dead_letter(DeadLetter(f"{self.path}:{row[4]}", reason, _raw({**row[0], cfg.target: row[1]})))
            else:
                yield make_event(row)

    def mini_batches(self, dead_letter: DeadLetterSink, size: int) -> Iterator[Columns]:
        """The events of ``events`` cut as ``batching.mini_batches`` cuts them (``size`` at a time,
        the same batches), as ``Columns``: straight from Arrow for clean rows, their events made
        only if asked for; from the events of an Arrow batch with a refused row."""
        filling: list[Columns] = []  # the parts of the next batch
        wanted = size  # rows it still needs
        names = pd.Index(self.feature_names)  # one for every frame: pandas builds it in ~14 µs
        for batch, line, clean in self._read(dead_letter):
            if clean:
                part = self._columns(batch, line, names)
            else:
                part = Columns.of(list(self._events(batch, line, False, dead_letter)))
            start = 0  # each batch a slice of the part (a slice of its remainder would copy it)
            while len(part) - start >= wanted:
                filling.append(part[start : start + wanted])
                yield Columns.concat(filling)
                start, filling, wanted = start + wanted, [], size
            if start < len(part):
                filling.append(part[start:])
                wanted -= len(part) - start
        if filling:
            yield Columns.concat(filling)

    def _columns(self, batch: pa.RecordBatch, line: int, names: pd.Index) -> Columns:
        """A clean Arrow batch as columns: its float features as one matrix (numpy from Arrow,
        the values the events' dicts hold), its target as numpy when pandas gives a list of
        its values the same dtype."""
        cfg = self.config
        features = [batch.column(name) for name in names]
        matrix = None
        if len(names) and all(pa.types.is_floating(c.type) and not c.null_count for c in features):
            matrix = float_matrix([c.to_numpy() for c in features])
        target = batch.column(cfg.target)
        plain = target.type in (pa.bool_(), pa.int64(), pa.float64())
        return Columns(
            _values(target),
            self._times(batch.column(cfg.time)) if cfg.time else [None] * batch.num_rows,
            lambda start, stop: list(self._events(batch.slice(start, stop - start), line + start, True, None)),
            names,
            matrix,
            target.to_numpy(zero_copy_only=False) if plain else None,
        )


def _bad_row(row: tuple, target: str) -> str | None:
    """Why a row (x, y, ...) cannot be learned from: an empty target, NaN or Infinity."""
    x, y = row[0], row[1]
    if y is None:
        return f"target column {target!r} is empty"
    if (name := non_finite(x)) is not None:
        return non_finite_reason(name, x[name])
    if non_finite({target: y}) is not None:
        return f"target column {target!r} is {y!r}: numbers must be finite (NaN and Infinity are refused)"
    return None


def _values(column: pa.Array) -> list:
    """The column as Python values: through numpy for plain numbers and booleans without nulls
    (the same ints, floats and bools, at half the cost of Arrow's to_pylist), else to_pylist."""
    kind = column.type
    plain = pa.types.is_integer(kind) or pa.types.is_boolean(kind) or kind in (pa.float32(), pa.float64())
    if plain and not column.null_count:
        return column.to_numpy(zero_copy_only=False).tolist()
    return column.to_pylist()


def _dicts(batch: pa.RecordBatch, names: list[str]) -> list[dict]:
    """One feature dict per row, filled column by column in C: a copy of a dict already holding
    the names, then one setitem per value (no row tuples, no resizing: ~40% cheaper than
    ``dict(zip(names, row))``, the same dicts). Python-level work per row would cost more than
    the logging."""
    rows = list(map(dict.copy, itertools.repeat(dict.fromkeys(names), batch.num_rows)))
    for name in names:
        collections.deque(map(operator.setitem, rows, itertools.repeat(name), _values(batch.column(name))), maxlen=0)
    return rows


def _raw(x: dict) -> bytes:
    return json.dumps(x, default=str).encode()
