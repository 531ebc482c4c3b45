"""Online Learning Workbench: replay streams through online learners, log every update to DuckDB.

>>> import workbench as wb
>>> run = wb.run("experiments/agrawal_drifts.yaml")      # doctest: +SKIP
>>> run.summary()                                         # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from workbench.errors import ConfigError, DatabaseLockedError, SourceError, WorkbenchError  # noqa: E402
from workbench.experiment import Run, run  # noqa: E402

# `export` the function shadows the subpackage's name on purpose: wb.export(run, "lr", "bundle/")
from workbench.export import BundleError, export, verify  # noqa: E402
from workbench.store import DEFAULT_DB, Store  # noqa: E402


def connect(db: str = DEFAULT_DB) -> Store:
    """The record of experiments in ``db``: ``runs()``, ``steps(run_id)``, ``rolling(...)``, ``sql(...)``."""
    return Store(db)


__all__ = [
    "ConfigError", "DatabaseLockedError", "Run", "SourceError", "Store", "WorkbenchError",
    "__version__", "connect", "run",
    "BundleError", "export", "verify",
]
