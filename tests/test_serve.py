"""The service, as a client sees it: a real `workbench serve` on 127.0.0.1, stopped by each test."""

from __future__ import annotations

import http.client
import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from serving import AT, TOKEN, Server, call, events, free_port, run_with_mid_checkpoint

import workbench as wb
from workbench.export import load


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The lr learner of a run, exported at its mid-run checkpoint (version 1, taken at AT)."""
    folder = tmp_path_factory.mktemp("serve")
    db = folder / "runs.duckdb"
    rid = run_with_mid_checkpoint(db, folder / "prefix.duckdb")
    bundle = wb.export(rid, "lr", folder / "bundle", db=db, version=1)
    return db, rid, bundle


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    server = Server(exported[2], "--state-dir", str(tmp_path_factory.mktemp("state")))
    yield server
    server.stop()


def test_export_verify_serve_predict_matches_the_logged_predictions(exported, server):
    """Fed the run's stream from AT on (predict, then learn the label), the served model answers
    exactly what the workbench logged for version 1 — probabilities to the last bit."""
    db, rid, bundle = exported
    assert wb.verify(bundle, rid, db=db).ok
    logged = wb.connect(db).steps(rid, "lr").set_index("seq")
    stream = events()
    assert call(server.url + "/version")[1]["version"] == 1
    for seq in range(AT, AT + 150):
        x, y = stream[seq].x, stream[seq].y
        status, answer = call(server.url + "/predict", {"features": x})
        assert status == 200 and answer["version"] == 1
        assert json.dumps(answer["prediction"]) == logged.y_pred[seq]
        assert answer["proba"][json.dumps(answer["prediction"])] == logged.y_proba[seq]
        assert logged.model_version[seq] == 1
        status, learned = call(server.url + "/learn", {"features": x, "label": y}, token=TOKEN)
        assert status == 200 and learned["learned"] == 1
    # The batch endpoint answers as the single one does.
    batch = [ev.x for ev in stream[:20]]
    status, answer = call(server.url + "/predict", {"instances": batch})
    singles = [call(server.url + "/predict", {"features": x})[1] for x in batch]
    assert status == 200 and answer["predictions"] == [s["prediction"] for s in singles]
    assert answer["probas"] == [s["proba"] for s in singles]


def _x():
    return dict(events(5)[0].x)


@pytest.mark.parametrize(
    "body, field, message",
    [
        (
            {"features": {k: v for k, v in _x().items() if k != "age"}},
            ["body", "features", "age"],
            "missing feature",
        ),
        ({"features": {**_x(), "colour": 1}}, ["body", "features", "colour"], "extra feature"),
        (
            {"features": {**_x(), "salary": "high"}},
            ["body", "features", "salary"],
            'expected a number, got "high"',
        ),
        (
            {"features": {**_x(), "car": True}},
            ["body", "features", "car"],
            "expected a number, got true",
        ),
        (
            {"instances": [_x(), {**_x(), "loan": None}]},
            ["body", "instances", 1, "loan"],
            "missing feature",
        ),
        ({"instances": []}, ["body", "instances"], "expected a non-empty list"),
        ({"record": _x()}, ["body", "record"], "unknown field"),
    ],
)
def test_a_bad_request_gets_a_422_naming_the_field(server, body, field, message):
    status, answer = call(server.url + "/predict", body)
    assert status == 422
    assert answer["detail"][0]["loc"] == field and message in answer["detail"][0]["msg"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_by_name(server, literal):
    raw = (
        json.dumps({"features": _x()}).replace('"hvalue": ', f'"hvalue": {literal}, "x": ').encode()
    )
    raw = raw.replace(b', "x": ', b', "ignored": ').split(b', "ignored": ')[0] + b"}}"
    status, answer = call(server.url + "/predict", raw=raw)
    assert status == 422
    finite = [d for d in answer["detail"] if d["type"] == "finite_number"]
    assert finite and finite[0]["loc"] == ["body", "features", "hvalue"]


def test_invalid_json_and_oversized_bodies_are_refused(server):
    status, answer = call(server.url + "/predict", raw=b'{"features": ')
    assert status == 422 and answer["detail"][0]["msg"].startswith("invalid JSON")
    # Refused from its Content-Length, before a byte of it is read.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(5 << 20))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert (
            "body of 5,242,880 bytes is over the limit of 1,048,576"
            in json.loads(response.read())["detail"]
        )
    finally:
        conn.close()


def test_learn_and_rollback_need_the_token(server):
    body = {"features": _x(), "label": 1}
    for path, payload in (("/learn", body), ("/rollback", {})):
        status, answer = call(server.url + path, payload)
        assert status == 401 and "Authorization: Bearer" in answer["detail"]
        status, answer = call(server.url + path, payload, token="not-the-token")
        assert status == 403 and answer["detail"] == "wrong token"
    status, answer = call(server.url + "/learn", {**body, "label": None}, token=TOKEN)
    assert status == 422 and answer["detail"][0]["loc"] == ["body", "label"]
    assert call(server.url + "/predict", {"features": _x()})[0] == 200  # predict stays open


def test_docs_and_openapi_describe_the_bodies(server):
    status, spec = call(server.url + "/openapi.json")
    assert status == 200
    predict = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert set(predict["oneOf"][0]["properties"]["features"]["properties"]) == set(_x())
    assert {"/learn", "/rollback", "/health", "/version", "/versions", "/metrics"} <= set(
        spec["paths"]
    )
    status, html = call(server.url + "/docs")
    assert status == 200 and "swagger" in html.lower()


def test_rollback_serves_an_earlier_version_again(exported, tmp_path):
    bundle = load(exported[2])
    server = Server(
        exported[2],
        "--state-dir",
        str(tmp_path / "state"),
        "--checkpoint-every",
        "5",
        "--protect-predict",
    )
    try:
        stream = events()
        status, answer = call(server.url + "/predict", {"features": stream[0].x})
        assert status == 401 and "Authorization: Bearer" in answer["detail"]
        for ev in stream[:12]:
            assert (
                call(server.url + "/learn", {"features": ev.x, "label": ev.y}, token=TOKEN)[0]
                == 200
            )
        versions = call(server.url + "/versions")[1]
        assert [(v["version"], v["reason"], v["n_updates"]) for v in versions["versions"]] == [
            (1, "bundle", 0),
            (2, "scheduled", 5),
            (3, "scheduled", 10),
        ]
        x = stream[500].x
        before = call(server.url + "/predict", {"features": x}, token=TOKEN)[1]
        expected = {str(int(k)): v for k, v in bundle.model.predict_proba_one(x).items()}  # labels 0/1
        assert before["version"] == 3 and before["proba"] != expected  # it learned
        status, answer = call(server.url + "/rollback", {"version": 1}, token=TOKEN)
        assert status == 200 and answer == {"version": 4, "restored": 1, "previous": 3}
        served = call(server.url + "/predict", {"features": x}, token=TOKEN)[1]
        assert served["version"] == 4 and served["proba"] == expected
        status, answer = call(server.url + "/rollback", {"version": 99}, token=TOKEN)
        assert status == 404 and "no version 99" in answer["detail"]
        status, answer = call(server.url + "/rollback", None, token=TOKEN, method="POST")
        assert (
            status == 200 and answer["restored"] == 3
        )  # default: the version before the current one
    finally:
        server.stop()


def test_concurrent_learning_loses_no_update_and_drift_shows_in_metrics(exported, tmp_path):
    """200 labels from 8 threads at once all count; labels flipped after them make the tree's
    error jump, and the service's detector fire."""
    db, rid, _ = exported
    bundle = wb.export(rid, "tree", tmp_path / "tree", db=db, version=1)
    server = Server(bundle, "--state-dir", str(tmp_path / "state"), "--checkpoint-every", "50")
    try:
        stream = events()
        pairs = [(ev.x, ev.y) for ev in stream[:200]] + [(ev.x, 1 - ev.y) for ev in stream[200:600]]

        def learn(pair):
            return call(
                server.url + "/learn", {"features": pair[0], "label": pair[1]}, token=TOKEN
            )[0]

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(learn, pairs[:200])) == {200}
        health = call(server.url + "/health")[1]
        assert health["n_updates"] == 200 and health["version"] == 1 + 200 // 50
        rest = pairs[200:]
        for i in range(0, len(rest), 100):  # batches go through the same path
            chunk = rest[i : i + 100]
            body = {"instances": [x for x, _ in chunk], "labels": [y for _, y in chunk]}
            assert call(server.url + "/learn", body, token=TOKEN)[0] == 200
        status, text = call(server.url + "/metrics")
        assert status == 200
        series = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }
        assert series["workbench_updates_total"] == 600
        assert series['workbench_requests_total{endpoint="learn",status="200"}'] == 204
        assert (
            series['workbench_drift_events_total{detector="river.drift.ADWIN",kind="drift"}'] >= 1
        )
        assert series['workbench_request_latency_seconds_count{endpoint="learn"}'] == 204
        assert 'workbench_request_latency_seconds_bucket{endpoint="learn",le="0.01"}' in series
        # 4 checkpoints over the 200 single labels, then one after each batch of 100
        assert series["workbench_model_version"] == 1 + 4 + 4
        assert series['workbench_checkpoints_total{reason="scheduled"}'] == 8
    finally:
        server.stop()


def test_kill_9_then_restart_resumes_from_the_last_checkpoint(exported, tmp_path):
    state = tmp_path / "state"
    stream = events()
    server = Server(exported[2], "--state-dir", str(state), "--checkpoint-every", "10")
    for ev in stream[:25]:
        assert call(server.url + "/learn", {"features": ev.x, "label": ev.y}, token=TOKEN)[0] == 200
    x = stream[700].x
    at_checkpoint = call(server.url + "/versions")[1]["versions"][-1]
    assert (at_checkpoint["version"], at_checkpoint["n_updates"]) == (3, 20)
    server.kill()

    server = Server(exported[2], "--state-dir", str(state), "--checkpoint-every", "10")
    try:
        health = call(server.url + "/health")[1]
        assert health == {"status": "ok", "version": 3, "n_updates": 20, "lost_updates": 5}
        # The restored model is the bundle's after exactly the first 20 labels.
        model = load(exported[2]).model
        for ev in stream[:20]:
            model.learn_one(ev.x, ev.y)
        served = call(server.url + "/predict", {"features": x})[1]["proba"]
        assert served == {str(int(k)): v for k, v in model.predict_proba_one(x).items()}  # labels 0/1
        assert all(math.isfinite(p) for p in served.values())
    finally:
        printed = server.stop()
    assert (
        "resumed from checkpoint v3 (20 updates); lost 5 updates applied after the last checkpoint"
        in printed
    )


def test_a_graceful_stop_checkpoints_what_it_learned(exported, tmp_path):
    state = tmp_path / "state"
    stream = events()
    # the token from the environment this time; no scheduled checkpoint within reach
    server = Server(
        exported[2], "--state-dir", str(state), token=None, env={"WORKBENCH_TOKEN": TOKEN}
    )
    for ev in stream[:7]:
        assert call(server.url + "/learn", {"features": ev.x, "label": ev.y}, token=TOKEN)[0] == 200
    server.stop()  # SIGTERM
    server = Server(exported[2], "--state-dir", str(state))
    try:
        assert call(server.url + "/health")[1] == {
            "status": "ok",
            "version": 2,
            "n_updates": 7,
            "lost_updates": 0,
        }
        assert call(server.url + "/versions")[1]["versions"][-1]["reason"] == "final"
    finally:
        printed = server.stop()
    assert "resumed from checkpoint v2 (7 updates)" in printed and "lost" not in printed


def test_serve_refuses_a_tampered_bundle_and_a_foreign_state_dir(exported, tmp_path):
    db, rid, bundle = exported
    state = tmp_path / "state"
    server = Server(bundle, "--state-dir", str(state), "--checkpoint-every", "1")
    ev = events(5)[0]
    assert call(server.url + "/learn", {"features": ev.x, "label": ev.y}, token=TOKEN)[0] == 200
    server.stop()
    serve = [sys.executable, "-m", "workbench.cli", "serve", "--port", str(free_port())]
    other = wb.export(rid, "tree", tmp_path / "tree", db=db, version=1)
    result = subprocess.run(
        [*serve, str(other), "--state-dir", str(state)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "holds checkpoints of another bundle" in result.stderr
    model = other / "model.pkl"
    model.write_bytes(model.read_bytes()[:-1] + b"!")
    result = subprocess.run([*serve, str(other)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "model.pkl does not match its SHA-256 in SHA256SUMS" in result.stderr
