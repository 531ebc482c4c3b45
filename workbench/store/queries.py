"""Reading the record back as tidy pandas DataFrames."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.store import schema

DEFAULT_DB = "runs/workbench.duckdb"

# Rolling metrics DuckDB computes itself, as a windowed mean over the steps that scored.
_SQL_ROLLING = {
    "accuracy": "avg(correct::DOUBLE)",
    "error_rate": "1 - avg(correct::DOUBLE)",
    "log_loss": "avg(loss)",
    "mse": "avg(loss)",
    "rmse": "sqrt(avg(loss))",
    "mae": "avg(abs(y_true::DOUBLE - y_pred::DOUBLE))",
}


class Store:
    """A DuckDB file of experiments. Each call opens and closes its own connection, so holding
    a Store in a notebook never blocks a replay started from a terminal."""

    def __init__(self, path: str | Path = DEFAULT_DB):
        self.path = str(path)

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not Path(self.path).exists():
            raise WorkbenchError(f"no database at {self.path}: replay an experiment first (workbench run CONFIG --db {self.path})")
        con = schema.connect(self.path)
        try:
            schema.create(con)
            yield con
        finally:
            con.close()

    def sql(self, query: str, params: list | None = None) -> pd.DataFrame:
        """Any SQL over the record, as a DataFrame."""
        with self._connect() as con:
            return con.execute(query, params or []).df()

    def runs(self) -> pd.DataFrame:
        return self.sql("SELECT * EXCLUDE (config) FROM runs ORDER BY created_at")

    def run(self, run_id: str) -> dict:
        df = self.sql("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if df.empty:
            raise WorkbenchError(f"no run {run_id!r} in {self.path}; `workbench runs --db {self.path}` lists them")
        row = df.iloc[0].to_dict()
        row["config"] = json.loads(row["config"])
        return row

    def latest_run_id(self) -> str:
        df = self.sql("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
        if df.empty:
            raise WorkbenchError(f"{self.path} holds no runs yet")
        return str(df.run_id.iloc[0])

    def steps(self, run_id: str, learner: str | None = None) -> pd.DataFrame:
        query = "SELECT * FROM steps WHERE run_id = ?" + (" AND learner = ?" if learner else "")
        return self.sql(query + " ORDER BY learner, seq", [run_id] + ([learner] if learner else []))

    def learners(self, run_id: str) -> pd.DataFrame:
        return self.sql("SELECT * FROM learners WHERE run_id = ? ORDER BY rowid", [run_id])

    def true_drifts(self, run_id: str) -> pd.DataFrame:
        return self.sql("SELECT seq, width FROM true_drifts WHERE run_id = ? ORDER BY seq", [run_id])

    def dead_letters(self, run_id: str) -> pd.DataFrame:
        return self.sql("SELECT origin, reason, raw FROM dead_letters WHERE run_id = ? ORDER BY rowid", [run_id])

    def feature_schema(self, run_id: str) -> pd.DataFrame:
        """The features (and target) the replay saw first: role, name, type, nullable."""
        return self.sql("SELECT role, name, type, nullable, name_type FROM feature_schema "
                        "WHERE run_id = ? ORDER BY position", [run_id])

    def checkpoint_state(self, run_id: str, learner: str, version: int | None = None) -> dict:
        """One checkpoint of a learner with its pickled state (default: the latest version)."""
        query = "SELECT * FROM checkpoints WHERE run_id = ? AND learner = ?"
        params: list = [run_id, learner]
        if version is not None:
            query += " AND version = ?"
            params.append(version)
        df = self.sql(query + " ORDER BY version DESC LIMIT 1", params)
        if df.empty:
            have = self.sql("SELECT DISTINCT learner, version FROM checkpoints WHERE run_id = ? "
                            "ORDER BY learner, version", [run_id])
            listed = ", ".join(f"{r.learner} v{r.version}" for r in have.itertuples()) or "none"
            wanted = f"{learner!r}" + (f" version {version}" if version is not None else "")
            raise WorkbenchError(
                f"run {run_id!r} has no checkpoint of learner {wanted}; checkpoints: {listed}")
        row = df.iloc[0].to_dict()
        row["state"] = bytes(row["state"])
        row["metrics"] = json.loads(row["metrics"] or "{}")
        return row

    def summary(self, run_id: str) -> pd.DataFrame:
        """One row per learner: events, cumulative metrics, latency and throughput."""
        run = self.run(run_id)
        df = self.learners(run_id)
        rows = []
        for rec in df.to_dict("records"):
            per_event_us = (rec["predict_us_mean"] or 0) + (rec["learn_us_mean"] or 0)
            rows.append({
                "learner": rec["learner"],
                "kind": rec["kind"],
                "events": run["n_events"],
                "labelled": rec["n_learned"],
                **json.loads(rec["metrics"] or "{}"),
                "predict_us": rec["predict_us_mean"],
                "learn_us": rec["learn_us_mean"],
                "events_per_s": 1e6 / per_event_us if per_event_us else None,
            })
        return pd.DataFrame(rows)

    def rolling(self, run_id: str, metric: str = "accuracy", window: int = 1000,
                points: int = 2000) -> pd.DataFrame:
        """The rolling ``metric`` of every learner over the last ``window`` scored steps,
        sampled at about ``points`` positions: columns learner, seq, value."""
        if metric not in _SQL_ROLLING:
            raise WorkbenchError(f"rolling metric {metric!r} is not available; allowed: {', '.join(_SQL_ROLLING)}")
        query = f"""
            WITH scored AS (
                SELECT learner, seq, y_true, y_pred, correct, loss
                FROM steps WHERE run_id = $run AND y_pred IS NOT NULL AND y_true IS NOT NULL
            ), rolled AS (
                SELECT learner, seq,
                       {_SQL_ROLLING[metric]} OVER (PARTITION BY learner ORDER BY seq
                                 ROWS BETWEEN {window - 1} PRECEDING AND CURRENT ROW) AS value,
                       row_number() OVER (PARTITION BY learner ORDER BY seq) AS n,
                       count(*) OVER (PARTITION BY learner) AS total
                FROM scored
            )
            SELECT learner, seq, value FROM rolled
            WHERE n % greatest(1, total // $points) = 0 OR n = total
            ORDER BY learner, seq
        """
        with self._connect() as con:
            return con.execute(query, {"run": run_id, "points": points}).df()
