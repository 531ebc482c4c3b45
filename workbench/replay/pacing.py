"""``replay.speed``: replay in event time × a factor (for demos), instead of as fast as possible."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from workbench.events import Event


def paced(
    events: Iterable[Event],
    speed: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Event]:
    """Yield each event when ``(its time - the first event's time) / speed`` has passed."""
    first = start = None
    for ev in events:
        if ev.time is not None:
            if first is None:
                first, start = ev.time, clock()
            wait = (ev.time - first).total_seconds() / speed - (clock() - start)
            if wait > 0:
                sleep(wait)
        yield ev
