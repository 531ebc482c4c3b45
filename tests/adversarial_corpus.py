"""An adversarial corpus of dumps and files, written at test time (nothing checked in).

Each case writes its files into a folder and says what a correct replay makes of them: how many
records went in, and how many must come out as events, dead letters, true duplicates and late
events. ``tests/test_adversarial.py`` replays every case; run this file to print the figures a
replay gives for each case (``python tests/adversarial_corpus.py``), e.g. before and after a fix.
"""

from __future__ import annotations

import gzip
import json
import math
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms
YEAR_10000_MS = 253_402_300_800_000


@dataclass
class Case:
    """What a replay of the case must give. ``n_in`` counts records (lines, rows, messages)."""

    source: dict
    n_in: int
    events: int
    dead: int = 0
    duplicates: int = 0
    late: int = 0
    labelled: int | None = None  # events that got their label (labels joined from another dump)
    orphans: int = 0
    #: a text each dead letter's reason must hold, in order of origin (None: not checked)
    reasons: list[str] | None = None
    learner: dict = field(default_factory=lambda: {"name": "prior", "model": "river.dummy.PriorClassifier"})

    def config(self, name: str) -> dict:
        return {
            "name": name,
            "source": {"task": "binary", **self.source},
            "learners": [self.learner],
            "metrics": ["accuracy"],
        }


def kcat(offset: int, payload, partition: int = 0, ts: int | None = None, topic: str = "t") -> str:
    """A line as ``kcat -J`` writes it (compact JSON, the payload a JSON string)."""
    text = payload if isinstance(payload, str) or payload is None else json.dumps(payload, separators=(",", ":"))
    envelope = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "tstype": "create",
        "ts": T0 + offset if ts is None else ts,
        "broker": 1,
        "key": None,
        "payload": text,
    }
    return json.dumps(envelope, separators=(",", ":")) + "\n"


def record(i: int, **extra) -> dict:
    return {"a": i % 7, "b": {"c": float(i % 3)}, "y": i % 2 == 0, **extra}


def write(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def dump(folder: Path, **source) -> dict:
    return {"kind": "kafka_dump", "path": str(folder), "target": "y", **source}


# -- dedup and file order --------------------------------------------------------------------
def split_two_files(d: Path) -> Case:
    """One partition over part-1 (0-49,999) and part-2 (50,000-99,999), 6.8 MB each: more
    than a 4 MiB block. Before: 81,036 of 100,000 replayed (the issue saw 81,294 with its lines:
    what was lost is part-1 after its first block)."""
    for k in (1, 2):
        write(d / f"part-{k}", (kcat(i, {"a": i % 10, "y": i % 2 == 0}) for i in range((k - 1) * 50_000, k * 50_000)))
    return Case(dump(d / "part-*"), 100_000, events=100_000)


def name_order(d: Path) -> Case:
    """part-9 holds offsets 0-999, part-10 1000-1999: by name, part-10 comes first."""
    write(d / "part-9", (kcat(i, record(i)) for i in range(1000)))
    write(d / "part-10", (kcat(i, record(i)) for i in range(1000, 2000)))
    return Case(dump(d / "part-*"), 2000, events=2000)


def bogus_offset(d: Path) -> Case:
    """Offset 900000 in the middle of a partition (its timestamp in line with its neighbours)."""
    lines = [kcat(i, record(i)) for i in range(2000)]
    lines[1000] = kcat(900_000, record(1000), ts=T0 + 1000)
    write(d / "p.kcat.jsonl", lines)
    return Case(dump(d / "p.kcat.jsonl"), 2000, events=2000)


def offsets_restart(d: Path) -> Case:
    """A dump appended to by two consumers: offsets 1000-1999, then from the start, 0-999."""
    lines = [kcat(i, record(i), ts=T0 + i) for i in range(1000, 2000)]
    lines += [kcat(i, record(i), ts=T0 + 2000 + i) for i in range(1000)]
    write(d / "p.kcat.jsonl", lines)
    return Case(dump(d / "p.kcat.jsonl"), 2000, events=2000)


def true_duplicates(d: Path) -> Case:
    """Two overlapping dumps of one partition (0-999 and 500-1499), and a re-read inside one."""
    write(d / "a.kcat.jsonl", (kcat(i, record(i)) for i in range(1000)))
    write(d / "b.kcat.jsonl", [kcat(i, record(i)) for i in range(500, 1500)] + [kcat(7, record(7))])
    return Case(dump(d / "*.kcat.jsonl"), 2001, events=1500, duplicates=501)


def typed_ids(d: Path) -> Case:
    """Ids 0 and 0.0, 1 and true, "1" are five different ids; the same id again is a duplicate."""
    ids = [*range(100, 200), 0, 0.0, 1, True, "1", 0]
    write(d / "p.kcat.jsonl", (kcat(i, {"id": k, "a": i, "y": True}) for i, k in enumerate(ids)))
    return Case(dump(d / "p.kcat.jsonl", id="id"), 106, events=105, duplicates=1)


def conflicting_labels(d: Path) -> Case:
    """Labels in another dump: one id labelled twice the same way (a duplicate), one labelled
    twice differently (a dead letter of the labels source), one label for no event."""
    events = write(d / "events.kcat.jsonl", (kcat(i, {"id": i, "a": i}) for i in range(100)))
    labels = [kcat(i, {"id": i, "y": i % 2 == 0}, ts=T0 + i + 1, topic="labels") for i in range(100)]
    labels += [
        kcat(100, {"id": 3, "y": False}, ts=T0 + 200, topic="labels"),  # 3 was labelled False
        kcat(101, {"id": 4, "y": False}, ts=T0 + 201, topic="labels"),  # 4 was labelled True
        kcat(102, {"id": 999, "y": True}, ts=T0 + 202, topic="labels"),
    ]
    path = write(d / "labels.kcat.jsonl", labels)
    source = {
        "kind": "kafka_dump",
        "path": str(events),
        "id": "id",
        "labels": {"path": str(path), "id": "id", "target": "y"},
    }
    return Case(source, 203, events=100, dead=1, duplicates=1, labelled=100, orphans=1, reasons=["conflicting"])


# -- bad records -----------------------------------------------------------------------------
def with_bad(d: Path, bad: list[str], n: int = 300, name: str = "p.kcat.jsonl", **source) -> Path:
    """n good kcat lines with the bad payloads spread among them (offsets after the good ones)."""
    lines = [kcat(i, record(i, id=i)) for i in range(n)]
    for k, payload in enumerate(bad):
        lines.insert(37 * k + 11, kcat(n + k, payload, ts=T0 + 37 * k + 11))
    return write(d / name, lines)


def bad_payloads(d: Path) -> Case:
    """Every kind of bad payload, each a dead letter naming what is wrong."""
    bad = [
        json.dumps({"id": 1000, "a": 1, "y": True, "t": 1}).replace('"a": 1', '"a": NaN'),
        json.dumps({"id": 1001, "a": 1, "y": True}).replace('"a": 1', '"a": Infinity'),
        json.dumps({"id": [1, 2], "a": 1, "y": True}),
        json.dumps({"id": 1002, "a": 1, "y": [1]}),
        json.dumps({"id": 1003, "a": 1, "y": True, "b.c": 1.0, "b": {"c": 2.0}}),
        '{"id": 1004, "y": true, "a": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000 + "}",
        '{"id": 1005, "y": true, "a": ' + "[" * 10_000 + "1" + "]" * 10_000 + "}",
        json.dumps({"id": 1006, "y": True, "a": 1, "deep": _nested(100)}),
    ]
    path = with_bad(d, bad)
    reasons = ["'a' is nan", "'a' is inf", "id field", "target field", "two fields", "deep", "deep", "deeper"]
    return Case(dump(path, id="id"), 308, events=300, dead=8, reasons=reasons)


def _nested(depth: int) -> dict:
    out: dict = {"v": 1}
    for _ in range(depth):
        out = {"n": out}
    return out


def kcat_ts_year_10000(d: Path) -> Case:
    lines = [kcat(i, record(i)) for i in range(300)]
    lines.insert(150, kcat(300, record(300), ts=YEAR_10000_MS))
    write(d / "p.kcat.jsonl", lines)
    return Case(dump(d / "p.kcat.jsonl"), 301, events=300, dead=1, reasons=["year 9999"])


def payload_times(d: Path) -> Case:
    """Payload time fields of 1e20 seconds, NaN and Infinity, on the block path's neighbours."""
    lines = [kcat(i, record(i, t=1_767_225_600 + i)) for i in range(300)]
    for k, t in enumerate(["1e20", "NaN", "-Infinity"]):
        payload = json.dumps(record(300 + k, t=12345)).replace("12345", t)
        lines.insert(100 * k + 50, kcat(300 + k, payload))
    write(d / "p.kcat.jsonl", lines)
    return Case(dump(d / "p.kcat.jsonl", time="t", time_unit="s"), 303, events=300, dead=3)


def nan_in_a_clean_block(d: Path) -> Case:
    """NaN and Infinity in records pyarrow reads whole (the block path)."""
    lines = [kcat(i, record(i)) for i in range(1000)]
    for i in (10, 500, 999):
        lines[i] = kcat(i, json.dumps(record(i)).replace('"c": 1.0', '"c": NaN').replace('"c": 0.0', '"c": -Infinity')
                        .replace('"c": 2.0', '"c": Infinity'))
    write(d / "p.kcat.jsonl", lines)
    return Case(dump(d / "p.kcat.jsonl"), 1000, events=997, dead=3, reasons=["'b.c'"] * 3)


def gz_truncated(d: Path) -> Case:
    """A .gz cut in the middle: the complete lines before the cut are read."""
    data = gzip.compress("".join(kcat(i, record(i)) for i in range(5000)).encode())
    (d / "p.kcat.jsonl.gz").write_bytes(data[: len(data) * 2 // 3])
    recovered = _complete_lines(d / "p.kcat.jsonl.gz")
    return Case(dump(d / "p.kcat.jsonl.gz"), recovered + 1, events=recovered, dead=1, reasons=["truncated"])


def gz_trailing_garbage(d: Path) -> Case:
    """Garbage after the end of a .gz (a second gzip member is fine, and read)."""
    first = gzip.compress("".join(kcat(i, record(i)) for i in range(1000)).encode())
    second = gzip.compress("".join(kcat(i, record(i)) for i in range(1000, 1500)).encode())
    (d / "p.kcat.jsonl.gz").write_bytes(first + second + b"\0\0garbage, not gzip\n" * 10)
    return Case(dump(d / "p.kcat.jsonl.gz"), 1501, events=1500, dead=1, reasons=["not gzip"])


def _complete_lines(path: Path) -> int:
    import zlib

    out = zlib.decompressobj(31).decompress(path.read_bytes())
    return out.count(b"\n")


def bom_and_empty_in_a_glob(d: Path) -> Case:
    """An auto-detected glob holding a file with a byte order mark and two empty files."""
    (d / "a.kcat.jsonl").write_bytes(b"\xef\xbb\xbf" + "".join(kcat(i, record(i)) for i in range(100)).encode())
    (d / "b.kcat.jsonl").write_bytes(b"")
    (d / "c.kcat.jsonl").write_bytes(b"\n\n")
    write(d / "d.kcat.jsonl", (kcat(i, record(i), partition=1) for i in range(100)))
    return Case(dump(d / "*.kcat.jsonl"), 200, events=200)


def huge_lines(d: Path) -> Case:
    """A 50 MB line that is not JSON (its dead letter keeps the 50 MB) and a 50 MB valid record
    (a model of 2.5 M weights: its final checkpoint is kept)."""
    lines = [kcat(i, {"f0": 1.0, "y": i % 2 == 0}) for i in range(20)]
    lines.insert(5, '{"topic": "t", "partition": 0, "offset": 5000, "payload": "' + "z" * 50_000_000 + "\n")
    big = {f"f{k}": 1.0 for k in range(2_500_000)}
    lines.insert(10, kcat(5001, {**big, "y": True}, ts=T0 + 10))
    write(d / "p.kcat.jsonl", lines)
    lr = {"name": "lr", "model": "river.linear_model.LogisticRegression"}
    return Case(dump(d / "p.kcat.jsonl"), 22, events=21, dead=1, reasons=["not a kcat"], learner=lr)


def late_event(d: Path) -> Case:
    """An event an hour behind the events already replayed: late, a dead letter by default."""
    lines = [kcat(i, record(i)) for i in range(3000)]
    lines[2500] = kcat(2500, record(2500), ts=T0 - 3_600_000)
    write(d / "p.kcat.jsonl", lines)
    return Case(dump(d / "p.kcat.jsonl"), 3000, events=2999, late=1)


# -- other dump formats ----------------------------------------------------------------------
def console_consumer(d: Path) -> Case:
    def line(ts: int, offset: int, value: str) -> str:
        return f"CreateTime:{ts}\tPartition:0\tOffset:{offset}\tNO_HEADERS\tnull\t{value}\n"

    lines = [line(T0 + i, i, json.dumps(record(i, id=i))) for i in range(200)]
    lines.insert(50, line(YEAR_10000_MS, 200, json.dumps(record(200, id=200))))
    lines.insert(60, line(T0 + 60, 201, '{"id": [1], "y": true}'))
    lines.insert(70, lines[10])  # the same message again
    write(d / "c.txt", lines)
    return Case(dump(d / "c.txt", id="id", format="auto"), 203, events=200, dead=2, duplicates=1)


def s3_sink(d: Path) -> Case:
    """Connect S3 files whose start offsets are not zero-padded (t+0+9 before t+0+10 by name
    only if sorted by offset), one gzipped and truncated."""
    folder = d / "topics" / "t" / "partition=0"
    write(folder / "t+0+0.json", (json.dumps(record(i, t=T0 + i)) + "\n" for i in range(9)))
    write(folder / "t+0+9.json", (json.dumps(record(i, t=T0 + i)) + "\n" for i in range(9, 1000)))
    write(folder / "t+0+1000.json", [json.dumps(record(i, t=T0 + i)) + "\n" for i in range(1000, 1500)]
          + ['{"a": NaN, "y": true, "t": 1767225601500}\n'])
    data = gzip.compress("".join(json.dumps(record(i, t=T0 + i)) + "\n" for i in range(1501, 3000)).encode())
    (folder / "t+0+1501.json.gz").write_bytes(data[: len(data) // 2])
    recovered = _complete_lines(folder / "t+0+1501.json.gz")
    return Case(dump(d / "topics/t/partition=*/*", time="t", time_unit="ms"), 1501 + recovered + 1,
                events=1500 + recovered, dead=2, reasons=["'a' is nan", "truncated"])


def json_lines_dump(d: Path) -> Case:
    lines = [json.dumps(record(i, t=T0 + i)) + "\n" for i in range(500)]
    lines.insert(100, '{"a": Infinity, "y": true, "t": 1767225600100}\n')
    lines.insert(200, '{"a.b": 1, "a": {"b": 2}, "y": true, "t": 1767225600200}\n')
    lines.insert(300, "[" * 10_000 + "]" * 10_000 + "\n")
    write(d / "v.jsonl", lines)
    return Case(dump(d / "v.jsonl", time="t", time_unit="ms"), 503, events=500, dead=3)


# -- files: CSV, Parquet, JSON Lines ---------------------------------------------------------
def csv_file(d: Path) -> Case:
    rows = ["a,b,y\n"] + [f"{i % 7},{i % 3}.5,{int(i % 2 == 0)}\n" for i in range(500)]
    rows[100] = "nan,1.5,1\n"
    rows[200] = "1,inf,0\n"
    rows[300] = "1,-inf,0\n"
    write(d / "f.csv", rows)
    # "nan" in a CSV is a missing value (pyarrow's and pandas' null_values): an absent feature
    return Case({"kind": "file", "path": str(d / "f.csv"), "target": "y"}, 500, events=498, dead=2,
                reasons=["'b' is inf", "'b' is -inf"])


def parquet_file(d: Path) -> Case:
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = [float(i % 7) for i in range(500)]
    a[42], a[43] = math.nan, math.inf
    pq.write_table(pa.table({"a": a, "y": [i % 2 == 0 for i in range(500)]}), d / "f.parquet")
    return Case({"kind": "file", "path": str(d / "f.parquet"), "target": "y"}, 500, events=498, dead=2)


def json_lines_file(d: Path) -> Case:
    lines = [json.dumps({"a": float(i), "y": i % 2 == 0}) + "\n" for i in range(500)]
    lines[7] = '{"a": NaN, "y": true}\n'
    write(d / "f.jsonl", lines)
    return Case({"kind": "file", "path": str(d / "f.jsonl"), "target": "y"}, 500, events=499, dead=1)


# Files whose later lines do not fit the types Arrow's streaming reader took from its first 4 MiB
# block (before: the run failed, or did not start, at the first such line).
PAST_A_BLOCK = 60_000  # ~5 MiB of the lines below


def _wide_json(i: int, a) -> str:
    return json.dumps({"a": a, "pad": "x" * 60, "y": i % 2 == 0}) + "\n"


def json_lines_type_change(d: Path) -> Case:
    """A word, an object and a list where column a holds numbers, past the first block; a last
    line cut short."""
    lines = [_wide_json(i, i * 0.5) for i in range(PAST_A_BLOCK)]
    lines[50_000] = _wide_json(50_000, "oops")
    lines[50_001] = _wide_json(50_001, {"deep": {"er": [1, 2]}})
    lines[55_555] = _wide_json(55_555, [1, 2])
    lines.append('{"a": 1.0, "pad": "x", "y"\n')
    write(d / "f.jsonl", lines)
    return Case({"kind": "file", "path": str(d / "f.jsonl"), "target": "y"}, PAST_A_BLOCK + 1,
                events=PAST_A_BLOCK - 3, dead=4,
                reasons=["line 50001 ", "line 50002 ", "line 55556 ", "line 60001 "])


def json_lines_bad_first_line(d: Path) -> Case:
    """The first line disagrees with the next 999 (Arrow cannot open the file): the types are
    the ones most lines have."""
    lines = [_wide_json(i, float(i)) for i in range(1000)]
    lines[0] = _wide_json(0, "oops")
    write(d / "f.jsonl", lines)
    return Case({"kind": "file", "path": str(d / "f.jsonl"), "target": "y"}, 1000, events=999, dead=1,
                reasons=["line 1 "])


def json_lines_gz_truncated(d: Path) -> Case:
    """A .jsonl.gz cut in the middle: the complete lines before the cut are replayed."""
    data = gzip.compress("".join(_wide_json(i, float(i)) for i in range(PAST_A_BLOCK)).encode())
    (d / "f.jsonl.gz").write_bytes(data[: len(data) * 2 // 3])
    recovered = _complete_lines(d / "f.jsonl.gz")
    return Case({"kind": "file", "path": str(d / "f.jsonl.gz"), "target": "y"}, recovered + 1,
                events=recovered, dead=1, reasons=["truncated"])


def csv_type_change(d: Path) -> Case:
    """A word in a column of numbers past the first block, a row with a field too many, and a
    column of whole numbers that turns to fractions (numbers still: not dead letters)."""
    rows = ["a,b,pad,y\n"] + [f"{i % 7},{i},{'x' * 60},{i % 2}\n" for i in range(PAST_A_BLOCK)]
    rows[1 + 50_000] = f"oops,1,{'x' * 60},0\n"
    rows[1 + 52_000] = f"1,1,{'x' * 60},0,extra\n"
    rows[1 + 58_000:] = [f"{i % 7},{i}.5,{'x' * 60},{i % 2}\n" for i in range(58_000, PAST_A_BLOCK)]
    write(d / "f.csv", rows)
    return Case({"kind": "file", "path": str(d / "f.csv"), "target": "y"}, PAST_A_BLOCK,
                events=PAST_A_BLOCK - 2, dead=2, reasons=["line 50002 ", "line 52002 "])


CASES: dict[str, Callable[[Path], Case]] = {
    f.__name__: f
    for f in [
        split_two_files, name_order, bogus_offset, offsets_restart, true_duplicates, typed_ids,
        conflicting_labels, bad_payloads, kcat_ts_year_10000, payload_times, nan_in_a_clean_block,
        gz_truncated, gz_trailing_garbage, bom_and_empty_in_a_glob, huge_lines, late_event,
        console_consumer, s3_sink, json_lines_dump, csv_file, parquet_file, json_lines_file,
        json_lines_type_change, json_lines_bad_first_line, json_lines_gz_truncated, csv_type_change,
    ]
}


def replay(name: str, folder: Path) -> tuple[Case, dict]:
    """Write case ``name`` into ``folder`` and replay it: (the case, what the replay gave)."""
    import workbench as wb

    folder.mkdir(parents=True, exist_ok=True)
    case = CASES[name](folder)
    try:
        run = wb.run(case.config(name), db=folder / "runs.duckdb", progress=False)
    except Exception as exc:  # noqa: BLE001 — the figure is the outcome
        return case, {"outcome": f"{type(exc).__name__}: {str(exc)[:100]}"}
    info = run.info
    steps = run.steps()
    first = steps[steps["learner"] == steps["learner"].iloc[0]] if len(steps) else steps
    return case, {
        "outcome": run.status,
        "events": info["n_events"],
        "dead": info["n_dead_letters"],
        "duplicates": info["n_duplicates"],
        "late": info["n_late"],
        "orphans": info["n_orphan_labels"],
        "labelled": int(first["y_true"].notna().sum()),
        "steps": first["seq"].nunique(),
        "checkpoints": len(run.checkpoints()),
    }


def main() -> None:
    names = sys.argv[1:] or list(CASES)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            try:
                case, got = replay(name, Path(tmp) / name)
            except Exception:  # noqa: BLE001
                print(f"{name}: generator failed\n{traceback.format_exc()}")
                continue
            print(f"{name:24} in {case.n_in:>7,}  expected events {case.events:>7,} dead {case.dead} "
                  f"dup {case.duplicates} late {case.late}  |  got {got}", flush=True)


if __name__ == "__main__":
    main()
