"""The production loop on loopback: a Kafka-protocol broker, Redis, the update service and two
replicas as processes of their own."""

from __future__ import annotations

import copy
import json
import math
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from kafka_mock import MockCluster
from production import Part, Producer, Redis, deploy_config, free_port, make_bundle, stream, wait_for
from serving import call

from workbench.errors import BundleError, ConfigError
from workbench.export import load
from workbench.production import config as deploy_cfg
from workbench.production.alerts import write_rules
from workbench.production.modelstore import DirectoryStore, StoreError, open_store
from workbench.store import Store
from workbench.versioning import snapshot

N = 300


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture
def redis_server():
    server = Redis()
    yield server
    server.stop()


@pytest.fixture
def kafka():
    with MockCluster() as cluster:
        for topic in ("events", "labels", "predictions"):
            cluster.create_topic(topic, 1)
        yield cluster


def reference(bundle: Path, labelled: list[tuple], n: int):
    """The bundle's model after learning the first ``n`` labelled events, one at a time."""
    model = copy.deepcopy(load(bundle).model)
    for _, x, y in labelled[:n]:
        model.learn_one(x, y)
    return model


def as_json(proba: dict) -> dict:
    """Probabilities keyed by the 0/1 label, whether a model says False/True (River's logistic
    regression) or the service answers in the stream's own labels."""
    return {"1" if str(k).lower() in ("1", "true") else "0": v for k, v in proba.items()}


def metric(url: str, name: str, labels: str = "") -> float | None:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + (("{" + labels + "}") if labels else " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def meta_of(store_url: str, version: int) -> dict:
    store = open_store(store_url)
    try:
        return store.get(version)[0]
    finally:
        store.close()


def assert_served_by(url: str, bundle: Path, data: list, store_url: str, probes: list) -> int:
    """Every probe answered by arm a equals the reference model at the version it names."""
    versions = set()
    for rid, x, _ in probes:
        status, answer = call(url + "/predict", {"features": x, "id": rid})
        assert status == 200, answer
        if answer["arm"] != "a":
            assert as_json(answer["proba"]) == pytest.approx(
                as_json(load(bundle).model.predict_proba_one(x)), abs=1e-12
            )
            continue
        n = meta_of(store_url, answer["version"])["n_updates"]
        expected = reference(bundle, data, n).predict_proba_one(x)
        assert as_json(expected) == pytest.approx(as_json(answer["proba"]), abs=1e-12)
        versions.add(answer["version"])
    assert len(versions) == 1, f"{url} answered with several versions at rest: {versions}"
    return versions.pop()


def test_end_to_end_on_loopback(bundle, redis_server, kafka, tmp_path):
    """Events and labels train the update service; two replicas serve each version it
    publishes, exactly as River trained on the same labels would; a rollback reaches both;
    served predictions come back joined with their labels, per version and arm."""
    port, metrics_port = free_port(), free_port()
    while port + 1 == metrics_port:
        metrics_port = free_port()
    db = tmp_path / "live.duckdb"
    cfg = deploy_config(
        bundle,
        kafka.bootstrap,
        redis_server.url,
        db,
        replicas=2,
        port=port,
        metrics_port=metrics_port,
        ab={"b": str(bundle), "split": 0.3},
    )
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(cfg))
    urls = [f"http://127.0.0.1:{port + i}" for i in range(2)]
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    deploy = Part("deploy", str(tmp_path / "deploy.yaml"), log=tmp_path / "deploy.log")
    try:
        wait_for(lambda: all(_up(u) for u in urls), 120, 0.2, "both replicas")
        data = stream(N)
        probes = stream(20, seed=99, start=10_000)
        producer = Producer(kafka.bootstrap)
        for i, x, _ in data:
            producer.event(i, x)
        producer.producer.produce("events", b'{"id": 1, "salary": ')  # a bad record: a dead letter
        producer.flush()
        wait_for(lambda: metric(metrics_url, "workbench_consumer_lag", 'topic="events"') == 0, 60, 0.2, "events")
        # served predictions for the first half, before their labels come
        for i, x, _ in data[:150]:
            assert call(urls[i % 2] + "/predict", {"features": x, "id": i})[0] == 200
        for half in (data[:150], data[150:]):
            for i, _, y in half:
                producer.label(i, y)
            producer.flush()
            n = half[-1][0] + 1
            wait_for(
                lambda n=n: meta_of(redis_server.url, _current(redis_server.url))["n_updates"] == n,
                60,
                0.1,
                f"a version with {n} updates",
            )
            current = _current(redis_server.url)
            wait_for(lambda c=current: all(_serving(u) == c for u in urls), 10, 0.02, "both replicas on it")
            for url in urls:
                assert assert_served_by(url, bundle, data, redis_server.url, probes) == current

        # rollback in the store: both replicas serve the version before, then its re-publication
        before = current
        assert (
            subprocess.run(
                [*_cli(), "models", "rollback", "--store", redis_server.url], capture_output=True, text=True, check=True
            ).returncode
            == 0
        )
        republished = wait_for(
            lambda: _current(redis_server.url) if _current(redis_server.url) > before else None,
            30,
            0.05,
            "the learner to adopt the rollback",
        )
        meta = meta_of(redis_server.url, republished)
        assert meta["reason"] == "rollback" and meta["n_updates"] == N
        wait_for(lambda: all(_serving(u) == republished for u in urls), 10, 0.02, "both replicas rolled back")
        earlier = meta_of(redis_server.url, republished - 2)  # the version rolled back to
        for url in urls:
            for rid, x, _ in probes:
                answer = call(url + "/predict", {"features": x, "id": rid})[1]
                if answer["arm"] == "a":
                    expected = reference(bundle, data, earlier["n_updates"]).predict_proba_one(x)
                    assert as_json(expected) == pytest.approx(as_json(answer["proba"]))
        assert metric(metrics_url, "workbench_updates_total") == N
    finally:
        assert deploy.stop(signal.SIGTERM, 60) == 0, (tmp_path / "deploy.log").read_text()[-3000:]

    store = Store(db)
    runs = store.runs()
    assert list(runs.status) == ["stopped"]
    run_id = runs.run_id.iloc[0]
    steps = store.steps(run_id)
    assert steps.y_true.notna().sum() == N  # every label learned once
    assert set(store.rollbacks(run_id).reason) == {"manual"}
    dead = store.dead_letters(run_id)
    assert dead.origin.tolist() == [f"events/0/{N}"] and "not valid JSON" in dead.reason.iloc[0]
    served = store.served(run_id)
    probed = served.request_id.astype(int) >= 10_000
    assert served[probed].y_true.isna().all()  # the probes never got a label
    served = served[~probed]
    answered = served[served.answered]
    assert len(answered) == 150 and answered.y_true.notna().all()
    assert set(served.arm) == {"a", "b"} and len(served) == 300  # each request, both arms (one in the shadow)
    b_share = (answered.arm == "b").mean()
    assert 0.15 < b_share < 0.45, b_share  # split: 0.3, sticky by the hash of the id
    summary = store.served_metrics(run_id)
    first = summary[(summary.arm == "a") & (summary.version == 1)].iloc[0]  # served before any label
    assert first.labelled == 150 and first.unlabelled_share == 0 and 0.3 < first.accuracy < 1
    assert (summary[summary.version > 1].unlabelled_share == 1).all()  # later: only the probes
    verdict = store.served_ab(run_id, window=25).iloc[0]
    assert verdict.n == 150 and 0 <= verdict.mcnemar_pvalue <= 1 and "a" in verdict.verdict


def test_kill_9_loses_no_acknowledged_label(bundle, kafka, tmp_path):
    """kill -9 of the update service and of a replica: the restarted learner resumes from its
    last published version and committed offsets and learns every label exactly once; the
    restarted replica serves the current version."""
    store_dir = tmp_path / "store"
    cfg = deploy_config(
        bundle, kafka.bootstrap, str(store_dir), tmp_path / "live.duckdb", checkpoints={"every": 40, "seconds": 0.3}
    )
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(cfg))
    data = stream(N, seed=5)
    producer = Producer(kafka.bootstrap)
    for i, x, _ in data:
        producer.event(i, x)
    for i, _, y in data[:200]:
        producer.label(i, y)
    producer.flush()  # acknowledged by the broker
    log = tmp_path / "parts.log"
    learner = Part("learner", str(tmp_path / "deploy.yaml"), log=log)
    port = free_port()
    replica = Part("serve", "--store", str(store_dir), "--port", str(port), log=log)
    store = DirectoryStore(store_dir)
    try:
        wait_for(lambda: store.current() and store.get(store.current())[0]["n_updates"] >= 80, 90, 0.01, "updates")
        learner.kill()
        committed = store.get(store.current())[0]["n_updates"]
        assert committed < N
        for i, _, y in data[200:]:
            producer.label(i, y)
        producer.flush()
        learner = Part("learner", str(tmp_path / "deploy.yaml"), log=log)
        wait_for(lambda: store.get(store.current())[0]["n_updates"] == N, 90, 0.1, "every label learned")
        wait_for(lambda: _up(f"http://127.0.0.1:{port}"), 60, 0.2, "the replica")
        replica.kill()
        replica = Part("serve", "--store", str(store_dir), "--port", str(port), log=log)
        wait_for(lambda: _up(f"http://127.0.0.1:{port}"), 60, 0.2, "the restarted replica")
        assert _serving(f"http://127.0.0.1:{port}") == store.current()
        x = data[0][1]
        answer = call(f"http://127.0.0.1:{port}/predict", {"features": x})[1]
        expected = reference(bundle, data, N).predict_proba_one(x)  # each label once, in order
        assert as_json(expected) == pytest.approx(as_json(answer["proba"]), abs=1e-12)
        # the group's committed offsets are the published version's positions: every label read
        learner.stop()
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "workbench-learner"})
        committed = consumer.committed([TopicPartition("labels", 0), TopicPartition("events", 0)], timeout=10)
        consumer.close()
        assert [tp.offset for tp in committed] == [N, N]
    finally:
        learner.stop()
        replica.stop()
    runs = Store(tmp_path / "live.duckdb").runs()
    # the restarted service's run ended cleanly; the killed one, where its row survived the kill, is crashed
    assert runs.status.iloc[-1] == "stopped" and set(runs.status.iloc[:-1]) <= {"crashed"}


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "workbench.cli"]


def _up(url: str) -> bool:
    try:
        return call(url + "/health")[0] == 200
    except OSError:
        return False


def _serving(url: str) -> int:
    return call(url + "/health")[1]["version"]


def _current(url: str) -> int:
    store = open_store(url)
    try:
        return store.current()
    finally:
        store.close()


# -- the model store ------------------------------------------------------------------------------
@pytest.fixture(params=["directory", "redis"])
def store(request, tmp_path):
    if request.param == "directory":
        yield open_store(tmp_path / "store")
        return
    server = Redis()
    store = open_store(server.url + "?prefix=t")
    yield store
    store.close()
    server.stop()


def _publish(store, version: int, expect, n: int = 0, reason: str = "scheduled") -> bool:
    cp = snapshot("lr", {"weights": version}, version, n, {"accuracy": 0.5}, reason)
    return store.publish(
        {"version": version, "reason": reason, "n_updates": n, "sha256": cp.sha256, "metrics": cp.metrics},
        cp.state,
        b"resume",
        expect,
    )


def test_store_publishes_conditionally_and_rolls_back(store):
    assert store.current() is None and store.resume() is None
    assert _publish(store, 1, None)
    assert not _publish(store, 2, None)  # a publisher that has not seen version 1 changes nothing
    assert store.current() == 1
    assert _publish(store, 2, 1, n=10)
    assert [m["version"] for m in store.versions()] == [1, 2]
    assert store.load(2)[1] == {"weights": 2}
    assert store.resume()[0]["version"] == 2
    assert store.rollback() == 1 and store.current() == 1
    assert not _publish(store, 3, 2)  # the rollback is not undone by a publish that missed it
    with pytest.raises(StoreError, match="no version 7"):
        store.rollback(7)
    with pytest.raises(StoreError, match="no version before 1"):
        store.rollback()


def test_store_announces_each_version(store):
    _publish(store, 1, None)
    assert store.wait(1, 0.2) == 1  # nothing new: returns after the timeout
    import threading

    threading.Timer(0.2, lambda: _publish(store, 2, 1)).start()
    assert store.wait(1, 10) == 2


def test_store_refuses_unsigned_or_wrongly_signed_versions(store, monkeypatch):
    key = "WORKBENCH_SIGNING_KEY"
    monkeypatch.delenv(key)
    _publish(store, 1, None)  # published without a key: unsigned
    assert store.load(1, trust_unsigned=True)[1] == {"weights": 1}
    with pytest.raises(BundleError, match="not signed"):
        store.load(1)
    monkeypatch.setenv(key, "k" * 40)
    with pytest.raises(BundleError, match="not signed.*--trust-unsigned"):
        store.load(1)
    _publish(store, 2, 1)
    assert store.load(2)[1] == {"weights": 2}
    monkeypatch.setenv(key, "j" * 40)
    with pytest.raises(BundleError, match="does not match"):
        store.load(2)
    with pytest.raises(BundleError, match="does not match"):
        store.load(2, trust_unsigned=True)  # trusting unsigned versions never accepts a wrong signature
    monkeypatch.delenv(key)
    with pytest.raises(BundleError, match="no signing key here"):
        store.load(2)


def test_directory_store_checks_the_hash(tmp_path):
    store = DirectoryStore(tmp_path / "store")
    _publish(store, 1, None)
    path = tmp_path / "store" / "versions" / "v000001.pkl"
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ValueError, match="SHA-256"):
        store.load(1)


# -- config, alerts --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, key",
    [
        ({"replicas": 0}, "deploy.replicas"),
        ({"colour": "red"}, "deploy.colour"),
        ({"kafka": {"bootstrap_servers": "x"}}, "deploy.kafka.events"),
        ({"ab": {"b": 2, "split": 1.5}}, "deploy.ab.split"),
        ({"checkpoints": {"seconds": -1}}, "deploy.checkpoints.seconds"),
        ({"bundle": "/nonexistent"}, "deploy.bundle"),
    ],
)
def test_deploy_config_errors_name_the_key(bundle, tmp_path, change, key):
    raw = deploy_config(bundle, "127.0.0.1:9", str(tmp_path / "s"), tmp_path / "db")
    raw["deploy"].update(change)
    with pytest.raises(ConfigError) as err:
        deploy_cfg.load(raw)
    assert err.value.key == key


def test_deploy_config_round_trips(bundle, tmp_path):
    raw = deploy_config(bundle, "127.0.0.1:9", str(tmp_path / "s"), tmp_path / "db", ab={"b": 3, "shadow": True})
    cfg = deploy_cfg.load(raw)
    assert deploy_cfg.load(cfg.to_dict()) == cfg


def test_alert_rules_pass_promtool(tmp_path):
    rules = write_rules(tmp_path / "alerts.yml")
    check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "4 rules found" in check.stdout
    # the served-below-baseline alert fires on a served accuracy under the baseline, not above it
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'workbench_served_accuracy{arm="a"}', "values": "0.6x5"},
                    {"series": "workbench_baseline_accuracy", "values": "0.8x5"},
                    {"series": 'workbench_served_accuracy{arm="b"}', "values": "0.9x5"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "3m",
                        "alertname": "WorkbenchServedBelowBaseline",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "action": "rollback"},
                                "exp_annotations": {
                                    "summary": "Served accuracy is below the batch baseline: "
                                    "the update service rolls back"
                                },
                            }
                        ],
                    },
                    {"eval_time": "3m", "alertname": "WorkbenchDriftDetected", "exp_alerts": []},
                ],
            },
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'workbench_served_accuracy{arm="a"}', "values": "0.78x5"},
                    {"series": "workbench_baseline_accuracy", "values": "0.8x5"},
                ],
                "alert_rule_test": [{"eval_time": "3m", "alertname": "WorkbenchServedBelowBaseline", "exp_alerts": []}],
            },
        ],
    }
    (tmp_path / "tests.yml").write_text(json.dumps(tests))
    run = subprocess.run(["promtool", "test", "rules", str(tmp_path / "tests.yml")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# -- replicas, feedback, mini-batches (in process) --------------------------------------------------
@pytest.fixture
def replica_store(bundle, tmp_path):
    store = DirectoryStore(tmp_path / "store")
    store.put_bundle(bundle)
    state = (bundle / "model.pkl").read_bytes()
    sha = load(bundle).manifest["files"]["model.pkl"]
    store.publish({"version": 1, "reason": "bundle", "n_updates": 0, "sha256": sha}, state, None, None)
    return store


def test_replica_answers_with_id_version_and_a_sticky_arm(bundle, replica_store):
    from workbench.export.service import Refusal
    from workbench.production.config import ABConfig
    from workbench.production.replica import Replica, bucket

    replica = Replica(replica_store.url, ab=ABConfig(str(bundle), split=0.5))
    x = stream(1)[0][1]
    try:
        answers = [replica.predict({"features": x, "id": f"user-{i}"}) for i in range(200)]
        assert all(a["version"] == 1 and a["id"] == f"user-{i}" for i, a in enumerate(answers))
        arms = [a["arm"] for a in answers]
        assert arms == ["b" if bucket(f"user-{i}") < 0.5 else "a" for i in range(200)]
        assert 60 < arms.count("b") < 140
        again = [replica.predict({"features": x, "id": f"user-{i}"})["arm"] for i in range(200)]
        assert again == arms  # sticky: a key meets the same arm every time
        keyed = replica.predict({"features": x, "id": "r1", "key": "user-3"})
        assert keyed["arm"] == arms[3] and keyed["id"] == "r1"
        batch = replica.predict({"instances": [x, x], "ids": ["p", 7]})
        assert batch["ids"] == ["p", "7"] and len(batch["arms"]) == 2 and batch["versions"] == [1, 1]
        assert len(replica.predict({"features": x})["id"]) == 32  # a fresh id when none is given
        for body, field in (
            ({"features": x, "id": [1]}, "id"),
            ({"features": x, "id": 1.5}, "id"),
            ({"instances": [x, x], "ids": ["only one"]}, "ids"),
            ({"features": x, "id": "a", "colour": 1}, "colour"),
        ):
            with pytest.raises(Refusal) as err:
                replica.predict(body)
            assert err.value.status == 422 and field in json.dumps(err.value.detail)
    finally:
        replica.close()


def test_feedback_joins_either_order_and_its_guard_trips():
    from workbench.production.feedback import Feedback

    class Quiet:
        def served(self, *_):
            pass

        def unlabelled(self, *_):
            pass

    def served(rid, arm, pred, p=0.9):
        rec = {
            "id": rid,
            "arm": arm,
            "version": 3,
            "prediction": pred,
            "proba": [[pred, p], [1 - pred, 1 - p]],
            "answered": arm == "a",
            "served_at": 1_000,
        }
        return json.dumps(rec).encode()

    fb = Feedback(True, Quiet(), window=10, drop=0.2, reference=0.9)
    fb.served(served("1", "a", 1))
    fb.label("1", 1, 2_000)  # label after its prediction
    fb.label("2", 0, 3_000)
    fb.served(served("2", "a", 1))  # prediction after its label
    fb.served(b"not json")
    fb.served(served("3", "a", 0))  # never labelled
    rows = fb.take()
    assert [(r[0], r[6]) for r in rows] == [("1", True), ("2", False)]
    assert rows[0][7] == pytest.approx(-math.log(0.9)) and rows[0][10] == 1.0  # loss, label delay (s)
    assert [r[0] for r in fb.take(final=True)] == ["3"]
    assert not fb.breached()  # a window not yet full
    for i in range(10):
        fb.served(served(f"b{i}", "b", 1))
        fb.served(served(f"b{i}", "a", 0))
        fb.label(f"b{i}", 1, 5_000)
    assert fb.breached()  # arm a at 0.0 against arm b at 1.0
    fb.restart()
    assert not fb.breached()


def test_mini_batches_learn_many_then_score_each(bundle):
    import pandas as pd

    from workbench.events import Event
    from workbench.production.learner import _answer_many
    from workbench.runner import make_arm

    model = load(bundle).model
    twin = copy.deepcopy(model)
    arm = make_arm("lr", model, "binary", ["accuracy"])
    data = stream(32)
    events = [Event(x, None, None, i) for i, x, _ in data]
    for i, ev in enumerate(events):
        arm.ask(i, ev)
    before = [twin.predict_proba_one(ev.x) for ev in events]
    _answer_many(arm, [(i, ev, y, None) for (i, ev), (_, _, y) in zip(enumerate(events), data, strict=True)])
    twin.learn_many(pd.DataFrame([x for _, x, _ in data]), pd.Series([y for _, _, y in data]))
    probe = stream(1, seed=4)[0][1]
    assert arm.model.predict_proba_one(probe) == twin.predict_proba_one(probe)
    rows = arm.take().rows
    assert [r[0] for r in rows] == list(range(32)) and all(r[9] == arm.version for r in rows)
    assert [r[4] for r in rows] == [max(p.values()) for p in before]  # scored what was predicted before


def test_deploy_refuses_a_bad_config_before_starting_anything(bundle, tmp_path, capsys):
    from workbench.cli import main

    raw = deploy_config(bundle, "127.0.0.1:9", str(tmp_path / "s"), tmp_path / "db")
    raw["deploy"]["replicas"] = -1
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(raw))
    assert main(["deploy", str(tmp_path / "deploy.yaml")]) == 2
    assert "deploy.replicas" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_models_command_lists_and_rolls_back(replica_store, capsys):
    from workbench.cli import main

    state = replica_store.get(1)[1]
    replica_store.publish(
        {
            "version": 2,
            "reason": "scheduled",
            "n_updates": 100,
            "sha256": replica_store.get(1)[0]["sha256"],
            "metrics": {"accuracy": 0.8},
        },
        state,
        None,
        1,
    )
    assert main(["models", "versions", "--store", replica_store.url]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[-1].startswith("* v2") and "accuracy 0.8000" in listed[-1]
    assert main(["models", "rollback", "--store", replica_store.url]) == 0
    assert replica_store.current() == 1
    assert main(["models", "rollback", "--store", replica_store.url]) == 2
    assert "no version before 1" in capsys.readouterr().err
