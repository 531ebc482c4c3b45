"""The service's state folder: one server at a time (a lock), and old checkpoints pruned."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving import TOKEN, Server, call, config, events

import workbench as wb


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("state")
    db = folder / "runs.duckdb"
    run = wb.run(config(300), db=db, progress=False)
    return wb.export(run.id, "lr", folder / "bundle", db=db)


def test_a_second_server_on_the_same_state_folder_is_refused(bundle, tmp_path):
    state = str(tmp_path / "state")
    first = Server(bundle, "--state-dir", state)
    try:
        with pytest.raises(
            RuntimeError, match=rf"state is in use by another `workbench serve` \(pid {first.proc.pid}\)"
        ):
            Server(bundle, "--state-dir", state)
    finally:
        first.stop()
    Server(bundle, "--state-dir", state).stop()  # free again once the first one stopped
    killed = Server(bundle, "--state-dir", state)
    killed.kill()  # the lock goes with the process, however it ends
    Server(bundle, "--state-dir", state).stop()


def test_old_checkpoints_are_pruned(bundle, tmp_path):
    state = tmp_path / "state"
    server = Server(bundle, "--state-dir", str(state), "--checkpoint-every", "1", "--keep-checkpoints", "3")
    try:
        for ev in events(8):
            assert call(server.url + "/learn", {"features": ev.x, "label": ev.y}, token=TOKEN)[0] == 200
        versions = call(server.url + "/versions")[1]["versions"]
        assert [v["version"] for v in versions] == [1, 7, 8, 9]  # the bundle's, and the newest 3
        status, answer = call(server.url + "/rollback", {"version": 3}, token=TOKEN)
        assert status == 404 and "versions: 1, 7, 8, 9" in answer["detail"]
        assert call(server.url + "/rollback", {"version": 1}, token=TOKEN)[0] == 200
    finally:
        server.stop()
    assert sorted(p.name for p in state.glob("v*")) == [
        f"v{v:06d}.{ext}" for v in (8, 9, 10) for ext in ("json", "pkl")
    ]
    again = Server(bundle, "--state-dir", str(state), "--keep-checkpoints", "3")
    try:
        assert call(again.url + "/health")[1]["version"] == 10 and call(again.url + "/health")[1]["n_updates"] == 8
    finally:
        again.stop()
