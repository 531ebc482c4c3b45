"""Reading the record back as tidy pandas DataFrames."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
from river import utils

from workbench.errors import ConfigError, WorkbenchError
from workbench.evaluation.metrics import allowed as allowed_metrics
from workbench.evaluation.metrics import make as make_metric
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


_SQL_REGRESSION = {"mse", "rmse", "mae"}


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
        regression = self.run(run_id)["task"] == "regression"
        if metric not in _SQL_ROLLING or (metric in _SQL_REGRESSION) != regression:
            return self._rolling_with_river(run_id, metric, window, points)
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

    def _rolling_with_river(self, run_id: str, metric: str, window: int, points: int) -> pd.DataFrame:
        """Metrics DuckDB cannot window (F1, ROC AUC, R2, ...): River's own, over the logged steps."""
        task = self.run(run_id)["task"]
        try:
            make_metric(metric, task)
        except ConfigError as exc:
            sql = [m for m in _SQL_ROLLING if (m in _SQL_REGRESSION) == (task == "regression")]
            allowed = sorted(set(sql) | set(allowed_metrics(task)))
            raise WorkbenchError(f"rolling metric {metric!r} is not available for this {task} run; allowed: {', '.join(allowed)}") from exc
        steps = self.sql(
            "SELECT learner, seq, y_true, y_pred, y_proba FROM steps WHERE run_id = ? "
            "AND y_pred IS NOT NULL AND y_true IS NOT NULL ORDER BY learner, seq", [run_id])
        rows = []
        for learner, group in steps.groupby("learner", sort=False):
            rolled = utils.Rolling(type(make_metric(metric, task)), window_size=window)
            parse = float if task == "regression" else _label
            classes = sorted({_label(v) for v in group.y_true.unique()} | {_label(v) for v in group.y_pred.unique()}, key=str)
            wants_proba = task != "regression" and not rolled.obj.requires_labels
            every = max(1, len(group) // points)
            last = len(group) - 1
            for k, (seq, y_true, y_pred, proba) in enumerate(zip(group.seq, group.y_true, group.y_pred, group.y_proba)):
                y, pred = parse(y_true), parse(y_pred)
                if wants_proba:  # binary: the other class has the rest of the probability
                    other = next((c for c in classes if c != pred), None)
                    pred = {pred: proba, other: 1.0 - proba}
                rolled.update(y, pred)
                if k % every == 0 or k == last:
                    rows.append((learner, int(seq), rolled.get()))
        return pd.DataFrame(rows, columns=["learner", "seq", "value"])


def _label(text: str):
    """A label as the store wrote it (Arrow's text cast) back to a Python value."""
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return text
