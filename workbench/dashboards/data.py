"""The tidy DataFrames behind each panel, aggregated in DuckDB so that a run of millions of
steps reaches the browser as a few thousand points per trace.

Small tables (drift events, rollbacks, feature drift, checkpoints) are read with the Store's
own methods; a run without those rows gives an empty frame, and the panel says why.
"""

from __future__ import annotations

import itertools

import pandas as pd

from workbench.errors import WorkbenchError
from workbench.evaluation.ab import compare
from workbench.store import Store

#: rolling metrics the store computes, by task
METRICS = {
    "classification": ["accuracy", "error_rate", "log_loss"],
    "regression": ["mae", "rmse", "mse"],
}
#: at most this many points per rolling curve
POINTS = 2000
#: latency histogram bins per decade
BINS_PER_DECADE = 12


def metrics_for(task: str | None, configured: list[str] | None = None) -> list[str]:
    """The metrics DuckDB windows for this task, then the run's own (``metrics:`` in its
    config, e.g. roc_auc or f1), which the store rolls with River over the logged steps."""
    sql = METRICS["regression" if task and "regression" in task.lower() else "classification"]
    return sql + [m for m in configured or [] if m not in sql]


def only(frame: pd.DataFrame, learners: list[str] | None) -> pd.DataFrame:
    if learners is None or frame.empty or "learner" not in frame:
        return frame
    return frame[frame.learner.isin(learners)]


def versions(store: Store, run_id: str) -> pd.DataFrame:
    """learner, version, first_seq, last_seq, n: the stretch of the stream each version served."""
    return store.sql(
        """
        SELECT learner, model_version AS version, min(seq) AS first_seq, max(seq) AS last_seq,
               count(*) AS n
        FROM steps WHERE run_id = ? GROUP BY ALL ORDER BY learner, version
    """,
        [run_id],
    )


def latency(store: Store, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(histogram, quantiles) of predict and learn times, binned on a log scale in DuckDB."""
    k = BINS_PER_DECADE
    histogram = store.sql(
        f"""
        WITH timed AS (
            SELECT learner, 'predict' AS phase, predict_us AS us FROM steps
            WHERE run_id = $run AND predict_us > 0
            UNION ALL
            SELECT learner, 'learn', learn_us FROM steps WHERE run_id = $run AND learn_us > 0
        )
        SELECT learner, phase, pow(10, (floor(log10(us) * {k}) + 0.5) / {k}) AS us,
               count(*) AS count
        FROM timed GROUP BY ALL ORDER BY learner, phase, us
    """,
        {"run": run_id},
    )
    # One pass with a list of quantiles per column is several times faster than one per phase.
    wide = store.sql(
        """
        SELECT learner, quantile_cont(predict_us, [0.5, 0.95, 0.99]) AS predict,
               quantile_cont(learn_us, [0.5, 0.95, 0.99]) AS learn
        FROM steps WHERE run_id = ? GROUP BY learner ORDER BY learner
    """,
        [run_id],
    )
    quantiles = pd.DataFrame(
        [
            (
                row.learner,
                phase,
                *(getattr(row, phase) if getattr(row, phase) is not None else [None] * 3),
            )
            for row in wide.itertuples()
            for phase in ("predict", "learn")
        ],
        columns=["learner", "phase", "p50", "p95", "p99"],
    )
    return histogram, quantiles


def checkpoints(store: Store, run_id: str) -> pd.DataFrame:
    """Checkpoints taken during the replay (the final one of every run is left out: it marks
    the end of the stream, not an event in it)."""
    frame = store.checkpoints(run_id)
    return frame[frame.reason != "final"]


def ab(store: Store, run_id: str, learners: list[str], metric: str) -> pd.DataFrame:
    """The first learner against each other one, one row per pair, by the workbench's A/B
    statistics (workbench.evaluation.ab) — fed only the numeric columns the metric needs,
    which DuckDB hands over far faster than the label text ``Store.ab`` reads."""
    pairs = [(learners[0], other) for other in learners[1:]] if learners else []
    text = ", y_true, y_pred" if metric == "mae" else ""
    rows = []
    for a, b in pairs:
        steps = [
            store.sql(
                f"SELECT seq, correct, loss{text} FROM steps WHERE run_id = ? AND learner = ? "
                "AND y_pred IS NOT NULL AND y_true IS NOT NULL ORDER BY seq",
                [run_id, name],
            )
            for name in (a, b)
        ]
        if steps[0].empty or steps[1].empty:
            continue
        try:
            rows.append(compare(*steps, a, b, metric))
        except WorkbenchError:  # e.g. log loss of a classifier without probabilities
            continue
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def calibration(
    store: Store, run_id: str, bins: int = 10, window: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reliability curve over the whole run, ECE and Brier per ``window`` events): the frames
    of ``Store.calibration`` and ``Store.calibration_summary``, aggregated in DuckDB rather
    than in pandas so a run of millions of steps stays interactive. Bins as
    sklearn.calibration.calibration_curve: uniform, an edge value in the lower bin."""
    binned = f"""
        WITH scored AS (
            SELECT learner, seq, y_proba AS p, correct::DOUBLE AS c,
                   greatest(0, least({bins} - 1, ceil(y_proba * {bins}) - 1))::INTEGER AS bin
            FROM steps WHERE run_id = $run AND y_pred IS NOT NULL AND y_true IS NOT NULL
                 AND y_proba IS NOT NULL AND correct IS NOT NULL
        )
    """
    curve = store.sql(
        binned
        + """
        SELECT learner, min(min(seq)) OVER w AS window_start, max(max(seq)) OVER w AS window_end,
               bin, avg(p) AS confidence, avg(c) AS frequency, count(*) AS count
        FROM scored GROUP BY learner, bin WINDOW w AS (PARTITION BY learner) ORDER BY learner, bin
    """,
        {"run": run_id},
    )
    start = f"seq // {window} * {window}" if window else "0"
    summary = store.sql(
        binned
        + f"""
        , per_bin AS (
            SELECT learner, {start} AS window_start, min(seq) AS first, max(seq) AS last,
                   count(*) AS n, abs(sum(p) - sum(c)) AS gap, sum((p - c) ^ 2) AS squared
            FROM scored GROUP BY learner, window_start, bin
        )
        SELECT learner, {"window_start" if window else "min(first)"} AS window_start,
               {f"window_start + {window} - 1" if window else "max(last)"} AS window_end,
               sum(gap) / sum(n) AS ece, sum(squared) / sum(n) AS brier, sum(n) AS n
        FROM per_bin GROUP BY learner, window_start ORDER BY learner, window_start
    """,
        {"run": run_id},
    )
    return curve, summary


def data_quality(store: Store, run_ids: list[str]) -> pd.DataFrame:
    runs = store.runs()
    return runs[runs.run_id.isin(run_ids)]


def progress(store: Store) -> tuple:
    """A cheap fingerprint of the database that changes whenever a replay writes to it."""
    runs = store.sql("SELECT run_id, status FROM runs ORDER BY created_at")
    running = runs.run_id[runs.status.isin(["running", "live"])].tolist()  # live: the update service
    steps = 0
    if running:
        steps = store.sql("SELECT count(*) AS n FROM steps WHERE run_id = ?", running[:1]).n.iloc[0]
    return tuple(itertools.chain(runs.run_id, runs.status, [steps]))
