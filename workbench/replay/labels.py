"""Label delays with exactly the semantics of ``river.stream.simulate_qa``.

``replay.label_delay`` is turned here, once, into the ``moment`` and ``delay`` arguments River
takes; the runner then iterates River's own generator (with ``copy=False``: nothing downstream
mutates the features, and a deep copy per event would cost more than the logging).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from river.stream import simulate_qa

from workbench.config import parse_duration
from workbench.errors import ConfigError
from workbench.events import Event


@dataclass(frozen=True)
class Delay:
    """How long labels take: ``kind`` is 'none', 'events', 'time' or 'field'."""

    kind: str
    value: Any = None

    @property
    def immediate(self) -> bool:
        return self.kind == "none"


def parse_delay(label_delay: int | str, has_time: bool) -> Delay:
    if isinstance(label_delay, int):
        return Delay("none") if label_delay == 0 else Delay("events", label_delay)
    duration = parse_duration(label_delay)
    if duration is not None:
        if not has_time:
            raise ConfigError(
                "replay.label_delay",
                f"{label_delay!r} is an event-time delay, but the source has no event time: set "
                "source.time to a timestamp column, or give the delay as a number of events",
            )
        return Delay("time", duration)
    return Delay("field", label_delay)


def with_field_delay(events: Iterable[Event], field: str, has_time: bool) -> Iterator[Event]:
    """Move each event's delay out of its features (a delay is not something to learn from).

    The field holds a number of events when the stream has no clock, else a duration: a
    timedelta, or a number of seconds.
    """
    for ev in events:
        try:
            value = ev.x.pop(field)
        except KeyError:
            raise ConfigError(
                "replay.label_delay",
                f"event {ev.origin if ev.origin is not None else ''} has no field {field!r}; fields: {', '.join(ev.x)}",
            ) from None
        if has_time and not isinstance(value, timedelta):
            value = timedelta(seconds=value)
        yield ev._replace(delay=value)


def _time(ev: Event):
    return ev.time


def _own_delay(ev: Event, _y) -> Any:
    return ev.delay


def questions_and_answers(events: Iterable[Event], delay: Delay, has_time: bool) -> Iterator[tuple[int, Event, Any]]:
    """Yield ``(seq, event, None)`` for a question and ``(seq, event, y)`` for its answer."""
    pairs = ((ev, ev.y) for ev in events)
    if delay.kind == "events":
        return simulate_qa(pairs, moment=None, delay=delay.value, copy=False)
    if delay.kind == "time":
        return simulate_qa(pairs, moment=_time, delay=delay.value, copy=False)
    if delay.kind == "field":
        return simulate_qa(pairs, moment=_time if has_time else None, delay=_own_delay, copy=False)
    return simulate_qa(pairs, moment=None, delay=None, copy=False)
