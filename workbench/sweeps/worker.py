"""One run of a sweep, in a worker process: the ordinary ``workbench.run`` into the run's own
DuckDB shard. The result is the shard itself (read back by the coordinator), so a worker needs
no channel back and a killed worker leaves nothing half-reported."""

from __future__ import annotations

import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Task:
    """What a worker needs: the expanded config and where its shard goes."""

    key: str
    rung: int
    config: dict[str, Any]
    shard: str

    @property
    def error_file(self) -> Path:
        return Path(self.shard).with_suffix(".error")


def run_task(task: Task) -> None:
    """Replay the task's config into a fresh shard; on failure leave the traceback beside it."""
    from workbench.experiment import run

    shard = Path(task.shard)
    shard.parent.mkdir(parents=True, exist_ok=True)
    for stale in (shard, shard.with_suffix(".duckdb.wal"), task.error_file):
        stale.unlink(missing_ok=True)  # a killed or failed earlier attempt
    try:
        with warnings.catch_warnings():  # an interrupted run is reported by the sweep, not per worker
            warnings.simplefilter("ignore", UserWarning)
            run(task.config, db=shard, progress=False)
    except BaseException as exc:
        task.error_file.write_text(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        raise
