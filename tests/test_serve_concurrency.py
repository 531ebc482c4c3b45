"""The predict path under concurrency: bounded, chunked batches that let single predictions
through, learning that waits for a batch, and read-only multi-process serving."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serving import TOKEN, Server, call, config, events

import workbench as wb
from workbench.export.app import PREDICT_CHUNK, create_app
from workbench.export.service import Service


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("concurrency")
    run = wb.run(config(), db=folder / "runs.duckdb", progress=False)
    return wb.export(run, "lr", folder / "bundle")


@pytest.fixture
def app_and_calls(bundle, tmp_path):
    """The app in this process, its service's predict and learn calls logged in order."""
    service = Service(bundle, tmp_path / "state")
    calls: list[tuple[str, int | None]] = []  # (what, instances; None for a single record)
    predict, learn = service.predict, service.learn
    service.predict = lambda body: calls.append(("predict", len(body.get("instances") or ()) or None)) or predict(body)
    service.learn = lambda body: calls.append(("learn", 1)) or learn(body)
    yield create_app(service, token=TOKEN), calls
    service.close()


def concurrently(app, *requests: tuple[str, dict, dict]) -> list[httpx.Response]:
    """Send the requests at once to the app (one event loop, as uvicorn serves it)."""

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.post(path, json=body, headers=h) for path, body, h in requests))

    return asyncio.run(main())


def test_a_single_prediction_is_answered_between_the_chunks_of_a_big_batch(app_and_calls):
    app, calls = app_and_calls
    xs = [ev.x for ev in events(10 * PREDICT_CHUNK)]
    big, single = concurrently(app, ("/predict", {"instances": xs}, {}), ("/predict", {"features": xs[3]}, {}))
    assert big.status_code == single.status_code == 200
    chunks = [i for i, call in enumerate(calls) if call == ("predict", PREDICT_CHUNK)]
    assert len(chunks) == 10
    assert chunks[0] < calls.index(("predict", None)) < chunks[-1]  # it did not wait for the batch
    # chunked, the batch answers exactly what one call would have
    answer = big.json()
    assert len(answer["predictions"]) == len(answer["probas"]) == len(xs)
    assert answer["probas"][3] == single.json()["proba"]


def test_learning_waits_for_a_batch_in_progress_so_a_batch_has_one_version(app_and_calls):
    app, calls = app_and_calls
    stream = events(4 * PREDICT_CHUNK)
    xs = [ev.x for ev in stream]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    big, learned = concurrently(
        app,
        ("/predict", {"instances": xs}, {}),
        ("/learn", {"features": xs[0], "label": stream[0].y}, auth),
    )
    assert big.status_code == learned.status_code == 200
    assert calls.index(("learn", 1)) == len(calls) - 1  # after the batch's last chunk


def test_an_error_in_a_later_chunk_names_the_instance_by_its_place_in_the_batch(app_and_calls):
    app, _ = app_and_calls
    xs = [ev.x for ev in events(3 * PREDICT_CHUNK)]
    bad = 2 * PREDICT_CHUNK + 5
    xs[bad] = {**xs[bad], "salary": "lots"}
    (answer,) = concurrently(app, ("/predict", {"instances": xs}, {}))
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", "instances", bad, "salary"]]


def test_a_batch_over_the_limit_is_a_413_naming_it(bundle, tmp_path):
    server = Server(bundle, "--state-dir", str(tmp_path / "state"), "--max-batch", "10")
    try:
        xs = [ev.x for ev in events(11)]
        status, answer = call(server.url + "/predict", {"instances": xs})
        assert status == 413
        assert answer["detail"] == (
            "batch of 11 instances is over the limit of 10 per request (--max-batch): split it"
        )
        assert call(server.url + "/predict", {"instances": xs[:10]})[0] == 200
    finally:
        server.stop()


def test_several_workers_serve_predictions_and_refuse_learning(bundle, tmp_path):
    server = Server(bundle, "--state-dir", str(tmp_path / "state"), "--workers", "2", "--read-only")
    try:
        stream = events(20)
        answers = [call(server.url + "/predict", {"features": ev.x}) for ev in stream]
        assert all(status == 200 for status, _ in answers)
        single = Service(bundle, tmp_path / "other-state")
        try:  # every process answers as the bundle's model does
            expected = [json.loads(json.dumps(single.predict_one(ev.x)["proba"])) for ev in stream]
            assert [a["proba"] for _, a in answers] == expected
        finally:
            single.close()
        for path in ("/learn", "/rollback"):
            status, answer = call(server.url + path, {"features": stream[0].x, "label": 1}, token=TOKEN)
            assert status == 403 and "read-only" in answer["detail"]
        workers = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
        assert len(workers) >= 2  # uvicorn's worker processes (its supervisor may add a helper)
    finally:
        out = server.stop()
    assert "2 processes, read-only" in out


def test_several_workers_need_read_only(bundle, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "serve", str(bundle), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--workers: 2 processes would each learn on their own copy of the model" in done.stderr
    assert "add --read-only" in done.stderr
