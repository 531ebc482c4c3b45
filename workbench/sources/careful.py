"""CSV and JSONL files that Arrow's streaming readers cannot read to the end.

Arrow reads a line file in blocks of a few MB with the types it inferred from the first block,
and stops at the first value that does not fit them: a word in a column of numbers, an object
where a number was, a line cut short, a compressed file that ends early. One such line must
not cost the run, nor the lines after it. So the file is read on from the first row Arrow could
not give, in chunks of lines, each parsed by Arrow with the file's types (the same values the
streaming reader gives); a chunk that fails is cut in halves until each bad line stands alone.
A bad line goes to the dead letters with its line number, Arrow's reason and its raw bytes; the
good lines around it keep their line numbers. Integer feature columns are read as floats from
there on: a 2.5 in a column that began with whole numbers is a number, not a bad line.

A JSONL file whose first block already disagrees with itself (Arrow cannot even open it) takes
each column's type from most of its first lines, not from whichever line came first.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from workbench.errors import SourceError
from workbench.events import DeadLetter
from workbench.sources import kafka_dump

#: lines parsed at a time once the streaming reader stopped
CHUNK_LINES = 16_384
#: a raw line kept in a dead letter is cut to this many bytes (a 1 GB line is no reason to copy it whole)
RAW_BYTES = 1 << 20


def read_on(
    path: Path,
    fmt: str,
    *,
    skip: int,
    first_line: int,
    schema: pa.Schema | None,
    columns: list[str] | None,
    target: str | None,
    delimiter: str,
    dead_letter: Callable[[DeadLetter], None],
) -> Iterator[tuple[pa.RecordBatch, int]]:
    """``(batch, line of its first row)`` for the rows after the first ``skip`` records of the
    file (the ones the streaming reader gave), whose first data line is ``first_line``."""
    lines = _lines(path, dead_letter)
    header = next(lines)[1] if fmt == "csv" else None
    names = _csv_names(header, delimiter) if header is not None else None
    # the non-empty lines (Arrow skips empty ones too) after those the streaming reader gave
    if sum(1 for _ in itertools.islice(lines, skip)) < skip:
        return
    chunks = iter(lambda: list(itertools.islice(lines, CHUNK_LINES)), [])
    if schema is None:
        first = next(chunks, None)
        if first is None:
            return
        sample = [line for _, line in first]
        schema = _majority_schema(path, sample) if fmt == "json" else _csv_schema(names, sample, delimiter)
        chunks = itertools.chain([first], chunks)
    types = _read_types(schema, columns, target)
    parse = _json_parser(types) if fmt == "json" else _csv_parser(names, types, delimiter, columns)
    for chunk in chunks:
        yield from _parsed(chunk, parse, path, dead_letter)


def _lines(path: Path, dead_letter: Callable[[DeadLetter], None]) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)`` for each non-empty line, read as Kafka dumps are (a byte order
    mark dropped, every complete line before a damaged .gz's end kept); the damage is a dead
    letter, and the file ends there."""
    try:
        for numbers, lines in kafka_dump.numbered_lines(path):
            yield from zip(numbers, lines, strict=True)
    except kafka_dump.Damaged as exc:
        dead_letter(
            DeadLetter(
                f"{path}:{exc.line}",
                f"the file cannot be read from line {exc.line} on: {exc.reason}; the lines before it are replayed",
                exc.rest[:RAW_BYTES],
            )
        )


def _joined(lines: Iterable[bytes]) -> bytes:
    """Lines as one block to parse (the last line of a file may lack its newline)."""
    return b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)


def _csv_names(header: bytes, delimiter: str) -> list[str]:
    return pcsv.read_csv(
        io.BytesIO(_joined([header])), parse_options=pcsv.ParseOptions(delimiter=delimiter)
    ).column_names


def _csv_schema(names: list[str], lines: list[bytes], delimiter: str) -> pa.Schema:
    """The types Arrow infers from these lines, those with another number of fields left out."""
    return pcsv.read_csv(
        io.BytesIO(_joined(lines)),
        read_options=pcsv.ReadOptions(column_names=names),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=lambda row: "skip"),
    ).schema


def _read_types(schema: pa.Schema, columns: list[str] | None, target: str | None) -> pa.Schema:
    """The columns to read, integer features widened to floats."""
    fields = [schema.field(name) for name in (columns or schema.names) if name in schema.names]
    return pa.schema(
        pa.field(f.name, pa.float64()) if pa.types.is_integer(f.type) and f.name != target else f for f in fields
    )


def _json_parser(types: pa.Schema) -> Callable[[bytes], pa.Table]:
    options = pjson.ParseOptions(explicit_schema=types, unexpected_field_behavior="ignore")
    return lambda data: pjson.read_json(io.BytesIO(data), parse_options=options)


def _csv_parser(
    names: list[str], types: pa.Schema, delimiter: str, columns: list[str] | None
) -> Callable[[bytes], pa.Table]:
    read = pcsv.ReadOptions(column_names=names)
    parse = pcsv.ParseOptions(delimiter=delimiter)
    convert = pcsv.ConvertOptions(column_types={f.name: f.type for f in types}, include_columns=columns or types.names)
    return lambda data: pcsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)


def _parsed(
    chunk: list[tuple[int, bytes]],
    parse: Callable[[bytes], pa.Table],
    path: Path,
    dead_letter: Callable[[DeadLetter], None],
) -> Iterator[tuple[pa.RecordBatch, int]]:
    """The chunk's lines as batches of consecutive good lines; the bad ones as dead letters."""
    try:
        table = parse(_joined(line for _, line in chunk))
        # Arrow read other records than lines (two objects on one line): cut it finer
        problem = None if table.num_rows == len(chunk) else f"holds {table.num_rows} records, not one"
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        problem = "cannot be read: " + str(exc).replace(" in row 0", "").strip()
    if problem is None:
        for batch in table.combine_chunks().to_batches():
            yield batch, chunk[0][0]
    elif len(chunk) == 1:
        number, line = chunk[0]
        dead_letter(DeadLetter(f"{path}:{number}", f"line {number} {problem}", line[:RAW_BYTES]))
    else:
        half = len(chunk) // 2
        yield from _parsed(chunk[:half], parse, path, dead_letter)
        yield from _parsed(chunk[half:], parse, path, dead_letter)


def _kind(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _majority_schema(path: Path, lines: list[bytes]) -> pa.Schema:
    """The types of the columns as most of these lines have them."""
    parsed = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            parsed.append((line, {k: _kind(v) for k, v in record.items()}))
    votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for _, kinds in parsed:
        for name, kind in kinds.items():
            if kind is not None:
                votes[name][kind] += 1
    usual = {name: counter.most_common(1)[0][0] for name, counter in votes.items()}
    agreeing = [line for line, kinds in parsed if all(k is None or k == usual[n] for n, k in kinds.items())]
    if not agreeing:
        raise SourceError(f"source.path: no line of the first {len(lines):,} of {path} is a JSON object")
    data = _joined(agreeing)
    return pjson.read_json(io.BytesIO(data)).schema
