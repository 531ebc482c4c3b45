"""Properties of reading dumps: how a dump is cut into files, named and read in blocks changes
nothing, and one damaged line costs that line only."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

from adversarial_corpus import T0, kcat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench import config as config_mod
from workbench.experiment import Replay
from workbench.sources import kafka_dump
from workbench.sources.kafka_dump import KafkaDumpSource
from workbench.sources.offsets import SeenOffsets


def lines_of(n: int, partitions: int) -> list[str]:
    """A kcat dump: runs of a partition at a time, each partition in offset order."""
    offsets, lines = [0] * partitions, []
    for i in range(n):
        p = (i // 7) % partitions
        lines.append(kcat(offsets[p], {"i": i, "a": i % 5, "n": {"b": i * 0.5}, "y": i % 3 == 0}, p, T0 + i))
        offsets[p] += 1
    return lines


def replayed(folder: Path, pattern: str, block: int, **source) -> tuple[list, list, int]:
    """(events in replay order, dead letters, duplicates) of the dump, read ``block`` bytes at a time."""
    cfg = config_mod.load(
        {
            "name": "p",
            "source": {"kind": "kafka_dump", "path": str(folder / pattern), "target": "y", "task": "binary", **source},
            "learners": [{"model": "river.dummy.PriorClassifier"}],
        }
    )
    dead: list = []
    with mock.patch.object(kafka_dump, "BLOCK_BYTES", block):
        source_ = KafkaDumpSource(cfg.source)
        events = [(ev.x, ev.y, ev.time, ev.origin) for ev in Replay(cfg, source_, dead.append).events()]
    return events, dead, source_.n_duplicates


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 400),
    partitions=st.integers(1, 3),
    cuts=st.lists(st.integers(0, 400), max_size=5),
    names=st.permutations(range(8)),
    block=st.integers(64, 1 << 14),
    reread=st.none() | st.tuples(st.integers(0, 400), st.integers(1, 100)),
)
def test_any_split_in_any_file_order_and_block_size_replays_like_the_single_file(
    n, partitions, cuts, names, block, reread
):
    lines = lines_of(n, partitions)
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    chunks = [lines[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    if reread is not None:  # the same messages dumped again in a file of their own
        start = reread[0] % n
        chunks.append(lines[start : start + reread[1]])
    tmp = Path(tempfile.mkdtemp())
    try:
        (tmp / "whole").mkdir()
        (tmp / "whole" / "d.kcat.jsonl").write_text("".join(lines))
        (tmp / "split").mkdir()
        for chunk, name in zip(chunks, names, strict=False):  # names unrelated to offset order
            (tmp / "split" / f"part-{name * 7 % 13}").write_text("".join(chunk))
        expected, dead, duplicates = replayed(tmp / "whole", "d.kcat.jsonl", 1 << 22)
        got, split_dead, split_duplicates = replayed(tmp / "split", "part-*", block)
    finally:
        shutil.rmtree(tmp)
    assert got == expected and len(expected) == n
    assert not dead and not split_dead and duplicates == 0
    assert split_duplicates == (len(chunks[-1]) if reread is not None else 0)  # true duplicates only


def replayed_lines(lines: list, fmt: str, block: int) -> tuple[list, list, int]:
    tmp = Path(tempfile.mkdtemp())
    try:
        data = b"".join(x if isinstance(x, bytes) else x.encode() for x in lines)
        (tmp / "d.kcat.jsonl").write_bytes(data)
        time = {"time": "t", "time_unit": "ms"} if fmt == "jsonl" else {}
        return replayed(tmp, "d.kcat.jsonl", block, format=fmt, **time)
    finally:
        shutil.rmtree(tmp)


corruptions = st.sampled_from(["truncate", "replace", "delete", "insert"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(["kcat", "jsonl"]),
    n=st.integers(1, 120),
    which=st.integers(0, 10**6),
    where=st.integers(0, 10**6),
    how=corruptions,
    byte=st.integers(0, 255),
    block=st.integers(64, 1 << 12),
)
def test_a_corrupted_line_loses_no_other_line(fmt, n, which, where, how, byte, block):
    bad = which % n
    if fmt == "kcat":
        lines = [kcat(i, {"i": i, "a": i % 5, "y": i % 2 == 0}) for i in range(n)]
        start = lines[bad].index('"payload":') + 11  # offsets stay as they are: only the payload
    else:
        lines = [json.dumps({"i": i, "a": i % 5, "y": i % 2 == 0, "t": T0 + i}) + "\n" for i in range(n)]
        start = 0
    line = lines[bad].encode()
    at = start + where % (len(line) - 1 - start)
    damaged = {
        "truncate": line[:at] + b"\n",
        "replace": line[:at] + bytes([byte]) + line[at + 1 :],
        "delete": line[:at] + line[at + 1 :],
        "insert": line[:at] + bytes([byte]) + line[at:],
    }[how]
    events, dead, duplicates = replayed_lines([damaged if i == bad else x for i, x in enumerate(lines)], fmt, block)
    clean, _, _ = replayed_lines(lines, fmt, block)
    others = Counter(repr(ev[:3]) for ev in clean if ev[0]["i"] != bad)
    assert not others - Counter(repr(ev[:3]) for ev in events)  # every other line is an event
    assert duplicates == 0
    # the damaged line is an event or dead letter(s), unless nothing but blanks is left of it
    assert len(events) + len(dead) >= n - (not damaged.strip())


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 20)), max_size=60))
def test_seen_offsets_are_exactly_the_offsets_added(ranges):
    seen, model = SeenOffsets(), set()
    for first, length in ranges:
        new = set(range(first, first + length + 1))
        assert seen.add(first, first + length) == model.isdisjoint(new)
        if model.isdisjoint(new):
            model |= new
        assert all(seen.free(o, o) == (o not in model) for o in range(-1, 230))
        assert len(seen) == sum(1 for o in model if o - 1 not in model)  # ranges are merged
