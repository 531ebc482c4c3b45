"""Live topics on a real Kafka-protocol broker on loopback: produce, consume, record, replay."""

from __future__ import annotations

import json
import random
import sys

import pytest
from confluent_kafka import Producer
from kafka_mock import MockCluster

import workbench as wb
from workbench.cli import main as cli_main
from workbench.events import STEP_COLUMNS

T0 = 1_767_225_600_000


@pytest.fixture
def kafka():
    with MockCluster() as cluster:
        yield cluster


def produce(kafka, n: int = 600) -> None:
    kafka.create_topic("apps", 3)
    kafka.create_topic("labels", 2)
    rng = random.Random(5)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(n):
        x = {"id": i, "a": rng.gauss(0, 1), "b": rng.choice(["u", "v"])}
        producer.produce("apps", json.dumps(x).encode(), partition=i % 3, timestamp=T0 + i * 1000)
        if i % 10:  # every tenth never labelled
            y = x["a"] > 0
            producer.produce(
                "labels",
                json.dumps({"id": i, "y": y}).encode(),
                partition=i % 2,
                timestamp=T0 + i * 1000 + rng.randint(0, 20_000),
            )
    producer.produce("apps", b"not json", partition=1, timestamp=T0 + 5)
    producer.produce(
        "labels", json.dumps({"id": "nobody", "y": True}).encode(), partition=0, timestamp=T0 + 7
    )
    assert producer.flush(10) == 0


def config(source: dict) -> dict:
    return {
        "name": "live",
        "source": {"id": "id", "task": "binary", **source},
        "replay": {"allowed_lateness": "30s"},
        "learners": [{"name": "tree", "model": "river.tree.HoeffdingTreeClassifier"}],
        "metrics": ["accuracy"],
    }


def test_live_topics_consumed_recorded_and_replayed_give_identical_steps(
    kafka, tmp_path, db, capsys
):
    produce(kafka)
    live = wb.run(
        config(
            {
                "kind": "kafka",
                "bootstrap_servers": kafka.bootstrap,
                "topics": ["apps"],
                "labels": {"topic": "labels", "id": "id", "target": "y"},
            }
        ),
        db=db,
        progress=False,
    )
    info = live.info
    assert (
        info["n_events"],
        info["n_dead_letters"],
        info["n_unlabelled"],
        info["n_orphan_labels"],
    ) == (600, 1, 60, 1)

    for topic in ("apps", "labels"):
        assert (
            cli_main(
                [
                    "record",
                    "--bootstrap-servers",
                    kafka.bootstrap,
                    "--topic",
                    topic,
                    "--out",
                    str(tmp_path / f"{topic}.kcat.jsonl"),
                ]
            )
            == 0
        )
    assert "recorded 601 messages of apps" in capsys.readouterr().out
    dump = wb.run(
        config(
            {
                "kind": "kafka_dump",
                "path": str(tmp_path / "apps.kcat.jsonl"),
                "labels": {"path": str(tmp_path / "labels.kcat.jsonl"), "id": "id", "target": "y"},
            }
        ),
        db=db,
        progress=False,
    )
    columns = [c for c in STEP_COLUMNS if not c.endswith("_ns")]  # all but the timings
    live_steps = live.steps().sort_values("seq")[columns].reset_index(drop=True)
    dump_steps = dump.steps().sort_values("seq")[columns].reset_index(drop=True)
    assert len(live_steps) == 600
    assert live_steps.equals(dump_steps)
    assert {
        k: dump.info[k] for k in ("n_events", "n_dead_letters", "n_unlabelled", "n_orphan_labels")
    } == {k: info[k] for k in ("n_events", "n_dead_letters", "n_unlabelled", "n_orphan_labels")}


def test_stop_conditions_and_start_offsets(kafka, db):
    produce(kafka, n=90)
    base = {
        "kind": "kafka",
        "bootstrap_servers": kafka.bootstrap,
        "topics": ["apps"],
        "target": "a",
    }
    cfg = config({**base, "stop": {"max_events": 40}})
    cfg["source"]["task"] = "regression"
    cfg["learners"] = [
        {
            "name": "reg",
            "model": "river.tree.HoeffdingTreeRegressor",
            "params": {"leaf_prediction": "mean"},
        }
    ]
    cfg["metrics"] = ["mae"]
    assert wb.run(cfg, db=db, progress=False).info["n_events"] <= 40
    cfg["source"]["start"] = {0: 20, 1: 20, 2: 20}  # skip the first 20 of each partition
    run = wb.run(
        cfg | {"source": {**cfg["source"], "stop": {"end_offsets": True}}}, db=db, progress=False
    )
    assert run.info["n_events"] == 90 - 60
    cfg["source"]["stop"] = {"end_offsets": False, "idle_timeout": 0.5}
    assert wb.run(cfg, db=db, progress=False).info["n_events"] == 30


def test_a_group_resumes_where_it_left_off(kafka, db):
    produce(kafka, n=30)
    cfg = config({"kind": "kafka", "bootstrap_servers": kafka.bootstrap, "topics": ["apps"],
                  "target": "a", "group_id": "team"})
    cfg["source"]["task"] = "regression"
    cfg["learners"] = [{"name": "mean", "model": "river.dummy.StatisticRegressor",
                        "params": {"statistic": {"model": "river.stats.Mean"}}}]
    cfg["metrics"] = ["mae"]
    assert wb.run(cfg, db=db, progress=False).info["n_events"] == 30
    assert wb.run(cfg, db=db, progress=False).info["n_events"] == 0  # its offsets were committed


def test_an_unknown_topic_is_an_error_naming_it(kafka, db):
    with pytest.raises(wb.SourceError, match="'nope'"):
        wb.run(
            config(
                {
                    "kind": "kafka",
                    "bootstrap_servers": kafka.bootstrap,
                    "topics": ["nope"],
                    "target": "y",
                }
            ),
            db=db,
            progress=False,
        )


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
