"""Reading a database that a replay in another process is writing (store/snapshot.py): the
record as of about a second ago, never a lock error, never a stalled replay."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from conftest import agrawal_config

import workbench as wb
from workbench.dashboards.app import Dashboard

N = 100_000  # long enough that a second `workbench` process starts and reads before the end


def test_runs_connect_and_the_dashboard_read_while_another_process_replays(tmp_path):
    db = tmp_path / "shared.duckdb"
    config = tmp_path / "long.json"  # JSON is YAML: the CLI reads it
    config.write_text(json.dumps(agrawal_config(n=N)))
    wb.run(agrawal_config(n=500), db=db, progress=False)  # a finished run already in the file
    replay = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", str(config), "--db", str(db), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen, listed, dashboards = [], [], 0
    try:
        while replay.poll() is None:
            runs = wb.connect(db).runs()
            if len(runs) == 2 and runs.status.iloc[-1] == "running":
                run_id = runs.run_id.iloc[-1]
                steps = wb.connect(db).sql("SELECT count(*) AS n FROM steps WHERE run_id = ?", [run_id])
                seen.append(int(steps.n.iloc[0]))
                if dashboards == 0 and seen[-1] > 0:
                    dash = Dashboard(wb.connect(db), runs=[run_id], live=False)
                    assert "running" in dash.status.value
                    assert {t.name for t in dash.figures["rolling"].data} >= {"lr", "tree"}
                    dashboards += 1
                    # Publishing snapshots keeps the writer's lock (a POSIX lock, lost if the
                    # writer closed any descriptor of the file): the file itself stays closed.
                    with pytest.raises(duckdb.IOException, match="[Ll]ock"):
                        duckdb.connect(str(db)).close()
                elif dashboards and not listed:
                    out = subprocess.run(
                        [sys.executable, "-m", "workbench.cli", "runs", "--db", str(db)],
                        capture_output=True,
                        text=True,
                    )
                    assert out.returncode == 0, out.stderr
                    if replay.poll() is None:  # it read while the replay was still writing
                        listed.append(out.stdout)
            time.sleep(0.2)
        output = replay.stdout.read()
    finally:
        replay.kill()
        replay.wait()
    assert replay.returncode == 0, output
    # The readers saw the run grow while it was written, and `workbench runs` listed it.
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] > seen[0], seen
    assert dashboards == 1 and "running" in listed[0]
    # The replay was not disturbed: every step is in, and the snapshot is gone with the run.
    final = wb.connect(db).runs()
    assert final.status.tolist() == ["finished", "finished"], output
    total = wb.connect(db).sql("SELECT count(*) AS n FROM steps WHERE run_id = ?", [final.run_id.iloc[-1]])
    assert int(total.n.iloc[0]) == 2 * N
    assert not Path(f"{db}.snapshot").exists() and not Path(f"{db}.snapshot-wanted").exists()


def test_every_snapshot_holds_each_learners_steps_to_the_same_event(tmp_path, monkeypatch):
    """A snapshot is a cut across the arms: a dashboard reading it never shows one learner's
    steps without the other's (the writer once published between two arms' batches)."""
    from workbench.store import snapshot

    db = tmp_path / "cut.duckdb"
    published: list[dict[str, int]] = []
    real_publish = snapshot.Publisher.publish

    def publish(self):
        real_publish(self)
        con = duckdb.connect(str(self.snapshot), read_only=True)  # what a reader opens
        rows = con.execute("SELECT learner, max(seq), count(*) FROM steps GROUP BY learner").fetchall()
        con.close()
        published.append({learner: (last, n) for learner, last, n in rows})
        Path(f"{db}.snapshot-wanted").touch()  # a reader keeps asking

    monkeypatch.setattr(snapshot, "EVERY", 0.0)
    monkeypatch.setattr(snapshot.Publisher, "publish", publish)
    Path(f"{db}.snapshot-wanted").touch()
    wb.run(agrawal_config(n=20_000), db=db, progress=False)
    with_steps = [cut for cut in published if cut]
    assert len(with_steps) >= 3, published
    for cut in with_steps:
        assert set(cut) == {"lr", "tree"} and cut["lr"] == cut["tree"], cut
