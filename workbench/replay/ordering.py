"""Event time: merge partitions by timestamp, hold back late-comers, and deal with late events.

A dump or a live consumer hands over messages partition by partition (kcat interleaves runs of
a few hundred messages of each partition, each partition in offset order), not in time order.
A watermark puts them back in order with bounded memory, as stream processors do: each
partition's newest event time, the oldest of those over the partitions that are active, minus
``allowed_lateness``. An event is released once the watermark passes it. A partition that has
not been heard from for ``merge_window`` messages is idle (it stops holding the others back),
and nothing is released before ``merge_window`` messages have shown which partitions exist.

An event that arrives after events later than it were released is *late*: it is counted and,
by ``replay.late``, sent to dead letters (default) or replayed where it arrived, its position
recorded as late.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import timedelta
from operator import attrgetter

from workbench.events import DeadLetter, Event
from workbench.sources.base import DeadLetterSink
from workbench.sources.kafka_records import raw_event

#: messages after which a silent partition is idle, and that are read before anything is released
MERGE_WINDOW = 1_000


def merge_partitions(streams: list[Iterable[Event]]) -> Iterator[Event]:
    """Streams (one per file or partition, each roughly in time order) merged by event time."""
    if len(streams) == 1:
        return iter(streams[0])
    return heapq.merge(*streams, key=attrgetter("time"))


def _partition(origin):
    """(topic, partition) of a Kafka origin; everything else is one partition."""
    return origin[:2] if isinstance(origin, tuple) else None


def origin_text(origin) -> str:
    """topic/partition/offset for a Kafka origin, else the origin as it is."""
    return "/".join(map(str, origin)) if isinstance(origin, tuple) else str(origin)


class EventTimeOrder:
    """Reorders events by time (see the module docstring); counts and records late events."""

    def __init__(
        self,
        allowed_lateness: timedelta,
        late: str,
        dead_letter: DeadLetterSink,
        merge_window: int = MERGE_WINDOW,
    ):
        self.allowed_lateness = allowed_lateness
        self.late = late
        self.dead_letter = dead_letter
        self.merge_window = merge_window
        self.n_late = 0
        #: (position in replay order, origin, event time, how far behind) of late events replayed
        self.replayed_late: list[tuple[int, str, object, timedelta]] = []

    def __call__(self, events: Iterable[Event]) -> Iterator[Event]:
        heap: list = []
        push, pop = heapq.heappush, heapq.heappop
        lateness, window = self.allowed_lateness, self.merge_window
        newest: dict = {}  # partition -> (newest event time, arrival of its last message)
        arrived = released_n = 0
        released = None
        for ev in events:
            t = ev.time
            if released is not None and t < released:
                self._late(ev, released, released_n)
                if self.late == "replay":
                    released_n += 1
                    yield ev
                continue
            part = _partition(ev.origin)
            seen = newest.get(part)
            newest[part] = (t if seen is None or t > seen[0] else seen[0], arrived)
            push(heap, (t, arrived, ev))
            arrived += 1
            if arrived < window:
                continue
            watermark = (
                min(time for time, last in newest.values() if arrived - last <= window) - lateness
            )
            while heap and heap[0][0] <= watermark:
                released, _, out = pop(heap)
                released_n += 1
                yield out
            if len(newest) > 1 and not arrived % window:  # forget partitions idle for long
                newest = {p: v for p, v in newest.items() if arrived - v[1] <= window}
        while heap:
            yield pop(heap)[2]

    def _late(self, ev: Event, released, position: int) -> None:
        self.n_late += 1
        behind = released - ev.time
        if self.late == "replay":
            self.replayed_late.append((position, origin_text(ev.origin), ev.time, behind))
            return
        self.dead_letter(
            DeadLetter(
                origin_text(ev.origin),
                f"late: event time {ev.time} is {behind} behind events already replayed, more than "
                f"replay.allowed_lateness ({self.allowed_lateness}) allows; "
                "replay.late: replay keeps such events",
                raw_event(ev),
            )
        )
