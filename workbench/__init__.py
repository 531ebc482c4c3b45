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
              interval: float = 1.0):
    """The interactive dashboard of a DuckDB file, Store or Run (see workbench.dashboards)."""
    from workbench.dashboards import dashboard as make  # widgets load only when asked for

    return make(db_or_run, runs, live, interval)


def report(db_or_run=None, runs: list[str] | None = None, output: str | Path = "report.html",
           metric: str | None = None, window: int | None = None) -> Path:
    """One standalone, offline HTML file with the dashboard's panels (see workbench.dashboards)."""
    from workbench.dashboards import report as write

    return write(db_or_run, runs, output, metric, window)


__all__ = [
    "ConfigError", "DatabaseLockedError", "Run", "SourceError", "Store", "WorkbenchError",
    "__version__", "connect", "dashboard", "report", "run",
    "BundleError", "export", "verify",
]
