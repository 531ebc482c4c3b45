"""Reading the record back as tidy pandas DataFrames."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
from river import utils

from workbench.errors import ConfigError, DatabaseLockedError, WorkbenchError
from workbench.evaluation.ab import AB_COLUMNS
from workbench.evaluation.metrics import allowed as allowed_metrics
from workbench.evaluation.metrics import make as make_metric
from workbench.store import schema, snapshot, sweeps

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
            raise WorkbenchError(
                f"no database at {self.path}: replay an experiment first (workbench run CONFIG --db {self.path})"
            )
        try:
            con = schema.connect(self.path, wait=0)
            schema.create(con)
        except DatabaseLockedError:
            # A replay in another process is writing: read its snapshot (see store/snapshot.py).
            con = snapshot.connect(self.path) or schema.connect(self.path)
            con.execute("SET TimeZone = 'UTC'")
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def session(self) -> Iterator[Store]:
        """This store with one connection shared by every call inside the block: a dashboard's
        dozen small reads then pay for one connect (~20 ms each) instead of a dozen."""
        with self._connect() as con:
            shared = copy.copy(self)

            @contextmanager
            def reuse() -> Iterator[duckdb.DuckDBPyConnection]:
                yield con

            shared._connect = reuse
            yield shared

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
        return self.sql(
            "SELECT role, name, type, nullable, name_type FROM feature_schema WHERE run_id = ? ORDER BY position",
            [run_id],
        )

    def checkpoint_state(self, run_id: str, learner: str, version: int | None = None) -> dict:
        """One checkpoint of a learner with its pickled state (default: the latest version)."""
        query = "SELECT * FROM checkpoints WHERE run_id = ? AND learner = ?"
        params: list = [run_id, learner]
        if version is not None:
            query += " AND version = ?"
            params.append(version)
        df = self.sql(query + " ORDER BY version DESC LIMIT 1", params)
        if df.empty:
            have = self.sql(
                "SELECT DISTINCT learner, version FROM checkpoints WHERE run_id = ? ORDER BY learner, version", [run_id]
            )
            listed = ", ".join(f"{r.learner} v{r.version}" for r in have.itertuples()) or "none"
            wanted = f"{learner!r}" + (f" version {version}" if version is not None else "")
            raise WorkbenchError(f"run {run_id!r} has no checkpoint of learner {wanted}; checkpoints: {listed}")
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
            rows.append(
                {
                    "learner": rec["learner"],
                    "kind": rec["kind"],
                    "events": run["n_events"],
                    "labelled": rec["n_learned"],
                    **json.loads(rec["metrics"] or "{}"),
                    "predict_us": rec["predict_us_mean"],
                    "learn_us": rec["learn_us_mean"],
                    "events_per_s": 1e6 / per_event_us if per_event_us else None,
                }
            )
        return pd.DataFrame(rows)

    def rolling(self, run_id: str, metric: str = "accuracy", window: int = 1000, points: int = 2000) -> pd.DataFrame:
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

    # -- sweeps (issue 12): the sweeps and sweep_runs tables -----------------------------------
    def sweeps(self) -> pd.DataFrame:
        with self._connect() as con:
            if not sweeps.has_tables(con):
                return pd.DataFrame(columns=[c for c in sweeps.columns("sweeps") if c != "config"])
            return con.execute("SELECT * EXCLUDE (config) FROM sweeps ORDER BY created_at").df()

    def sweep_runs(self, sweep_id: str) -> pd.DataFrame:
        with self._connect() as con:
            if not sweeps.has_tables(con):
                return pd.DataFrame(columns=sweeps.columns("sweep_runs"))
            return con.execute("SELECT * FROM sweep_runs WHERE sweep_id = ? ORDER BY rung, idx", [sweep_id]).df()

    def leaderboard(self, sweep_id: str) -> pd.DataFrame:
        """The runs of a sweep, best first by its objective, one column per swept parameter."""
        with self._connect() as con:
            return sweeps.leaderboard(con, sweep_id)

    # -- drift, versions, A/B and calibration (issue 4) -------------------------------------
    def drift_events(self, run_id: str) -> pd.DataFrame:
        """Warnings and drifts: learner ('' for feature drift), seq, detector, kind, action,
        statistic, reason."""
        return self.sql(
            "SELECT * EXCLUDE (run_id) FROM drift_events WHERE run_id = ? ORDER BY seq, learner, detector",
            [run_id],
        )

    def feature_drift(self, run_id: str) -> pd.DataFrame:
        """PSI and KS of each feature per window against the reference window."""
        return self.sql(
            "SELECT * EXCLUDE (run_id) FROM feature_drift WHERE run_id = ? ORDER BY feature, seq",
            [run_id],
        )

    def rollbacks(self, run_id: str) -> pd.DataFrame:
        return self.sql(
            "SELECT * EXCLUDE (run_id) FROM rollbacks WHERE run_id = ? ORDER BY created_at, learner",
            [run_id],
        )

    def refits(self, run_id: str) -> pd.DataFrame:
        """Each fit of a batch baseline: learner, seq, n_samples, fit_ms."""
        return self.sql("SELECT * EXCLUDE (run_id) FROM refits WHERE run_id = ? ORDER BY learner, seq", [run_id])

    def checkpoints(self, run_id: str) -> pd.DataFrame:
        """The kept checkpoints (without their state): learner, version, seq, created_at,
        reason, metrics (JSON text), sha256, size (bytes of state)."""
        return self.sql(
            "SELECT * EXCLUDE (run_id, state), octet_length(state) AS size FROM checkpoints "
            "WHERE run_id = ? ORDER BY learner, version",
            [run_id],
        )

    def rollback(
        self, run_id: str, learner: str, to_version: int | None = None, reason: str = "manual"
    ) -> pd.DataFrame:
        """Make checkpoint ``to_version`` (default: the one before the latest) the learner's
        current model: it is stored again as a new version (reason 'rollback') and the
        rollback is logged. Returns the ``rollbacks`` row."""
        kept = self.checkpoints(run_id)
        kept = kept[kept.learner == learner].sort_values("version")
        if kept.empty:
            raise WorkbenchError(f"learner {learner!r} has no checkpoints in run {run_id!r}")
        latest = kept.iloc[-1]
        if to_version is None:
            if len(kept) < 2:
                raise WorkbenchError(
                    f"learner {learner!r} has only one checkpoint (version {latest.version}): nothing to roll back to"
                )
            to_version = int(kept.version.iloc[-2])
        cp = self.checkpoint_state(run_id, learner, to_version)
        state, sha = cp["state"], cp["sha256"]
        target = kept[kept.version == to_version].iloc[0]
        new_version = int(latest.version) + 1
        with self._connect() as con:
            con.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?, ?, now(), 'rollback', ?, ?, ?)",
                [run_id, learner, new_version, int(latest.seq), target.metrics, sha, state],
            )
            con.execute(
                "INSERT INTO rollbacks VALUES (?, ?, ?, ?, ?, ?, now(), ?)",
                [
                    run_id,
                    learner,
                    int(latest.seq),
                    int(latest.version),
                    int(to_version),
                    reason,
                    new_version,
                ],
            )
        return self.rollbacks(run_id).tail(1).reset_index(drop=True)

    def drift_scores(self, run_id: str, max_delay: int | None = None) -> pd.DataFrame:
        """Each detector on each learner scored against the stream's true drifts: detected,
        missed, false alarms and detection delays (see workbench.drift.scoring)."""
        from workbench.drift.scoring import score

        alarms = self.sql(
            "SELECT learner, detector, seq FROM drift_events WHERE run_id = ? AND kind = 'drift'",
            [run_id],
        )
        return score(alarms, self.true_drifts(run_id), max_delay)

    def _scored(self, run_id: str, learner: str | None, columns: str) -> pd.DataFrame:
        query = (
            f"SELECT learner, seq, {columns} FROM steps WHERE run_id = ? AND y_pred IS NOT NULL "
            "AND y_true IS NOT NULL" + (" AND learner = ?" if learner else "") + " ORDER BY learner, seq"
        )
        return self.sql(query, [run_id] + ([learner] if learner else []))

    def calibration(
        self, run_id: str, learner: str | None = None, bins: int = 10, window: int | None = None
    ) -> pd.DataFrame:
        """Reliability-curve data of the probabilistic classifiers: learner, window_start,
        window_end, bin, confidence, frequency, count (window=None: the whole run)."""
        from workbench.evaluation.calibration import reliability

        return reliability(self._scored(run_id, learner, "y_proba, correct").dropna(), bins, window)

    def calibration_summary(self, run_id: str, window: int | None = None, bins: int = 10) -> pd.DataFrame:
        """Expected calibration error, Brier score and n per learner and window."""
        from workbench.evaluation.calibration import summary

        return summary(self._scored(run_id, None, "y_proba, correct").dropna(), bins, window)

    def ab(
        self,
        run_id: str,
        a: str,
        b: str,
        metric: str = "accuracy",
        window: int = 1000,
        n_boot: int = 1000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Paired comparison of learners ``a`` and ``b`` over the events both scored (see
        workbench.evaluation.ab): one row with the values, diff, bootstrap CI, McNemar, verdict."""
        from workbench.evaluation.ab import compare

        cols = "y_true, y_pred, correct, loss"
        steps = {name: self._scored(run_id, name, cols).drop(columns="learner") for name in (a, b)}
        for name, df in steps.items():
            if df.empty:
                known = ", ".join(self.learners(run_id).learner)
                raise WorkbenchError(f"learner {name!r} has no scored steps in run {run_id!r}; learners: {known}")
        return compare(steps[a], steps[b], a, b, metric, window, n_boot, seed)

    def traffic_split(self, run_id: str, a: str, b: str, ratio: float = 0.5, seed: int = 0) -> pd.DataFrame:
        """What each arm would have scored had live traffic been split: an event goes to ``a``
        when a hash of its id (its position in the replay) and ``seed`` falls below ``ratio``.
        Columns: arm, learner, n, and the run's metrics over the events routed to it."""
        if not 0.0 <= ratio <= 1.0:
            raise WorkbenchError(f"ratio must be between 0 and 1, got {ratio}")
        task = self.run(run_id)["task"]
        metrics = (
            "avg(loss) AS mse, avg(abs(y_true::DOUBLE - y_pred::DOUBLE)) AS mae"
            if task == "regression"
            else "avg(correct::DOUBLE) AS accuracy, avg(loss) AS log_loss"
        )
        query = f"""
            WITH routed AS (
                SELECT seq, CASE WHEN hash(seq, $seed) % 1000000 < $cut THEN 'A' ELSE 'B' END AS arm
                FROM (SELECT DISTINCT seq FROM steps WHERE run_id = $run AND learner IN ($a, $b))
            )
            SELECT r.arm, s.learner, count(*) AS n, {metrics}
            FROM routed r JOIN steps s ON s.seq = r.seq AND s.run_id = $run
                 AND s.learner = CASE r.arm WHEN 'A' THEN $a ELSE $b END
            WHERE s.y_true IS NOT NULL AND s.y_pred IS NOT NULL
            GROUP BY ALL ORDER BY r.arm
        """
        with self._connect() as con:
            return con.execute(
                query,
                {"run": run_id, "a": a, "b": b, "seed": seed, "cut": int(round(ratio * 1000000))},
            ).df()

    # -- production: served predictions joined with their labels ---------------------------------
    def served(self, run_id: str | None = None) -> pd.DataFrame:
        """Every served prediction the update service joined (or saw unlabelled), of one live
        run or of all of them, in the order the labels came."""
        where = "WHERE run_id = $run" if run_id else ""
        return self._served_sql(f"SELECT * FROM served {where} ORDER BY labelled_at NULLS LAST, request_id", run_id)

    def served_metrics(self, run_id: str | None = None) -> pd.DataFrame:
        """Per arm and version: predictions served, labelled, accuracy, log loss, label delay
        (mean and p95, seconds) and the share still unlabelled."""
        where = "WHERE run_id = $run" if run_id else ""
        return self._served_sql(
            f"""SELECT arm, version, count(*) AS n, count(y_true) AS labelled,
                   avg(correct::DOUBLE) AS accuracy, avg(loss) AS log_loss,
                   avg(label_delay_s) AS label_delay_s, quantile_cont(label_delay_s, 0.95) AS label_delay_p95_s,
                   1 - count(y_true) / count(*) AS unlabelled_share
                FROM served {where} GROUP BY arm, version ORDER BY arm, version""",
            run_id,
        )

    def served_ab(self, run_id: str | None = None, metric: str = "accuracy", window: int = 100) -> pd.DataFrame:
        """Arm a against arm b on the requests both predicted (one answered, the other in the
        shadow), with the offline A/B statistics: bootstrap CI over windows and McNemar."""
        from workbench.evaluation.ab import compare

        df = self.served(run_id).dropna(subset=["y_true"])
        sides = {arm: df[df.arm == arm].drop_duplicates("request_id") for arm in ("a", "b")}
        if sides["a"].empty or sides["b"].empty:
            raise WorkbenchError("no served predictions of both arms a and b: deploy with ab: {b: ...}")
        order = {rid: i for i, rid in enumerate(sides["a"].request_id)}
        for arm, side in sides.items():
            sides[arm] = side.assign(seq=side.request_id.map(order)).dropna(subset=["seq"]).astype({"seq": int})
        return compare(sides["a"], sides["b"], "a", "b", metric, window)

    def _served_sql(self, query: str, run_id: str | None) -> pd.DataFrame:
        with self._connect() as con:
            return con.execute(query, {"run": run_id} if run_id else {}).df()

    def online_vs_batch(self, run_id: str, metric: str = "accuracy") -> pd.DataFrame:
        """``ab`` of every online learner against every baseline (one row each; empty when
        the run has no baselines)."""
        kinds = self.learners(run_id)
        online = kinds[kinds.kind == "online"].learner
        batch = kinds[kinds.kind == "batch"].learner
        rows = [self.ab(run_id, a, b, metric) for a in online for b in batch]
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=AB_COLUMNS)

    def _rolling_with_river(self, run_id: str, metric: str, window: int, points: int) -> pd.DataFrame:
        """Metrics DuckDB cannot window (F1, ROC AUC, R2, ...): River's own, over the logged steps."""
        task = self.run(run_id)["task"]
        try:
            make_metric(metric, task)
        except ConfigError as exc:
            sql = [m for m in _SQL_ROLLING if (m in _SQL_REGRESSION) == (task == "regression")]
            allowed = sorted(set(sql) | set(allowed_metrics(task)))
            raise WorkbenchError(
                f"rolling metric {metric!r} is not available for this {task} run; allowed: {', '.join(allowed)}"
            ) from exc
        steps = self.sql(
            "SELECT learner, seq, y_true, y_pred, y_proba FROM steps WHERE run_id = ? "
            "AND y_pred IS NOT NULL AND y_true IS NOT NULL ORDER BY learner, seq",
            [run_id],
        )
        rows = []
        for learner, group in steps.groupby("learner", sort=False):
            rolled = utils.Rolling(type(make_metric(metric, task)), window_size=window)
            parse = float if task == "regression" else _label
            classes = sorted(
                {_label(v) for v in group.y_true.unique()} | {_label(v) for v in group.y_pred.unique()}, key=str
            )
            wants_proba = task != "regression" and not rolled.obj.requires_labels
            every = max(1, len(group) // points)
            last = len(group) - 1
            for k, (seq, y_true, y_pred, proba) in enumerate(
                zip(group.seq, group.y_true, group.y_pred, group.y_proba, strict=False)
            ):
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
