"""A run's status tells the truth however it ends: SIGTERM as Ctrl-C (interrupted, final
checkpoint kept), a full disk as failed with the reason, and a run whose process was killed
(kill -9) as crashed, to every reader."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

import workbench as wb
from workbench.store.schema import _alive

WORKBENCH = str(Path(sys.executable).parent / "workbench")
LONG = {
    "name": "long",
    "source": {"kind": "synthetic", "generator": "agrawal", "n": 5_000_000},
    "learners": [{"name": "nb", "model": "river.naive_bayes.GaussianNB"}],
}


def replaying(tmp_path: Path, config: dict = LONG) -> tuple[subprocess.Popen, Path]:
    """`workbench run` in a subprocess, returned once it has logged steps (read through the
    snapshot a replay publishes for readers)."""
    path, db = tmp_path / "long.yaml", tmp_path / "runs.duckdb"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [WORKBENCH, "run", str(path), "--db", str(db), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if wb.connect(db).sql("SELECT count(*) AS n FROM steps").n.iloc[0] > 0:
                return proc, db
        except wb.WorkbenchError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the replay logged no step within 120 s")


def test_sigterm_ends_a_run_as_ctrl_c_does(tmp_path):
    proc, db = replaying(tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    store = wb.connect(db)
    run = store.runs().iloc[0]
    assert run.status == "interrupted" and 0 < run.n_events < LONG["source"]["n"]
    checkpoints = store.checkpoints(run.run_id)
    assert list(checkpoints.reason) == ["final"] and checkpoints.seq.iloc[0] == run.n_events
    assert "is marked 'interrupted'" in err


def test_a_killed_run_shows_as_crashed_to_every_reader(tmp_path):
    proc, db = replaying(tmp_path)
    store = wb.connect(db)
    assert store.runs().status.tolist() == ["running"]  # alive: read through its snapshot
    proc.kill()  # SIGKILL: nothing of the workbench runs
    proc.communicate()
    run_id = store.runs().run_id.iloc[0]
    assert store.run(run_id)["status"] == "crashed"
    assert f"pid {proc.pid}" in store.run(run_id)["error"]
    listed = subprocess.run([WORKBENCH, "runs", "--db", str(db)], capture_output=True, text=True)
    assert "crashed" in listed.stdout and "running" not in listed.stdout
    # SQL readers see it too: the row itself was reconciled.
    assert store.sql("SELECT status FROM runs").status.tolist() == ["crashed"]
    html = wb.report(db, output=tmp_path / "report.html").read_text()
    assert "crashed" in html


def test_a_live_process_keeps_its_run_running():
    me = os.getpid()
    started_before = datetime.now(timezone.utc)
    assert _alive(me, started_before)
    # The same number given to a later process: that is not the run's process.
    assert not _alive(me, started_before - timedelta(days=1))
    assert not _alive(2**22 + 12345, started_before)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))


#: feature drift leaves rows to write after the replay stopped: the path that used to leave
#: the run 'running' forever
FILLS = {**LONG, "source": {**LONG["source"], "n": 400_000}, "drift": {"features": {"window": 1000}}}
SHOW = (
    "import workbench as wb, json, sys; r = wb.connect(sys.argv[1]).runs().iloc[0]; "
    "print(json.dumps([r.status, int(r.n_events), r.error]))"
)


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.parametrize("full", ["file size limit", "tmpfs"])
def test_a_full_disk_ends_the_run_failed_with_the_reason(tmp_path, full):
    config, db = tmp_path / "fills.yaml", tmp_path / "disk" / "runs.duckdb"
    config.write_text(yaml.safe_dump(FILLS))
    db.parent.mkdir()
    run = [WORKBENCH, "run", str(config), "--db", str(db), "--no-progress"]
    show = [sys.executable, "-c", SHOW, str(db)]
    if full == "file size limit":
        result = subprocess.run(run, capture_output=True, text=True, preexec_fn=_limit_file_size)
        shown = subprocess.run(show, capture_output=True, text=True)
        reason = "File too large"
    else:
        if not _can_mount():
            pytest.skip("cannot mount a tmpfs in a mount namespace here")
        script = f"mount -t tmpfs -o size=2m tmpfs {db.parent} && {' '.join(run)}; {sys.executable} -c '{SHOW}' {db}"
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], capture_output=True, text=True
        )
        shown = result
        reason = "No space left on device"
    status, n_events, error = json.loads(shown.stdout.strip().splitlines()[-1])
    assert result.returncode != 0 or full == "tmpfs"
    assert status == "failed" and n_events > 0
    assert reason in error and error.startswith("TransactionException")
