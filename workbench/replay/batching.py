"""Mini-batches for learners that learn and predict many events at once (River's ``*_many``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from time import monotonic

from workbench.events import Event


def mini_batches(
    events: Iterable[Event], size: int, timeout: float | None = None
) -> Iterator[list[Event]]:
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
