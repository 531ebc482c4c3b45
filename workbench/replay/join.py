"""Labels that arrive later, in another dump or topic, joined to their events on an id.

Both streams are in event time. A label is revealed at its own message's timestamp and, as in
``river.stream.simulate_qa``, an answer due at time t comes before a question at the same t.
A label that comes before its event is held and revealed right after the event's question.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any

from workbench.events import Event, identity

_LABEL, _EVENT = 0, 1


def _tagged(events: Iterable[Event], tag: int) -> Iterator[tuple[Any, int, Event]]:
    for ev in events:
        yield ev.time, tag, ev


class LabelJoin:
    """Questions and answers ``(seq, event, y)`` (``y`` None for a question), with counts.

    ``n_orphan_labels`` counts labels whose id no event had (known at the end of the replay);
    events whose label never comes stay pending in the runner, which logs them unlabelled.
    """

    def __init__(self) -> None:
        self.n_orphan_labels = 0

    def __call__(
        self, events: Iterable[Event], labels: Iterable[Event]
    ) -> Iterator[tuple[int, Event, Any]]:
        waiting: dict[Any, tuple[int, Event]] = {}  # id -> (seq, event) asked, label not yet seen
        early: dict[Any, Any] = {}  # id -> label seen before its event
        seq = 0
        merged = heapq.merge(
            _tagged(labels, _LABEL), _tagged(events, _EVENT), key=lambda item: item[:2]
        )
        for _, tag, ev in merged:
            key = identity(ev.key)  # 1 and true, 0 and 0.0 are different ids
            if tag == _EVENT:
                yield seq, ev, None
                if key in early:
                    yield seq, ev, early.pop(key)
                else:
                    waiting[key] = (seq, ev)
                seq += 1
            elif key in waiting:
                asked_seq, asked = waiting.pop(key)
                yield asked_seq, asked, ev.y
            else:  # (a second label for an id is a duplicate or a dead letter of its source)
                early[key] = ev.y
        self.n_orphan_labels += len(early)
