"""A served model cannot be poisoned or fail unseen: a failing batch changes nothing, a model
that stops predicting shows on /health, every answer is counted by status, and deeply nested
bodies are refused with 422."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path

import pytest
from serving import TOKEN, Server, call, config, events, flaky_bundle

import workbench as wb

TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture(scope="module")
def flaky(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("poison")
    db = folder / "runs.duckdb"
    run = wb.run(config(300), db=db, progress=False)
    return flaky_bundle(db, run.id, folder / "bundle")


@pytest.fixture
def server(flaky, tmp_path):
    server = Server(flaky, "--state-dir", str(tmp_path / "state"), env={"PYTHONPATH": TESTS})
    yield server
    server.stop()


def counted(url: str) -> dict[tuple[str, str], float]:
    text = call(url + "/metrics")[1]
    found = re.findall(r'workbench_requests_total\{endpoint="(\w+)",status="(\d+)"\} ([\d.]+)', text)
    return {(endpoint, status): float(n) for endpoint, status, n in found}


def test_a_batch_the_model_fails_on_changes_nothing(server):
    good = [ev.x for ev in events(3)]
    bad = {**good[0], "salary": -1}
    probe = good[1]
    # learnt before: the model to come back to is not the bundle's
    assert call(server.url + "/learn", {"instances": good[:2], "labels": [1, 1]}, token=TOKEN)[0] == 200
    before = call(server.url + "/predict", {"features": probe})[1]
    status, answer = call(server.url + "/learn", {"instances": [*good, bad], "labels": [0, 1, 0, 1]}, token=TOKEN)
    assert status == 500
    assert answer["detail"] == (
        "the model failed to learn instance 3 of 4 (ValueError: salary -1 breaks this model); "
        "nothing of this request was applied"
    )
    assert call(server.url + "/health")[1]["n_updates"] == 2
    assert call(server.url + "/predict", {"features": probe})[1] == before  # the model as it was
    status, answer = call(server.url + "/learn", {"instances": good, "labels": [0, 1, 0]}, token=TOKEN)
    assert status == 200 and answer["n_updates"] == 5
    assert counted(server.url)[("learn", "500")] == 1


def test_a_model_that_stops_predicting_shows_on_health_and_metrics(server):
    x = events(1)[0].x
    assert call(server.url + "/health")[1]["status"] == "ok"
    status, _ = call(server.url + "/learn", {"features": {**x, "salary": -2}, "label": 1}, token=TOKEN)
    assert status == 200  # a valid record: but this model breaks on it
    status, answer = call(server.url + "/predict", {"features": x})
    assert status == 500 and answer["detail"].startswith("internal error (RuntimeError)")
    status, health = call(server.url + "/health")
    assert status == 503 and health["detail"]["status"] == "failing"
    assert health["detail"]["error"] == "the model fails to predict: RuntimeError: this model was poisoned"
    # Rolling back to the bundle's version is the way out.
    assert call(server.url + "/rollback", {"version": 1}, token=TOKEN)[0] == 200
    assert call(server.url + "/health")[1]["status"] == "ok"
    assert call(server.url + "/predict", {"features": x})[0] == 200
    metrics = counted(server.url)
    assert metrics[("predict", "500")] == 1 and metrics[("health", "503")] == 1


def test_every_answer_is_counted_by_status(server):
    x = events(1)[0].x
    calls = [
        (("predict", "200"), dict(body={"features": x})),
        (("predict", "422"), dict(body={"features": {**x, "salary": "lots"}})),
        (("learn", "401"), dict(body={"features": x, "label": 1})),
        (("learn", "403"), dict(body={"features": x, "label": 1}, token="wrong")),
        (("learn", "422"), dict(body={"features": x, "label": "yes"}, token=TOKEN)),
        (("rollback", "404"), dict(body={"version": 99}, token=TOKEN)),
        (("other", "404"), dict(path="/nowhere")),
        (("other", "405"), dict(path="/predict", method="GET")),
    ]
    for expected, how in calls:
        path = how.pop("path", "/" + expected[0])
        status, answer = call(server.url + path, **how)
        assert str(status) == expected[1], (expected, answer)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:  # refused from its Content-Length
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Length", str(5 << 20))
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    metrics = counted(server.url)
    for expected in [*(e for e, _ in calls), ("predict", "413")]:
        assert metrics.get(expected) == 1, expected


@pytest.mark.parametrize("path", ["/predict", "/learn"])
def test_deeply_nested_bodies_get_422(server, path):
    for depth in (1_100, 100_000):
        raw = b'{"features": ' + b"[" * depth + b"]" * depth + b"}"
        status, answer = call(server.url + path, raw=raw, token=TOKEN)
        assert status == 422 and answer["detail"][0]["msg"].startswith("JSON nested too deeply")
    # Nesting orjson reads (under 1,024 levels) inside a feature: refused naming the feature.
    x = events(1)[0].x
    deep = {**x, "salary": [[[[[[[[[[0]]]]]]]]]]}
    label = {"label": 1} if path == "/learn" else {}
    status, answer = call(server.url + path, {"features": deep, **label}, token=TOKEN)
    assert status == 422
    assert answer["detail"][0] == {
        "loc": ["body", "features", "salary"],
        "msg": "expected a number, got an array",
        "type": "type_error",
    }
    others = json.dumps({k: v for k, v in x.items() if k != "salary"})[1:-1]
    head = '"label": 1, ' if label else ""
    raw = f'{{{head}"features": {{{others}, "salary": {"[" * 900}{"]" * 900}}}}}'.encode()
    status, answer = call(server.url + path, raw=raw, token=TOKEN)
    assert status == 422 and answer["detail"][0]["loc"] == ["body", "features", "salary"]
    assert counted(server.url).get((path.strip("/"), "500")) is None


def test_a_failure_after_a_checkpoint_comes_back_to_the_last_good_state(flaky, tmp_path, monkeypatch):
    """In process: the newest version is a checkpoint (its file maybe not written yet), and
    records were learnt after it."""
    from workbench.export.service import Refusal, Service

    monkeypatch.syspath_prepend(TESTS)
    service = Service(flaky, tmp_path / "state", checkpoint_every=2)
    try:
        xs = [ev.x for ev in events(3)]
        _, snapshot = service.learn({"instances": xs[:2], "labels": [1, 0]})
        assert snapshot is not None  # taken, not persisted: the state is only in memory
        service.learn({"features": xs[2], "label": 1})
        before = service.predict({"features": xs[0]})
        with pytest.raises(Refusal) as info:
            service.learn({"instances": [xs[1], {**xs[1], "salary": -1}], "labels": [1, 1]})
        assert info.value.status == 500
        assert service.predict({"features": xs[0]}) == before and service.n_updates == 3
    finally:
        service.close()
