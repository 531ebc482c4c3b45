"""The record of sweeps: the ``sweeps`` and ``sweep_runs`` tables, and the merge of run shards.

Each run of a sweep writes its own DuckDB file (a shard), so parallel workers never contend
for one lock. Only the sweep's coordinator writes the main database: when a run ends it copies
the shard's rows into the main tables (``runs``, ``steps``, ...) and records the run in
``sweep_runs`` in the same transaction, so the main file is the one record of the sweep.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.store import schema

SWEEP_TABLES = {
    "sweeps": """
        sweep_id VARCHAR PRIMARY KEY,       -- the sweep's name: re-running it resumes it
        config JSON NOT NULL,               -- the sweep file as data
        objective_metric VARCHAR NOT NULL,
        objective_mode VARCHAR NOT NULL,    -- max | min
        objective_learner VARCHAR,          -- NULL: the first learner of each run
        status VARCHAR NOT NULL,            -- running | finished | failed | interrupted
        executor VARCHAR,                   -- processes | ray
        n_runs BIGINT,
        record VARCHAR,                     -- the folder of the run shards
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    """,
    "sweep_runs": """
        sweep_id VARCHAR NOT NULL,
        run_key VARCHAR NOT NULL,           -- digest of the expanded config (resume key)
        rung INTEGER NOT NULL,              -- racing rung (0 without racing)
        budget BIGINT,                      -- events replayed at this rung
        idx INTEGER,                        -- position in the expanded list of runs
        label VARCHAR,
        params JSON NOT NULL,               -- swept key -> value
        config JSON NOT NULL,               -- the expanded experiment config
        run_id VARCHAR,                     -- the run in runs/steps once merged
        shard VARCHAR,                      -- the run's own DuckDB file
        status VARCHAR NOT NULL,            -- queued | running | finished | failed | interrupted
        objective DOUBLE,
        metrics JSON,                       -- the objective learner's cumulative metrics
        promoted BOOLEAN DEFAULT false,     -- racing: kept for the next rung
        n_events BIGINT,
        elapsed_s DOUBLE,
        error VARCHAR,
        pid BIGINT,                         -- the worker process (local executor)
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        PRIMARY KEY (sweep_id, run_key, rung)
    """,
}
#: seconds the sweep waits for a reader to let go of the database before it gives up
LOCK_WAIT = 60.0


def columns(table: str) -> list[str]:
    return [line.split()[0] for line in SWEEP_TABLES[table].strip().splitlines() if "PRIMARY" not in line]


RUN_COLUMNS = columns("sweep_runs")


def now() -> datetime:
    return datetime.now(timezone.utc)


def create(con) -> None:
    schema.create(con)
    for name, columns in SWEEP_TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")


class SweepRecord:
    """The coordinator's writes to the main database; each opens and closes its connection, so
    notebooks can read the record while the sweep runs."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)

    def _con(self):
        # A notebook reading the record holds its lock for a moment: wait for it (up to a
        # minute) rather than lose a finished run.
        con = schema.connect(self.path, wait=LOCK_WAIT)
        create(con)
        return con

    def begin(self, sweep_id: str, config: dict, objective, executor: str, n_runs: int, record: str) -> None:
        con = self._con()
        try:
            con.execute(
                "INSERT INTO sweeps VALUES ($id, $config, $metric, $mode, $learner, 'running', $executor, $n, "
                "$record, $now, $now) ON CONFLICT (sweep_id) DO UPDATE SET config = excluded.config, "
                "objective_metric = excluded.objective_metric, objective_mode = excluded.objective_mode, "
                "objective_learner = excluded.objective_learner, status = 'running', executor = excluded.executor, "
                "n_runs = excluded.n_runs, record = excluded.record, updated_at = excluded.updated_at",
                {
                    "id": sweep_id,
                    "config": json.dumps(config, default=str),
                    "metric": objective.metric,
                    "mode": objective.mode,
                    "learner": objective.learner,
                    "executor": executor,
                    "n": n_runs,
                    "record": record,
                    "now": now(),
                },
            )
        finally:
            con.close()

    def finish(self, sweep_id: str, status: str) -> None:
        con = self._con()
        try:
            con.execute("UPDATE sweeps SET status = ?, updated_at = ? WHERE sweep_id = ?", [status, now(), sweep_id])
        finally:
            con.close()

    def rows(self, sweep_id: str) -> pd.DataFrame:
        con = self._con()
        try:
            return con.execute("SELECT * FROM sweep_runs WHERE sweep_id = ?", [sweep_id]).df()
        finally:
            con.close()

    def put(self, row: dict[str, Any], shard: str | None = None) -> None:
        """Insert or replace one sweep_runs row; with ``shard``, first copy that finished run's
        rows into the main tables (one transaction: a run is merged exactly once)."""
        con = self._con()
        try:
            con.execute("BEGIN")
            if shard is not None:
                _merge(con, shard)
            values = {c: row.get(c) for c in RUN_COLUMNS}
            for c in ("params", "config", "metrics"):
                if values[c] is not None and not isinstance(values[c], str):
                    values[c] = json.dumps(values[c], default=str)
            placeholders = ", ".join(f"${c}" for c in RUN_COLUMNS)
            con.execute(f"INSERT OR REPLACE INTO sweep_runs ({', '.join(RUN_COLUMNS)}) VALUES ({placeholders})", values)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def promote(self, sweep_id: str, rung: int, keys: list[str]) -> None:
        con = self._con()
        try:
            con.execute(
                "UPDATE sweep_runs SET promoted = list_contains($keys, run_key) WHERE sweep_id = $id AND rung = $rung",
                {"keys": keys, "id": sweep_id, "rung": rung},
            )
        finally:
            con.close()


def _merge(con, shard: str) -> None:
    con.execute(f"ATTACH '{_quoted(shard)}' AS shard (READ_ONLY)")
    try:
        have = {
            r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'shard'").fetchall()
        }
        for table in schema.TABLES:
            if table in have:
                con.execute(f"INSERT INTO main.{table} BY NAME SELECT * FROM shard.{table}")
    finally:
        con.execute("DETACH shard")


def _quoted(path: str) -> str:
    return str(path).replace("'", "''")


def read_shard(shard: str) -> dict[str, Any] | None:
    """The run a shard holds (its runs row and its learners' metrics), or None if the worker
    died before writing it (no file, no tables yet, or a file DuckDB cannot read)."""
    if not Path(shard).exists():
        return None
    try:
        con = schema.connect(shard, read_only=True)
    except duckdb.Error:
        return None
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if not {"runs", "learners"} <= tables:
            return None
        runs = con.execute("SELECT * FROM runs").df()
        learners = con.execute("SELECT learner, metrics FROM learners ORDER BY rowid").df()
    finally:
        con.close()
    if runs.empty:
        return None
    run = runs.iloc[0].to_dict()
    run["learners"] = {r.learner: json.loads(r.metrics or "{}") for r in learners.itertuples()}
    return run


def has_tables(con) -> bool:
    """Whether the database holds a sweep record yet (readers do not create tables: they may be
    reading a read-only snapshot)."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return set(SWEEP_TABLES) <= tables


def leaderboard(con, sweep_id: str) -> pd.DataFrame:
    """The runs of a sweep, best first: each config at the last rung it reached (configs that
    survived more rungs rank higher), then by the objective. One column per swept parameter."""
    mode = None
    if has_tables(con):
        mode = con.execute("SELECT objective_mode FROM sweeps WHERE sweep_id = ?", [sweep_id]).fetchone()
    if mode is None:
        raise WorkbenchError(f"no sweep {sweep_id!r} in this database; Store.sweeps() lists them")
    order = "DESC" if mode[0] == "max" else "ASC"
    df = con.execute(
        f"""
        WITH last AS (
            SELECT *, max(rung) OVER (PARTITION BY run_key) AS top_rung,
                      max(rung) OVER () AS final_rung
            FROM sweep_runs WHERE sweep_id = ?
        )
        SELECT row_number() OVER (ORDER BY rung DESC, status = 'finished' DESC, objective {order} NULLS LAST,
                                  idx) AS rank,
               run_id, label, CASE WHEN status = 'finished' AND rung < final_rung AND NOT promoted
                                   THEN 'stopped' ELSE status END AS status,
               objective, rung, budget, n_events, elapsed_s, error, params, metrics, run_key, idx, shard
        FROM last WHERE rung = top_rung ORDER BY rank
        """,
        [sweep_id],
    ).df()
    params = pd.DataFrame([json.loads(p) for p in df.pop("params")], index=df.index)
    out = pd.concat([df.iloc[:, :5], params, df.iloc[:, 5:]], axis=1)
    out.attrs["swept"] = list(params.columns)  # the parameter columns, for the sweep view
    return out
