"""Event-time replay: ordering, lateness and label joins (hypothesis), parity with River's
progressive validation on the time-ordered events, mini-batches and pacing."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import evaluate, linear_model, metrics, preprocessing, tree

import workbench as wb
from workbench.events import Event
from workbench.replay.batching import mini_batches
from workbench.replay.join import LabelJoin
from workbench.replay.ordering import EventTimeOrder, merge_partitions
from workbench.replay.pacing import paced

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def ev(seconds: float, partition=0, i=0, key=None, y=None) -> Event:
    return Event({"i": i}, y, T0 + timedelta(seconds=seconds), key, ("t", partition, i))


def order(events, lateness=0, late="dead_letter", window=8):
    dead = []
    ordering = EventTimeOrder(timedelta(seconds=lateness), late, dead.append, merge_window=window)
    return list(ordering(events)), dead, ordering


times = st.lists(st.integers(0, 200), min_size=0, max_size=60)


@settings(max_examples=150, deadline=None)
@given(times, st.integers(0, 50), st.integers(1, 20), st.sampled_from(["dead_letter", "replay"]))
def test_nothing_is_lost_and_what_is_not_late_comes_out_in_time_order(ts, lateness, window, policy):
    events = [ev(t, partition=i % 3, i=i) for i, t in enumerate(ts)]
    out, dead, ordering = order(events, lateness, policy, window)
    late_origins = {d.origin for d in dead} | {origin for _, origin, _, _ in ordering.replayed_late}
    assert len(late_origins) == ordering.n_late
    if policy == "dead_letter":
        assert Counter(e.origin for e in out) + Counter(
            e.origin for e in events if f"t/{e.origin[1]}/{e.origin[2]}" in late_origins
        ) == Counter(e.origin for e in events)
        assert [e.time for e in out] == sorted(e.time for e in out)
    else:
        assert Counter(e.origin for e in out) == Counter(e.origin for e in events)
        on_time = [
            e for k, e in enumerate(out) if k not in {pos for pos, *_ in ordering.replayed_late}
        ]
        assert [e.time for e in on_time] == sorted(e.time for e in on_time)


@settings(max_examples=150, deadline=None)
@given(times, st.integers(0, 50))
def test_an_event_within_allowed_lateness_of_the_newest_is_never_late(ts, lateness):
    """One partition: an event at most ``allowed_lateness`` behind the newest finds its place."""
    kept, newest = [], None
    for t in ts:
        if newest is None or t >= newest - lateness:
            kept.append(t)
            newest = t if newest is None else max(newest, t)
    out, dead, ordering = order([ev(t, i=i) for i, t in enumerate(kept)], lateness, window=1)
    assert ordering.n_late == 0 and not dead
    assert [e.time for e in out] == sorted(e.time for e in out) and len(out) == len(kept)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), max_size=15), min_size=1, max_size=3), st.randoms())
def test_partitions_interleaved_in_short_runs_are_merged_by_timestamp(partitions, rnd):
    """Each partition in time order, interleaved as kcat does (runs of 1-2 messages here, within
    the merge window): merged without a single late event, whatever the allowed lateness."""
    queues = [sorted(p) for p in partitions]
    events, i = [], 0
    while any(queues):
        for p, q in enumerate(queues):
            for _ in range(min(len(q), rnd.randint(1, 2))):
                events.append(ev(q.pop(0), partition=p, i=i))
                i += 1
    out, dead, ordering = order(events, lateness=0, window=8)
    assert ordering.n_late == 0
    assert [e.time for e in out] == sorted(e.time for e in events)


def test_merge_partitions_merges_sorted_streams():
    streams = [[ev(0), ev(5)], [ev(1), ev(2), ev(9)]]
    assert [e.time.second for e in merge_partitions(streams)] == [0, 1, 2, 5, 9]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.one_of(st.none(), st.integers(-20, 100))), max_size=40
    ),
    st.lists(st.integers(0, 100), max_size=5),
)
def test_label_join_reveals_each_label_at_its_own_time(rows, orphan_times):
    """rows: (event time, label time or None = never labelled). simulate_qa's rule: an answer
    due at t comes before a question at t; a label that came before its event right after it."""
    events = sorted((ev(t, i=k, key=k) for k, (t, _) in enumerate(rows)), key=lambda e: e.time)
    labels = sorted(
        [ev(t + lab, key=k, y=k % 2) for k, (t, lab) in enumerate(rows) if lab is not None]
        + [ev(t, key=f"orphan{j}", y=1) for j, t in enumerate(orphan_times)],
        key=lambda e: e.time,
    )
    join = LabelJoin()
    out = list(join(events, labels))
    questions = [(seq, e) for seq, e, y in out if y is None]
    assert [e.key for _, e in questions] == [e.key for e in events] and [
        s for s, _ in questions
    ] == list(range(len(events)))
    asked: dict = {}
    for n, (seq, e, y) in enumerate(out):
        if y is None:
            asked[e.key] = n
            continue
        t, lab = rows[e.key]
        assert y == e.key % 2 and e.key in asked and seq == out[asked[e.key]][0]
        label_time = T0 + timedelta(seconds=t + lab)
        if (
            lab > 0
        ):  # revealed at its own time: after every question before it, before any at or after it
            assert all(q.time <= label_time for _, q, yy in out[:n] if yy is None)
            assert all(q.time >= label_time for _, q, yy in out[n:] if yy is None)
        else:  # known before its event: right after the question
            assert asked[e.key] == n - 1
    assert sum(1 for *_, y in out if y is not None) == sum(lab is not None for _, lab in rows)
    assert join.n_orphan_labels == len(orphan_times)


def kcat(topic, partition, offset, ts_ms, payload) -> str:
    return (
        json.dumps(
            {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "tstype": "create",
                "ts": ts_ms,
                "broker": 0,
                "key": None,
                "payload": json.dumps(payload),
            }
        )
        + "\n"
    )


@pytest.mark.parametrize("delay_s", [0, 45])
def test_parity_with_river_progressive_val_score_on_the_time_ordered_events(tmp_path, db, delay_s):
    """A dump of 3 partitions in kcat's interleaved runs, with labels in another dump arriving
    ``delay_s`` after each event: the workbench's every prediction and final metrics equal
    River's progressive_val_score(moment=..., delay=...) on the events in time order."""
    import random

    rng = random.Random(3)
    rows = []
    t = 1_767_225_600_000
    for i in range(1500):
        t += rng.randint(1, 4000)  # distinct times: ties would be broken by arrival
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)}
        rows.append((i, t, x, x["a"] + 0.5 * x["b"] + rng.gauss(0, 0.5) > 0))
    events_lines, labels_lines = [], []
    for p in range(3):  # kcat writes a partition's run, then another's
        part = [r for r in rows if r[0] % 3 == p]
        for run_start in range(0, len(part), 120):
            for off, (i, t, x, _) in enumerate(part[run_start : run_start + 120], start=run_start):
                events_lines.append((run_start, p, kcat("apps", p, off, t, {"id": i, **x})))
    events_lines.sort(key=lambda item: (item[0], item[1]))
    for off, (i, t, _, y) in enumerate(rows):
        labels_lines.append(kcat("labels", 0, off, t + delay_s * 1000, {"id": i, "y": y}))
    (tmp_path / "apps.jsonl").write_text("".join(line for *_, line in events_lines))
    (tmp_path / "labels.jsonl").write_text("".join(labels_lines))
    run = wb.run(
        {
            "name": "parity",
            "source": {
                "kind": "kafka_dump",
                "path": str(tmp_path / "apps.jsonl"),
                "id": "id",
                "labels": {"path": str(tmp_path / "labels.jsonl"), "id": "id", "target": "y"},
            },
            "learners": [
                {
                    "name": "lr",
                    "model": "river.linear_model.LogisticRegression",
                    "preprocessing": ["river.preprocessing.StandardScaler"],
                }
            ],
            "metrics": ["accuracy", "log_loss"],
        },
        db=db,
        progress=False,
    )
    data = [
        ({**x, "time": T0 + timedelta(milliseconds=t - 1_767_225_600_000)}, y)
        for _, t, x, y in rows
    ]
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    from river import compose

    model = compose.Discard("time") | model
    river_metrics = metrics.Accuracy() + metrics.LogLoss()
    evaluate.progressive_val_score(
        data, model, river_metrics, moment="time", delay=timedelta(seconds=delay_s)
    )
    summary = run.summary().iloc[0]
    assert summary["accuracy"] == pytest.approx(river_metrics[0].get(), abs=1e-12)
    assert summary["log_loss"] == pytest.approx(river_metrics[1].get(), abs=1e-12)
    assert run.info["n_late"] == 0 and run.info["n_unlabelled"] == 0
    steps = run.steps("lr").sort_values("seq")
    assert len(steps) == 1500 and list(steps["event_time"]) == sorted(steps["event_time"])


def test_mini_batches_feed_learn_many_and_match_batch_semantics(db):
    from river import datasets

    rows = list(datasets.Phishing())
    config = {
        "name": "mb",
        "learners": [
            {
                "name": "lr",
                "model": "river.linear_model.LogisticRegression",
                "preprocessing": ["river.preprocessing.StandardScaler"],
            },
            {"name": "tree", "model": "river.tree.HoeffdingTreeClassifier"},
        ],  # no *_many: one at a time
        "replay": {"batch_size": 50},
        "metrics": ["accuracy"],
    }
    run = wb.run(config, db=db, progress=False, stream=rows)
    import pandas as pd

    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    correct = 0
    for start in range(0, len(rows), 50):
        X = pd.DataFrame([x for x, _ in rows[start : start + 50]])
        y = pd.Series([y for _, y in rows[start : start + 50]])
        correct += int((model.predict_proba_many(X).idxmax(axis=1) == y).sum())
        model.learn_many(X, y)
    summary = run.summary().set_index("learner")
    steps = run.steps("lr")
    assert len(steps) == len(rows) and steps["y_true"].notna().all()
    assert steps["correct"].sum() == correct
    single = tree.HoeffdingTreeClassifier()
    tree_metric = evaluate.progressive_val_score(rows, single, metrics.Accuracy())
    assert summary.loc["tree", "accuracy"] == pytest.approx(tree_metric.get())


def test_batch_size_with_delayed_labels_is_a_config_error(db):
    with pytest.raises(wb.ConfigError, match="replay.batch_size"):
        wb.run(
            {
                "name": "x",
                "source": {"kind": "dataset", "name": "Phishing"},
                "replay": {"batch_size": 8, "label_delay": 5},
                "learners": [{"model": "river.linear_model.LogisticRegression"}],
            },
            db=db,
            progress=False,
        )


def test_mini_batches_are_cut_by_size_and_timeout():
    assert [len(b) for b in mini_batches(range(7), 3)] == [3, 3, 1]
    assert [len(b) for b in mini_batches(range(5), 100, timeout=1e-9)] == [1, 1, 1, 1, 1]


def test_pacing_follows_event_time_times_speed():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    events = [ev(0), ev(10), ev(30)]
    out = list(paced(events, speed=10, sleep=sleep, clock=lambda: now[0]))
    assert out == events and slept == pytest.approx([1.0, 2.0])
