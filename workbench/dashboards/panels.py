"""Every panel of one run, as figures: shared by the live dashboard and the HTML report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go

from workbench.dashboards import data, figures
from workbench.store import DEFAULT_DB, Store

#: the panels, in the order they are shown
PANELS = ["rolling", "versions", "latency", "calibration", "feature_drift", "ab", "data_quality"]


def open_store(db_or_run, runs: list[str] | None) -> tuple[Store, list[str] | None]:
    """A path (default ``runs/workbench.duckdb``), a Store or a Run; a Run alone means that run."""
    if hasattr(db_or_run, "store") and hasattr(db_or_run, "id"):
        return db_or_run.store, runs or [db_or_run.id]
    if isinstance(db_or_run, Store):
        return db_or_run, runs
    return Store(Path(db_or_run if db_or_run is not None else DEFAULT_DB)), runs


@dataclass
class View:
    """What the user picked: a run, some of its learners, a metric and a rolling window."""

    run_id: str
    learners: list[str] | None = None
    metric: str | None = None
    window: int | None = None
    task: str | None = field(default=None, repr=False)
    metrics: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def of(
        cls,
        store: Store,
        run_id: str,
        learners: list[str] | None = None,
        metric: str | None = None,
        window: int | None = None,
    ) -> View:
        """Fill what was not picked from the run itself: all learners, the task's first metric,
        the config's ``rolling_window`` (1,000 events if it has none)."""
        info = store.run(run_id)
        names = all_learners(store, run_id)
        metrics = data.metrics_for(info["task"], info["config"].get("metrics"))
        window = window or int(info["config"].get("rolling_window") or 1000)
        return cls(run_id, learners or names, metric or metrics[0], window, info["task"], metrics)


def all_learners(store: Store, run_id: str) -> list[str]:
    """The run's learners in config order (online arms, then baselines), known before the
    run has finished."""
    names = store.learners(run_id).learner.tolist()
    if not names:
        config = store.run(run_id)["config"]
        names = [arm["name"] for key in ("learners", "baselines") for arm in config.get(key) or []]
    return names


def build(store: Store, view: View, panels: list[str] | None = None) -> dict[str, go.Figure]:
    """The figures of ``panels`` (default: all) for ``view``."""
    with store.session() as shared:
        return _build(shared, view, panels)


def _build(store: Store, view: View, panels: list[str] | None) -> dict[str, go.Figure]:
    run, chosen = view.run_id, view.learners
    palette = figures.colors(all_learners(store, run))
    makers = {
        "rolling": lambda: figures.rolling_metric(
            data.only(store.rolling(run, view.metric, view.window, data.POINTS), chosen),
            view.metric,
            view.window,
            store.true_drifts(run),
            data.only(store.drift_events(run), chosen),
            data.only(data.checkpoints(store, run), chosen),
            data.only(store.rollbacks(run), chosen),
            palette,
        ),
        "versions": lambda: figures.version_timeline(
            data.only(data.versions(store, run), chosen), palette
        ),
        "latency": lambda: figures.latency(
            *(data.only(f, chosen) for f in data.latency(store, run)), palette=palette
        ),
        "calibration": lambda: figures.calibration(
            *(data.only(f, chosen) for f in data.calibration(store, run, window=view.window)),
            palette=palette,
        ),
        "feature_drift": lambda: figures.feature_drift(store.feature_drift(run)),
        "ab": lambda: figures.ab_table(data.ab(store, run, chosen or [], view.metric)),
        "data_quality": lambda: figures.data_quality(data.data_quality(store, [run])),
    }
    return {name: makers[name]() for name in panels or PANELS}
