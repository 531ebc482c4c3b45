"""Mini-batches for learners that learn and predict many events at once (River's ``*_many``).

Prequential, a batch at a time: every event of a batch is predicted by the model as it was
before the batch (``predict_*_many``), then the whole batch is learned (``learn_many``), then
the batch is scored and logged, one step per event. With ``batch_size: 1`` this is exactly
the one-at-a-time replay. A batch reaches the runner as a list of events or, from a columnar
source, as ``workbench.columns.Columns``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from time import monotonic

from workbench.events import Event


def mini_batches(events: Iterable[Event], size: int, timeout: float | None = None) -> Iterator[list[Event]]:
    """Lists of up to ``size`` events; with ``timeout`` (seconds, for live sources) a batch is
    also cut once its first event has waited that long, checked as each event arrives."""
    it = iter(events)
    if timeout is None:
        while batch := list(islice(it, size)):
            yield batch
        return
    batch: list[Event] = []
    started = 0.0
    for ev in it:
        if not batch:
            started = monotonic()
        batch.append(ev)
        if len(batch) >= size or monotonic() - started >= timeout:
            yield batch
            batch = []
    if batch:
        yield batch
