"""What every source offers: lazily yielded events, the task they pose, what went wrong."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from workbench.events import DeadLetter, Event, TrueDrift

DeadLetterSink = Callable[[DeadLetter], None]


class Source(Protocol):
    """A stream of events. It knows nothing about models or the store."""

    #: "binary", "multiclass" or "regression"
    task: str
    #: a number of events when known up front (for progress bars), else None
    length: int | None

    def events(self, dead_letter: DeadLetterSink) -> Iterator[Event]:
        """Yield events lazily, in constant memory; hand unusable records to ``dead_letter``."""
        ...

    def true_drifts(self) -> list[TrueDrift]:
        """Drifts the stream was built with (synthetic streams), else []."""
        ...


def river_task(task: str) -> str:
    """Map River's task labels ('Binary classification', ...) to ours."""
    return {
        "Binary classification": "binary",
        "Multi-class classification": "multiclass",
        "Regression": "regression",
    }.get(task, task)


def has_non_finite(column: pa.Array | pa.ChunkedArray) -> bool:
    """NaN or ±Infinity in a float column (pyarrow reads them from CSV, Parquet and even JSON),
    checked in C: the rows are then refused one by one with ``events.non_finite``."""
    if not pa.types.is_floating(column.type):
        return False
    return (pc.sum(pc.is_finite(column)).as_py() or 0) != len(column) - column.null_count
