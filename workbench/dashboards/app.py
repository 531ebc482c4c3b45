"""The dashboard: ipywidgets pickers over Plotly FigureWidgets, refreshed live while a run replays.

A replay started in the same kernel keeps the kernel busy, so widget callbacks cannot fire
until it ends; a small watcher thread instead polls the database (DuckDB lets this process read
while its own writer thread appends) and redraws at most once per ``interval`` seconds.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from contextlib import contextmanager
from pathlib import Path

import ipywidgets as widgets
import plotly.graph_objects as go

from workbench.dashboards import data
from workbench.dashboards.panels import PANELS, View, build, open_store
from workbench.dashboards.widget import FigureWidget
from workbench.store import Store


class Dashboard(widgets.VBox):
    """Pickers (run, learners, metric, rolling window) above one FigureWidget per panel.

    With ``runs=None`` it shows every run of the database and follows the newest one, so a
    replay started after it opened appears in it and is drawn as it goes.
    """

    def __init__(
        self, store: Store, runs: list[str] | None = None, live: bool = True, interval: float = 1.0
    ):
        self.store = store
        self.fixed_runs = runs
        self.interval = interval
        self.refreshes = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._seen = data.progress(store) if Path(store.path).exists() else ()
        self._syncing = False
        self.run_picker = widgets.Dropdown(description="run", layout=widgets.Layout(width="420px"))
        self.learner_picker = widgets.SelectMultiple(description="learners", rows=3)
        self.metric_picker = widgets.Dropdown(
            description="metric", layout=widgets.Layout(width="220px")
        )
        self.window_picker = widgets.IntSlider(
            value=1000, min=100, max=20_000, step=100, description="window", continuous_update=False
        )
        self.status = widgets.HTML()
        self.figures = {name: FigureWidget() for name in PANELS}
        controls = widgets.HBox(
            [
                self.run_picker,
                self.learner_picker,
                widgets.VBox([self.metric_picker, self.window_picker]),
            ]
        )
        super().__init__([controls, self.status, *self.figures.values()])
        self.add_class("workbench-dashboard")
        self._sync_runs(select_newest=True)
        self._show_run()
        self.run_picker.observe(lambda _: self._on_run(), "value")
        for picker in (self.learner_picker, self.metric_picker, self.window_picker):
            picker.observe(lambda _: self.refresh(), "value")
        self._follow = runs is None  # follow the newest run until the user picks one
        self._thread = None
        if live:
            self._thread = threading.Thread(
                target=self._watch, name="workbench-dashboard", daemon=True
            )
            self._thread.start()
            _watching.add(self)

    # -- what the user does ------------------------------------------------------------------
    def _on_run(self) -> None:
        if not self._syncing:
            self._follow = False
            self._show_run()

    def _show_run(self) -> None:
        """Set the learner and metric pickers for the picked run, then draw it."""
        run_id = self.run_picker.value
        if run_id is None:
            self.status.value = (
                f"<i>no runs in {self.store.path} yet: replay an experiment with wb.run(...)</i>"
            )
            return
        view = View.of(self.store, run_id)
        with self._quiet():
            self.learner_picker.options = view.learners
            self.learner_picker.value = tuple(view.learners)
            self.metric_picker.options = view.metrics
            self.metric_picker.value = view.metric
            self.window_picker.value = view.window
        self.refresh()

    def refresh(self) -> None:
        """Redraw every panel from the database."""
        if self._syncing or self.run_picker.value is None:
            return
        with self._lock, self.store.session() as store:
            started = time.perf_counter()
            view = View.of(
                store,
                self.run_picker.value,
                list(self.learner_picker.value) or None,
                self.metric_picker.value,
                self.window_picker.value,
            )
            # Read the status first: "finished" then means every step was in when drawn.
            info = store.run(view.run_id)
            built = build(store, view)
            for name, fig in built.items():
                self._replace(self.figures[name], fig)
            self.refreshes += 1
            self.status.value = (
                f"<b>{info['name']}</b> · run {view.run_id} · {info['status']} · "
                f"task {info['task']} · drawn in {time.perf_counter() - started:.2f} s"
            )

    @staticmethod
    def _replace(widget: FigureWidget, fig: go.Figure) -> None:
        with widget.batch_update():
            widget.data = ()
            widget.add_traces(list(fig.data))
            widget.layout = fig.layout
        widget.sync_state()

    # -- live mode ------------------------------------------------------------------------------
    def _sync_runs(self, select_newest: bool) -> None:
        runs = self.store.runs() if Path(self.store.path).exists() else None
        options = (
            []
            if runs is None
            else [
                (f"{r.name} · {r.run_id} · {r.status}", r.run_id)
                for r in runs.itertuples()
                if self.fixed_runs is None or r.run_id in self.fixed_runs
            ]
        )
        with self._quiet():
            current = self.run_picker.value
            self.run_picker.options = options[::-1]  # newest first
            ids = [v for _, v in options]
            if ids and (select_newest or current not in ids):
                self.run_picker.value = ids[-1]
            elif current in ids:
                self.run_picker.value = current

    @contextmanager
    def _quiet(self):
        """Set pickers without each change redrawing the panels."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # keep watching: a replay may hold the file for a moment
                self.status.value = f"<i>live update skipped: {exc}</i>"

    def poll(self) -> bool:
        """Redraw if the database changed since the last look (what the watcher thread calls)."""
        if not Path(self.store.path).exists():
            return False
        seen = data.progress(self.store)
        if seen == self._seen:
            return False
        with self._lock:
            new_run = len(seen) != len(self._seen)
            self._seen = seen
            before = self.run_picker.value
            self._sync_runs(select_newest=self._follow and new_run)
            if self.run_picker.value != before:
                self._show_run()
            else:
                self.refresh()
        return True

    def stop(self) -> None:
        """Stop watching the database (the panels stay as they are)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def close(self) -> None:
        """Stop watching the database and close the widgets."""
        self.stop()
        for fig in self.figures.values():
            fig.close()
        super().close()


#: dashboards whose watcher runs: stopped before the interpreter exits, as a thread killed in the
#: middle of a DuckDB query aborts the process
_watching: weakref.WeakSet[Dashboard] = weakref.WeakSet()


@atexit.register
def _stop_watching() -> None:
    for dash in list(_watching):
        dash.stop()


def dashboard(
    db_or_run=None, runs: list[str] | None = None, live: bool = True, interval: float = 1.0
) -> Dashboard:
    """An interactive dashboard of the runs in a DuckDB file (default ``runs/workbench.duckdb``),
    a Store, or one Run: ``wb.dashboard(run)``. ``runs`` limits it to those run ids. With
    ``live`` it redraws itself (at most every ``interval`` s) while a replay writes."""
    store, runs = open_store(db_or_run, runs)
    return Dashboard(store, runs, live, interval)
