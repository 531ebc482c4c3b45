"""Kafka dump readers: real kcat dumps from a loopback broker, edge cases of each format."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import duckdb
import pytest
from confluent_kafka import Producer
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka_mock import MockCluster

import workbench as wb
from workbench.config import SourceConfig
from workbench.errors import SourceError
from workbench.sources.kafka_dump import KafkaDumpSource, detect
from workbench.sources.kafka_records import Decoder, _Fallback

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms
SAMPLE = ROOT / "datasets" / "kafka_sample"


def at(ms: int) -> datetime:
    return datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms - T0)


def dump_source(path, **cfg) -> KafkaDumpSource:
    config = SourceConfig(
        kind="kafka_dump",
        path=str(path),
        target=cfg.pop("target", "y"),
        time=cfg.pop("time", "kafka"),
        **cfg,
    )
    source = KafkaDumpSource(config)
    source.validate()
    return source


def read(source: KafkaDumpSource):
    dead = []
    events = list(source.events(dead.append))
    return events, dead


def kcat_line(topic="t", partition=0, offset=0, ts=T0, payload=None, key=None, **extra) -> bytes:
    return (
        json.dumps(
            {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "tstype": "create",
                "ts": ts,
                "broker": 1,
                **extra,
                "key": key,
                "payload": payload,
            }
        ).encode()
        + b"\n"
    )


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is apt-installed by .ci/run")
def test_a_dump_made_by_kcat_on_a_loopback_broker(tmp_path):
    good = [
        {"id": i, "amount": i * 1.5, "who": {"age": 30 + i, "city": "Lyon"}, "y": i % 2 == 0}
        for i in range(40)
    ]
    with MockCluster() as kafka:
        kafka.create_topic("apps", 3)
        producer = Producer({"bootstrap.servers": kafka.bootstrap})
        for i, record in enumerate(good):
            producer.produce(
                "apps",
                json.dumps(record).encode(),
                key=None if i == 5 else str(i).encode(),
                partition=i % 3,
                timestamp=T0 + i * 1000,
                headers=[("trace", b"abc")] if i == 3 else None,
            )
        producer.produce(
            "apps", b'{"id": 99, "amount": "\xff\xfe"}', partition=0, timestamp=T0 + 50_000
        )
        producer.produce("apps", None, key=b"gone", partition=1, timestamp=T0 + 50_000)
        producer.produce("apps", b"{oops", partition=2, timestamp=T0 + 50_000)
        assert producer.flush(10) == 0
        out = subprocess.run(
            ["kcat", "-b", kafka.bootstrap, "-C", "-J", "-e", "-q", "-t", "apps"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    path = tmp_path / "apps.kcat.jsonl"
    path.write_bytes(out)
    assert detect(path) == "kcat"
    assert b'"headers":["trace","abc"]' in out and b'"key":null' in out and b'"payload":null' in out
    events, dead = read(dump_source(path, id="id"))
    by_id = {ev.key: ev for ev in events}
    assert sorted(by_id) == list(range(40))
    ev = by_id[7]
    assert ev.x == {
        "amount": 10.5,
        "who.age": 37,
        "who.city": "Lyon",
    }  # nested → a.b; id, target, time not features
    assert ev.y is False and ev.time == at(T0 + 7000) and ev.origin == ("apps", 1, 2)
    assert len(dead) == 3
    for expected in ("not valid UTF-8", "not valid JSON", "no value"):
        assert any(expected in d.reason for d in dead), expected
    utf8 = next(d for d in dead if "UTF-8" in d.reason)
    assert b"\xff\xfe" in utf8.raw and utf8.origin.startswith(
        f"{path}:"
    )  # the bytes are kept exactly
    lines = out.splitlines()
    assert utf8.raw == lines[int(utf8.origin.rsplit(":", 1)[1]) - 1]


def test_console_consumer_output_with_any_subset_of_fields(tmp_path):
    full = tmp_path / "full.txt"
    full.write_bytes(
        b'CreateTime:1767225600000\tPartition:0\tOffset:0\tk1:v1,k2:v2\tkey-a\t'
        b'{"a": 1, "y": true}\n'
        b'LogAppendTime:1767225601000\tPartition:1\tOffset:0\tNO_HEADERS\tnull\t'
        b'{"a": 2, "y": false}\n'
        b"CreateTime:1767225602000\tPartition:0\tOffset:1\tNO_HEADERS\tkey-c\tnull\n"
        b'CreateTime:1767225602000\tPartition:0\tOffset:0\tNO_HEADERS\tkey-a\t{"a": 1, "y": true}\n'
    )
    assert detect(full) == "console"
    events, dead = read(dump_source(full))
    assert [(ev.x, ev.y, ev.time, ev.origin[1:]) for ev in events] == [
        ({"a": 1}, True, at(T0), (0, 0)),
        ({"a": 2}, False, at(T0 + 1000), (1, 0)),
    ]
    assert len(dead) == 1 and "no value" in dead[0].reason and dead[0].origin == f"{full}:3"
    source = dump_source(full)
    read(source)
    assert source.n_duplicates == 1  # partition 0 offset 0 again

    subset = (
        tmp_path / "subset.txt"
    )  # print.timestamp and print.offset only, and a NO_TIMESTAMP record
    subset.write_bytes(
        b'CreateTime:1767225600000\tOffset:4\t{"a": 1, "y": 1}\n'
        b'NO_TIMESTAMP\tOffset:5\t{"a": 2, "y": 0}\n'
    )
    events, dead = read(dump_source(subset))
    assert [(ev.x, ev.origin[2]) for ev in events] == [({"a": 1}, 4)]
    assert "no timestamp" in dead[0].reason


def test_s3_sink_layout_gzip_and_offsets(tmp_path):
    for partition, rows in [(0, [(0, 1), (20, 0)]), (1, [(10, 1), (30, 1)])]:
        folder = tmp_path / "topics" / "loans" / f"partition={partition}"
        folder.mkdir(parents=True)
        lines = "".join(json.dumps({"t": T0 + s * 1000, "a": s, "y": y}) + "\n" for s, y in rows)
        with gzip.open(folder / f"loans+{partition}+{100 * partition:010d}.json.gz", "wt") as f:
            f.write(lines)
    source = dump_source(tmp_path / "topics/loans/partition=*/*.json.gz", time="t", time_unit="ms")
    assert [detect(p) for p, _ in source.files(source.config.path, "auto", "source.path")] == [
        "s3",
        "s3",
    ]
    events, dead = read(source)
    assert not dead
    assert sorted((ev.origin, ev.x["a"]) for ev in events) == [
        (("loans", 0, 0), 0),
        (("loans", 0, 1), 20),
        (("loans", 1, 100), 10),
        (("loans", 1, 101), 30),
    ]
    assert (
        len(source.streams(lambda d: None)) == 2
    )  # one stream per partition, merged by the replay


def test_json_lines_path_list_and_glob(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        '{"x1": 1, "y": "cat", "ts": "2026-01-01T00:00:00"}\n\n'
        '{"x1": 2, "y": "dog", "ts": "2026-01-01T00:00:01Z"}\n'
    )
    (tmp_path / "b.jsonl").write_text('{"x1": 3, "y": "cat", "ts": "2026-01-01T00:00:02+00:00"}\n')
    for path in [str(tmp_path / "*.jsonl"), [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]]:
        source = KafkaDumpSource(SourceConfig(kind="kafka_dump", path=path, target="y", time="ts"))
        events, dead = read(source)
        assert [(ev.x, ev.y, ev.time) for ev in events] == [
            ({"x1": i + 1}, y, at(T0 + i * 1000)) for i, y in enumerate(["cat", "dog", "cat"])
        ]
        assert not dead
    with pytest.raises(SourceError, match="no file matches"):
        dump_source(str(tmp_path / "nothing*.jsonl"))


def test_kafka_time_on_a_dump_without_timestamps_is_a_config_error(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"x1": 1, "y": 1}\n')
    with pytest.raises(wb.ConfigError, match="source.time"):
        dump_source(tmp_path / "a.jsonl")


BROKEN_PAYLOADS = {
    "invalid JSON": (b'{"id": 1, "a": ', "not valid JSON"),
    "not an object": (b"[1, 2]", "JSON list, not an object"),
    "wrong type": (b'{"id": 2, "a": "high", "y": true}', "feature 'a' is a string"),
    "a list feature": (
        b'{"id": 3, "a": 1, "tags": [1], "y": true}',
        "feature 'tags' is a JSON list",
    ),
    "not UTF-8": (b'{"id": 4, "a": 1, "s": "\xe9t\xe9", "y": true}', "not valid UTF-8"),
    "no id": (b'{"a": 1, "y": true}', "no id field 'id'"),
    "no target": (b'{"id": 5, "a": 1}', "no target field 'y'"),
    "null payload": (None, "no value"),
}


def test_every_kind_of_broken_record_is_a_dead_letter_and_the_run_finishes(tmp_path, db):
    lines = [
        kcat_line(offset=i, ts=T0 + i, payload=json.dumps({"id": 100 + i, "a": i, "y": i % 2 == 0}))
        for i in range(300)
    ]
    for k, (value, _) in enumerate(BROKEN_PAYLOADS.values()):
        payload = None if value is None else value.decode("utf-8", "surrogateescape")
        line = (
            json.dumps(
                {
                    "topic": "t",
                    "partition": 1,
                    "offset": k,
                    "ts": T0 + 10 * k,
                    "key": None,
                    "payload": payload,
                },
                ensure_ascii=False,
            ).encode("utf-8", "surrogateescape")
            + b"\n"
        )
        lines.insert(20 * k + 7, line)
    lines.insert(3, b'{"topic": "t", "partition": 0, "offs\n')  # a truncated envelope
    path = tmp_path / "broken.kcat.jsonl"
    path.write_bytes(b"".join(lines))
    run = wb.run(
        {
            "name": "broken",
            "source": {"kind": "kafka_dump", "path": str(path), "target": "y", "id": "id"},
            "learners": [{"name": "lr", "model": "river.linear_model.LogisticRegression"}],
        },
        db=db,
        progress=False,
    )
    assert run.status == "finished"
    info = run.info
    assert info["n_events"] == 300 and info["n_dead_letters"] == len(BROKEN_PAYLOADS) + 1
    con = duckdb.connect(str(db), read_only=True)
    dead = con.execute(
        "SELECT origin, reason, raw FROM dead_letters WHERE run_id = ?", [run.id]
    ).fetchall()
    for value, expected in BROKEN_PAYLOADS.values():
        origin, reason, raw = next(row for row in dead if expected in row[1])
        line_no = int(origin.rsplit(":", 1)[1])
        assert raw == lines[line_no - 1].rstrip(b"\n")  # the raw bytes, kept exactly
        if value is not None:
            payload = json.loads(raw.decode("utf-8", "surrogateescape"))["payload"]
            assert (
                payload.encode("utf-8", "surrogateescape") == value
            )  # down to the non-UTF-8 bytes
    assert any("not a kcat -J line" in row[1] for row in dead)


def test_strict_stops_at_the_first_bad_record_naming_file_and_line(tmp_path, db):
    path = tmp_path / "d.kcat.jsonl"
    path.write_bytes(
        kcat_line(offset=0, payload='{"a": 1, "y": true}') + kcat_line(offset=1, payload="[]")
    )
    config = {
        "name": "strict",
        "source": {
            "kind": "kafka_dump",
            "path": str(path),
            "target": "y",
            "strict": True,
            "task": "binary",
        },
        "learners": [{"model": "river.linear_model.LogisticRegression"}],
    }
    with pytest.raises(SourceError, match=rf"{path}:2: payload of t/0/1 is a JSON list"):
        wb.run(config, db=db, progress=False)


def test_duplicates_by_offset_and_by_id_are_dropped_and_counted(tmp_path, db):
    path = tmp_path / "d.kcat.jsonl"
    rows = [
        (0, 0, 1),
        (0, 1, 2),
        (1, 0, 3),
        (0, 1, 2),
        (1, 1, 1),
        (0, 2, 4),
    ]  # (partition, offset, id)
    path.write_bytes(
        b"".join(
            kcat_line(
                partition=p, offset=o, ts=T0 + i, payload=json.dumps({"id": k, "y": True, "a": i})
            )
            for i, (p, o, k) in enumerate(rows)
        )
    )
    run = wb.run(
        {
            "name": "dups",
            "source": {"kind": "kafka_dump", "path": str(path), "target": "y", "id": "id"},
            "learners": [{"model": "river.linear_model.LogisticRegression"}],
        },
        db=db,
        progress=False,
    )
    assert (run.info["n_events"], run.info["n_duplicates"]) == (4, 2)


payload_values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3)),
    st.booleans(),
    st.text(st.characters(codec="utf-8"), max_size=5),
    st.none(),
)
payloads = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.one_of(
        payload_values, st.dictionaries(st.sampled_from(["u", "v"]), payload_values, max_size=2)
    ),
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(payloads, st.booleans()), min_size=1, max_size=40))
def test_the_fast_block_path_decodes_exactly_like_one_message_at_a_time(records):
    """Whatever pyarrow takes whole must come out as the per-message decoder makes it."""
    import pyarrow as pa

    config = SourceConfig(kind="kafka_dump", target="y", time="kafka")
    values = [json.dumps({**p, "y": y}).encode() for p, y in records]
    slow_dead, fast_dead = [], []
    slow = Decoder(config, slow_dead.append)
    expected = [slow.message("t", 0, i, T0 + i, v, f"f:{i}", v) for i, v in enumerate(values)]
    fast = Decoder(config, fast_dead.append)
    try:
        got = fast.block(
            ["t"] * len(values),
            [0] * len(values),
            list(range(len(values))),
            pa.array([T0 + i for i in range(len(values))], pa.int64()),
            b"\n".join(values),
            len(values),
        )
    except _Fallback:
        return  # the block goes to the slow path: nothing to compare
    assert [(ev.x, ev.y, ev.time, ev.origin) for ev in got] == [
        (ev.x, ev.y, ev.time, ev.origin) for ev in expected if ev is not None
    ]
    assert not slow_dead


def test_the_sample_dump_replays_with_every_count(db):
    run = wb.run(ROOT / "experiments" / "kafka_loans.yaml", db=db, progress=False)
    info = run.info
    assert run.status == "finished"
    assert info["n_dead_letters"] >= 6 and info["n_duplicates"] > 0 and info["n_late"] > 0
    assert info["n_unlabelled"] > 0 and info["n_orphan_labels"] == 5
    steps = run.steps()
    unlabelled = steps[steps["y_true"].isna()]
    assert len(unlabelled) == info["n_unlabelled"] * len(run.summary())
    # predicted (an untrained first model may abstain), never scored
    assert unlabelled["y_pred"].notna().mean() > 0.9 and unlabelled["correct"].isna().all()
    assert (
        steps.groupby("learner")["seq"]
        .apply(lambda s: sorted(s) == list(range(info["n_events"])))
        .all()
    )


def test_a_clean_block_takes_the_fast_path_and_a_bad_one_does_not():
    import pyarrow as pa

    config = SourceConfig(kind="kafka_dump", target="y", time="kafka")
    values = [json.dumps({"a": i, "n": {"b": "x"}, "y": i % 2 == 0}).encode() for i in range(50)]
    ts = pa.array([T0 + i for i in range(50)], pa.int64())
    events = Decoder(config, None).block(["t"] * 50, [0] * 50, list(range(50)), ts,
                                         b"\n".join(values), 50)
    assert [ev.x for ev in events[:2]] == [{"a": 0, "n.b": "x"}, {"a": 1, "n.b": "x"}]
    with pytest.raises(_Fallback):
        Decoder(config, None).block(["t"] * 50, [0] * 50, list(range(50)), ts,
                                    b"\n".join(values[:49] + [b"[1]"]), 50)
