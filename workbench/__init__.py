"""Online Learning Workbench: replay streams through online learners, log every update to DuckDB.

>>> import workbench as wb
>>> run = wb.run("experiments/agrawal_drifts.yaml")      # doctest: +SKIP
>>> run.summary()                                         # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

from workbench.errors import ConfigError, DatabaseLockedError, SourceError, WorkbenchError  # noqa: E402
from workbench.experiment import Run, run  # noqa: E402

# `export` the function shadows the subpackage's name on purpose: wb.export(run, "lr", "bundle/")
from workbench.export import BundleError, export, verify  # noqa: E402
from workbench.store import DEFAULT_DB, Store  # noqa: E402


def connect(db: str = DEFAULT_DB) -> Store:
    """The record of experiments in ``db``: ``runs()``, ``steps(run_id)``, ``rolling(...)``, ``sql(...)``."""
    return Store(db)


def dashboard(db_or_run=None, runs: list[str] | None = None, live: bool = True,
              interval: float = 1.0, sweep: str | None = None):
    """The interactive dashboard of a DuckDB file, Store or Run (see workbench.dashboards);
    with ``sweep=ID`` (or a Sweep) the sweep view: leaderboard, parameters, top runs, drift."""
    if sweep is not None or _is_sweep(db_or_run):
        from workbench.dashboards.sweep import sweep_dashboard

        return sweep_dashboard(*_sweep_args(db_or_run, sweep))
    from workbench.dashboards import dashboard as make  # widgets load only when asked for

    return make(db_or_run, runs, live, interval)


def report(db_or_run=None, runs: list[str] | None = None, output: str | Path = "report.html",
           metric: str | None = None, window: int | None = None, sweep: str | None = None) -> Path:
    """One standalone, offline HTML file with the dashboard's panels (see workbench.dashboards);
    with ``sweep=ID`` (or a Sweep) the sweep view's panels."""
    if sweep is not None or _is_sweep(db_or_run):
        from workbench.dashboards.sweep import sweep_report

        return sweep_report(*_sweep_args(db_or_run, sweep), output=output)
    from workbench.dashboards import report as write

    return write(db_or_run, runs, output, metric, window)


def sweep(config, workers: int | None = None, ray: bool = False, ray_address: str | None = None,
          db: str | None = None, record: str | None = None, overrides: list[str] | None = None,
          progress: bool = True):
    """Run a sweep file's configurations in parallel (see workbench.sweeps); returns a Sweep."""
    from workbench.sweeps import sweep as run_sweep

    return run_sweep(config, workers, ray, ray_address, db, record, overrides, progress)


def _is_sweep(obj) -> bool:
    from workbench.sweeps import Sweep

    return isinstance(obj, Sweep)


def _sweep_args(db_or_sweep, sweep_id: str | None) -> tuple:
    if _is_sweep(db_or_sweep):
        return db_or_sweep.store, sweep_id or db_or_sweep.id
    return db_or_sweep, sweep_id


__all__ = [
    "ConfigError", "DatabaseLockedError", "Run", "SourceError", "Store", "WorkbenchError",
    "__version__", "connect", "dashboard", "report", "run", "sweep",
    "BundleError", "export", "verify",
]
