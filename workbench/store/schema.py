"""The DuckDB tables: the record of every experiment, readable by any DuckDB client."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import duckdb

from workbench.errors import DatabaseLockedError

TABLES = {
    "runs": """
        run_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        status VARCHAR NOT NULL,            -- running | finished | failed | interrupted | crashed | live | stopped
        config JSON NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        n_events BIGINT DEFAULT 0,
        n_dead_letters BIGINT DEFAULT 0,
        n_duplicates BIGINT DEFAULT 0,
        n_late BIGINT DEFAULT 0,
        n_unlabelled BIGINT DEFAULT 0,
        n_orphan_labels BIGINT DEFAULT 0,
        task VARCHAR,
        seed BIGINT,
        elapsed_s DOUBLE,
        error VARCHAR,
        workbench_version VARCHAR,
        pid BIGINT,                         -- the process replaying it, on host
        host VARCHAR
    """,
    "learners": """
        run_id VARCHAR NOT NULL,
        learner VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,              -- online | batch
        model VARCHAR NOT NULL,             -- the dotted name
        spec JSON,                          -- the learner's config
        n_predictions BIGINT,
        n_learned BIGINT,
        metrics JSON,                       -- cumulative metrics at the end of the run
        predict_us_mean DOUBLE,
        learn_us_mean DOUBLE
    """,
    "steps": """
        run_id VARCHAR NOT NULL,
        learner VARCHAR NOT NULL,
        seq BIGINT NOT NULL,                -- position of the event in replay order
        event_time TIMESTAMPTZ,
        y_true VARCHAR,                     -- labels as text; cast regression values with ::DOUBLE
        y_pred VARCHAR,                     -- NULL when the learner abstained
        y_proba DOUBLE,                     -- probability the learner gave its prediction
        correct BOOLEAN,
        loss DOUBLE,                        -- log loss (classifiers), squared error (regressors)
        predict_us REAL,
        learn_us REAL,
        model_version INTEGER
    """,
    "true_drifts": """
        run_id VARCHAR NOT NULL,
        seq BIGINT NOT NULL,
        width BIGINT NOT NULL
    """,
    "checkpoints": """
        run_id VARCHAR NOT NULL,
        learner VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        seq BIGINT NOT NULL,                -- events replayed when it was taken
        created_at TIMESTAMPTZ NOT NULL,
        reason VARCHAR,                     -- scheduled | final | on demand | rollback | background
        metrics JSON,                       -- cumulative metrics at that point
        sha256 VARCHAR NOT NULL,
        state BLOB NOT NULL                 -- the pickled model
    """,
    "dead_letters": """
        run_id VARCHAR NOT NULL,
        origin VARCHAR NOT NULL,            -- file:line or topic/partition/offset
        reason VARCHAR NOT NULL,
        raw BLOB                            -- the record's bytes, kept
    """,
    "drift_events": """
        run_id VARCHAR NOT NULL,
        learner VARCHAR NOT NULL,           -- '' for feature (data) drift
        seq BIGINT NOT NULL,                -- the step whose score raised it
        detector VARCHAR NOT NULL,          -- the detector's name (its class, or psi / ks)
        kind VARCHAR NOT NULL,              -- warning | drift
        action VARCHAR NOT NULL,            -- none | reset | background | rollback
        statistic DOUBLE,                   -- the detector's estimate, or the PSI / KS p-value
        reason VARCHAR                      -- what was watched and what was done, in words
    """,
    "feature_drift": """
        run_id VARCHAR NOT NULL,
        feature VARCHAR NOT NULL,
        seq BIGINT NOT NULL,                -- last event of the window
        "window" BIGINT NOT NULL,           -- events per window
        psi DOUBLE,                         -- population stability index vs the reference window
        ks DOUBLE,                          -- Kolmogorov-Smirnov statistic vs the reference window
        ks_pvalue DOUBLE
    """,
    "rollbacks": """
        run_id VARCHAR NOT NULL,
        learner VARCHAR NOT NULL,
        seq BIGINT NOT NULL,
        from_version INTEGER NOT NULL,      -- the version that was serving
        to_version INTEGER NOT NULL,        -- the checkpoint restored
        reason VARCHAR NOT NULL,            -- manual | guard | drift
        created_at TIMESTAMPTZ NOT NULL,
        new_version INTEGER                 -- the version number the restored model serves as
    """,
    "refits": """
        run_id VARCHAR NOT NULL,
        learner VARCHAR NOT NULL,
        seq BIGINT NOT NULL,                -- the step whose label completed the training set
        n_samples BIGINT NOT NULL,
        fit_ms DOUBLE NOT NULL
    """,
    "late_events": """
        run_id VARCHAR NOT NULL,
        seq BIGINT NOT NULL,                -- where it was replayed (replay.late: replay)
        origin VARCHAR NOT NULL,            -- topic/partition/offset
        event_time TIMESTAMPTZ,
        behind_s DOUBLE                     -- how far behind events already replayed
    """,
    "served": """
        run_id VARCHAR NOT NULL,            -- the live run of the update service that joined it
        request_id VARCHAR NOT NULL,        -- the event's id when the client gave one
        arm VARCHAR NOT NULL,               -- a | b (A/B in serving)
        version INTEGER NOT NULL,           -- the model version that made the prediction
        answered BOOLEAN NOT NULL,          -- false: a shadow prediction, logged but not returned
        y_pred VARCHAR,
        y_true VARCHAR,                     -- NULL: the label never came (logged when the service stopped)
        correct BOOLEAN,
        loss DOUBLE,
        served_at TIMESTAMPTZ NOT NULL,
        labelled_at TIMESTAMPTZ,
        label_delay_s DOUBLE                -- from serving to the label's arrival
    """,
    "feature_schema": """
        run_id VARCHAR NOT NULL,
        position INTEGER NOT NULL,
        role VARCHAR NOT NULL,              -- feature | target
        name VARCHAR NOT NULL,
        type VARCHAR NOT NULL,              -- number | string | boolean | null | any
        nullable BOOLEAN NOT NULL,          -- absent or None in some of the first events
        name_type VARCHAR NOT NULL          -- str | int (a feature named by an integer)
    """,
}


#: columns added to a table after databases were made without them
ADDED = {"runs": {"pid": "BIGINT", "host": "VARCHAR"}}


def create(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables (and columns) a database does not have yet, then mark the runs whose
    process is gone as crashed (``reconcile``). One connection at a time in a process: a
    notebook's reader and its replay's writer thread share DuckDB's instance, and two concurrent
    CREATEs of one table are a write-write conflict."""
    with _CREATING:
        _create(con)


_CREATING = threading.Lock()


def _create(con: duckdb.DuckDBPyConnection) -> None:
    have: dict[str, set[str]] = {}
    # (the WHERE spares DuckDB listing its system catalog: ~4x cheaper)
    query = (
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main'"
    )
    for table, column in con.execute(query).fetchall():
        have.setdefault(table, set()).add(column)
    for name, columns in TABLES.items():
        if name not in have:
            con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    for name, columns in ADDED.items():
        for column, kind in columns.items():
            if name in have and column not in have[name]:
                con.execute(f"ALTER TABLE {name} ADD COLUMN {column} {kind}")
    reconcile(con)


def reconcile(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Mark as ``crashed`` the runs still ``running`` (or ``live``: an update service) whose process
    is gone (killed, or the machine stopped): the ids of the runs marked.

    Only a connection that may write reaches this, and a replay holds its file for as long as
    it runs: so a run another process left ``running`` is over, unless that process is alive
    (checked on this host; a run replayed on another host is left as it is).
    """
    here, me = socket.gethostname(), os.getpid()
    stale = [
        (run_id, pid)
        for run_id, pid, host, created in con.execute(
            "SELECT run_id, pid, host, created_at FROM runs WHERE status IN ('running', 'live')"
        ).fetchall()
        if pid != me and (host is None or host == here) and not (pid and _alive(pid, created))
    ]
    for run_id, pid in stale:
        con.execute(
            "UPDATE runs SET status = 'crashed', error = ? WHERE run_id = ? AND status IN ('running', 'live')",
            [f"its process ({'pid ' + str(pid) if pid else 'unknown'}) ended without saying how the run ended "
             "(killed with SIGKILL, out of memory, or the machine stopped)", run_id],
        )
    return [run_id for run_id, _ in stale]


def _alive(pid: int, since) -> bool:
    """Whether process ``pid`` runs, and is the one that started before ``since`` (not a
    later process given the same number)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    try:  # Linux: the process's start, in clock ticks after boot
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").open() if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return True
    return boot + ticks / os.sysconf("SC_CLK_TCK") <= since.timestamp() + 1


#: how long opening a database waits for another process to let go of it: a reader holds it
#: for one query at a time (a replay holds it for as long as it runs)
LOCK_WAIT = 3.0


#: rows in a row group of the tables a replay's writer appends to (DuckDB's default: 122,880).
#: An append of whole row groups goes to the file compressed, straight from the insert, instead
#: of through the write-ahead log and a checkpoint after: ~2x cheaper a step (measured by
#: benchmarks/duckdb_append.py); groups this small fill within the writer's wait even at a few
#: thousand events a second.
ROW_GROUP_SIZE = 16_384
#: the name a writer's file is attached under in its in-memory DuckDB
_ALIAS = "workbench"
#: files a writer of this process holds (by real path) -> the in-memory DuckDB they are attached to.
#: DuckDB opens a file once a process: readers in the process get a cursor of it.
_ATTACHED: dict[str, duckdb.DuckDBPyConnection] = {}


def connect(path: str, read_only: bool = False, wait: float = LOCK_WAIT) -> duckdb.DuckDBPyConnection:
    """Open the database, waiting up to ``wait`` s for another process to let go of it, and
    turning DuckDB's lock conflict into an error a person can act on. A file this process's
    replay writes is read through the replay's own DuckDB (``connect_writer``)."""
    deadline = time.monotonic() + wait
    while True:
        held = _ATTACHED.get(os.path.realpath(path))
        if held is not None:
            return _cursor(held)
        try:
            con = duckdb.connect(path, read_only=read_only)
            break
        except duckdb.ResourceInUseException:  # attached by a writer of this process that is closing
            _wait_or_raise(path, deadline, None)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            _wait_or_raise(path, deadline, exc)
    con.execute("SET TimeZone = 'UTC'")
    return con


def connect_writer(path: str, wait: float = LOCK_WAIT) -> duckdb.DuckDBPyConnection:
    """The connection of the one writer of ``path`` in this process: the file attached to an
    in-memory DuckDB of its own with ROW_GROUP_SIZE row groups, offered to this process's readers
    until ``release(path)``. A file this process already has open through a plain connection is
    shared as it is (DuckDB's default row groups)."""
    deadline = time.monotonic() + wait
    while True:
        parent = duckdb.connect(":memory:")
        try:
            parent.execute(f"ATTACH ? AS {_ALIAS} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})", [path])
            break
        except duckdb.ResourceInUseException:
            parent.close()
            return connect(path, wait=max(0.0, deadline - time.monotonic()))
        except duckdb.IOException as exc:
            parent.close()
            if "lock" not in str(exc).lower():
                raise
            _wait_or_raise(path, deadline, exc)
    _ATTACHED[os.path.realpath(path)] = parent
    return _cursor(parent)


def release(path: str) -> None:
    """The writer of ``path`` is done: its DuckDB closes the file (checkpointing it) as soon as
    no reader of this process holds a cursor of it."""
    _ATTACHED.pop(os.path.realpath(path), None)


def _cursor(parent: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    con = parent.cursor()
    con.execute(f"USE {_ALIAS}")
    con.execute("SET TimeZone = 'UTC'")
    return con


def _wait_or_raise(path: str, deadline: float, exc: Exception | None) -> None:
    if time.monotonic() >= deadline:
        pid = re.search(r"PID (\d+)", str(exc)) if exc is not None else None
        holder = f"process {pid.group(1)}" if pid else "another process"
        raise DatabaseLockedError(
            f"{path} is in use by {holder} (a replay writing to it, or a notebook holding it "
            f"open). Wait for that replay to finish or close that connection, or write this run "
            f"to another file with --db / db=."
        ) from None
    time.sleep(0.05)
