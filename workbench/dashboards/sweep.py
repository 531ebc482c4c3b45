"""The sweep view: leaderboard, objective against each swept parameter, rolling metric of the
top-k runs, drift detection per detector setting — in Jupyter (``wb.dashboard(db, sweep=ID)``)
and in the offline report (``wb.report(db, sweep=ID)``, ``workbench report --sweep ID``)."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from workbench import __version__
from workbench.dashboards import sweep_figures as figs
from workbench.dashboards.panels import open_store
from workbench.errors import WorkbenchError
from workbench.store import Store

SWEEP_PANELS = ["leaderboard", "objective", "top_k", "drift"]


def sweep_data(store: Store, sweep_id: str, k: int = 5, window: int | None = None) -> dict:
    """The sweep view's DataFrames (and its objective), read once."""
    info = store.sweeps().set_index("sweep_id")
    if sweep_id not in info.index:
        known = ", ".join(info.index) or "none yet"
        raise WorkbenchError(f"no sweep {sweep_id!r} in {store.path}; sweeps there: {known}")
    metric, learner = info.loc[sweep_id, "objective_metric"], info.loc[sweep_id, "objective_learner"]
    board = store.leaderboard(sweep_id)
    finished = board[board.status.isin(["finished", "stopped"]) & board.run_id.notna()]
    rolling, scores = [], []
    for row in finished.itertuples():
        config = store.run(row.run_id)["config"]
        name = learner if isinstance(learner, str) else config["learners"][0]["name"]
        if len(rolling) < k:
            curve = store.rolling(row.run_id, metric, window or int(config.get("rolling_window") or 1000))
            rolling.append(curve[curve.learner == name].assign(label=f"#{row.rank} {row.label}"))
        drift = store.drift_scores(row.run_id)
        drift = drift[drift.learner == name]
        setting = _setting(board.attrs["swept"], board.loc[row.Index])
        scores += [{**rec, "setting": setting or rec["detector"]} for rec in drift.to_dict("records")]
    return {
        "metric": metric,
        "window": window or 1000,
        "board": board,
        "swept": board.attrs["swept"],
        "rolling": pd.concat(rolling) if rolling else pd.DataFrame(columns=["label", "seq", "value"]),
        "drift": _by_setting(pd.DataFrame(scores)),
    }


def _setting(swept: list[str], row: pd.Series) -> str:
    """The drift keys of a run's swept parameters, e.g. ``delta=0.002``."""
    return " ".join(f"{p.rsplit('.', 1)[-1]}={row[p]}" for p in swept if p.startswith("drift"))


def _by_setting(scores: pd.DataFrame) -> pd.DataFrame:
    if scores.empty:
        return scores
    return (
        scores.groupby("setting", sort=False)
        .agg(
            runs=("detector", "size"),
            detected=("detected", "mean"),
            missed=("missed", "mean"),
            false_alarms=("false_alarms", "mean"),
            mean_delay=("mean_delay", "mean"),
        )
        .reset_index()
    )


def sweep_figures(store: Store, sweep_id: str, k: int = 5, window: int | None = None) -> dict[str, go.Figure]:
    """The four panels of a sweep."""
    with store.session() as shared:
        d = sweep_data(shared, sweep_id, k, window)
    return {
        "leaderboard": figs.leaderboard(d["board"], d["swept"], d["metric"]),
        "objective": figs.objective_by_parameter(d["board"], d["swept"], d["metric"]),
        "top_k": figs.top_runs_rolling(d["rolling"], d["metric"], d["window"]),
        "drift": figs.drift_by_setting(d["drift"]),
    }


class SweepView(widgets.VBox):
    """A sweep picker and a top-k slider above the four panels."""

    def __init__(self, store: Store, sweep_id: str | None = None, k: int = 5):
        from workbench.dashboards.widget import FigureWidget

        self.store = store
        ids = store.sweeps().sweep_id.tolist()
        if not ids:
            raise WorkbenchError(
                f"no sweeps in {store.path} yet: run one with `workbench sweep FILE --db {store.path}`"
            )
        self.sweep_picker = widgets.Dropdown(options=ids, value=sweep_id or ids[-1], description="sweep")
        self.k_picker = widgets.IntSlider(value=k, min=1, max=20, description="top k", continuous_update=False)
        self.figures = {name: FigureWidget() for name in SWEEP_PANELS}
        super().__init__([widgets.HBox([self.sweep_picker, self.k_picker]), *self.figures.values()])
        self.add_class("workbench-sweep")
        self.refresh()
        for picker in (self.sweep_picker, self.k_picker):
            picker.observe(lambda _: self.refresh(), "value")

    def refresh(self) -> None:
        built = sweep_figures(self.store, self.sweep_picker.value, self.k_picker.value)
        for name, fig in built.items():
            with self.figures[name].batch_update():
                self.figures[name].data = []
                self.figures[name].add_traces(list(fig.data))
                self.figures[name].layout = fig.layout


def sweep_dashboard(db_or_store=None, sweep_id: str | None = None, k: int = 5) -> SweepView:
    store, _ = open_store(db_or_store, None)
    return SweepView(store, sweep_id, k)


def sweep_report(db_or_store=None, sweep_id: str | None = None, output: str | Path = "sweep.html", k: int = 5) -> Path:
    """One offline HTML file with the sweep's four panels (default: the latest sweep)."""
    store, _ = open_store(db_or_store, None)
    if sweep_id is None:
        ids = store.sweeps().sweep_id.tolist()
        if not ids:
            raise WorkbenchError(f"no sweeps in {store.path} yet")
        sweep_id = ids[-1]
    figures = sweep_figures(store, sweep_id, k)
    divs = "\n".join(
        f'<div class="panel" data-panel="{name}">'
        + fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"sweep-{name}", config={"displaylogo": False})
        + "</div>"
        for name, fig in figures.items()
    )
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Sweep report</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222}"
        ".meta{color:#666;font-size:13px}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>Sweep {html.escape(sweep_id)}</h1><p class=meta>{html.escape(store.path)} · generated {generated}"
        f" · workbench {__version__}</p><section class='sweep' data-sweep='{html.escape(sweep_id)}'>{divs}</section>"
        "</body></html>"
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    return output
