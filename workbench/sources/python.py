"""Any Python iterable of ``(x, y)`` pairs — a River dataset, a list, a generator — from a notebook."""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence

from workbench.config import SourceConfig
from workbench.errors import ConfigError
from workbench.events import Event, TrueDrift, make_event
from workbench.sources.base import DeadLetterSink, river_task

_NO_EXTRAS = (None, None, None, None)


class IterableSource:
    """Replays ``pairs`` as they come; each ``x`` is handed to the learners as it is."""

    def __init__(self, config: SourceConfig, pairs: Iterable):
        self.config = config
        self.pairs = pairs

    def validate(self) -> None:
        self.task  # noqa: B018 — inferring the task is the check

    @functools.cached_property
    def task(self) -> str:  # (cached: validate() asks first, then the replay)
        if self.config.task:
            return self.config.task
        if hasattr(self.pairs, "task"):  # a River dataset says what it is
            return river_task(self.pairs.task)
        if isinstance(self.pairs, Sequence) and self.pairs:
            ys = list(map(operator.itemgetter(1), self.pairs))  # in C: a list can hold millions
            if all(map(isinstance, ys, itertools.repeat(bool))):
                return "binary"
            if all(map(isinstance, ys, itertools.repeat(float))):
                return "regression"
            return "binary" if len(set(ys)) <= 2 else "multiclass"
        raise ConfigError(
            "source.task",
            "cannot infer the task of an iterator without consuming it: "
            "set source.task to binary, multiclass or regression",
        )

    @property
    def length(self) -> int | None:
        n = len(self.pairs) if isinstance(self.pairs, Sequence) else None
        return min(n, self.config.n) if n is not None and self.config.n else (self.config.n or n)

    def true_drifts(self) -> list[TrueDrift]:
        return []

    def events(self, dead_letter: DeadLetterSink) -> Iterator[Event]:
        pairs = map(tuple, itertools.islice(self.pairs, self.config.n))
        # (x, y) + (None,) * 4, in C: the pairs reach the learners untouched and uncopied.
        return map(make_event, map(operator.add, pairs, itertools.repeat(_NO_EXTRAS)))
