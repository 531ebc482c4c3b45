"""Any Python iterable of ``(x, y)`` pairs — a River dataset, a list, a generator — from a notebook."""

from __future__ import annotations

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

    @property
    def task(self) -> str:
        if self.config.task:
            return self.config.task
        if hasattr(self.pairs, "task"):  # a River dataset says what it is
            return river_task(self.pairs.task)
        if isinstance(self.pairs, Sequence) and self.pairs:
            ys = [pair[1] for pair in self.pairs]
            if all(isinstance(y, bool) for y in ys):
                return "binary"
            if all(isinstance(y, float) for y in ys):
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
