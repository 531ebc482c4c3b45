"""A mini-batch as columns: the frame and Series River's ``*_many`` take, made from events'
dicts or straight from a columnar source (a file's Arrow batches), the same either way."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from itertools import chain

import numpy as np
import pandas as pd

from workbench.events import Event, event_time, event_x, event_y


class Columns:
    """A mini-batch as columns: what ``*_many`` learners take (``frame()``, ``labels()``) and
    what scoring and logging read (``ys``, ``times``).

    Made from a list of events (``Columns.of``) or straight from a columnar source (a file's
    Arrow batches: ``matrix`` holds the float features, ``labels`` the target as numpy), whose
    ``events`` are then made only if something asks for them (an arm without ``*_many``, the
    schema of the first events). Either way a learner sees the same frame and Series.
    """

    def __init__(
        self,
        ys: list,
        times: list,
        make_events: Callable[[int, int], list[Event]],
        names: pd.Index | None = None,
        matrix: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        rows: range | None = None,
    ):
        """``make_events(start, stop)`` makes the events of rows ``start:stop`` of the source's
        batch; ``rows`` are this batch's rows in it (default: all of them)."""
        self.ys, self.times = ys, times
        self._make_events, self._names, self._matrix, self._labels = make_events, names, matrix, labels
        self._rows = range(len(ys)) if rows is None else rows

    @classmethod
    def of(cls, events: list[Event]) -> Columns:
        """The columns of a list of events (which are kept as they are)."""
        batch = cls(list(map(event_y, events)), list(map(event_time, events)), lambda start, stop: events[start:stop])
        batch.__dict__["events"] = events
        return batch

    @cached_property
    def events(self) -> list[Event]:
        return self._make_events(self._rows.start, self._rows.stop)

    def __len__(self) -> int:
        return len(self.ys)

    def __getitem__(self, rows: slice) -> Columns:
        """Some rows (a slice): views of this batch's columns; their events are made alone, or
        sliced from this batch's once it has made them."""
        matrix, labels, made = self._matrix, self._labels, self.__dict__.get("events")
        first = self._rows.start
        return Columns(
            self.ys[rows],
            self.times[rows],
            self._make_events if made is None else lambda start, stop: made[start - first : stop - first],
            self._names,
            None if matrix is None else matrix[rows],
            None if labels is None else labels[rows],
            self._rows[rows],
        )

    @classmethod
    def concat(cls, parts: list[Columns]) -> Columns:
        """The rows of ``parts`` in turn: one matrix if they all have one of the same features."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        same = all(p._matrix is not None and p._names is first._names for p in parts)
        labels = [p._labels for p in parts]
        plain = all(a is not None and a.dtype == labels[0].dtype for a in labels)
        return cls(
            list(chain.from_iterable(p.ys for p in parts)),
            list(chain.from_iterable(p.times for p in parts)),
            lambda start, stop: list(chain.from_iterable(p.events for p in parts))[start:stop],
            first._names if same else None,
            np.concatenate([p._matrix for p in parts]) if same else None,
            np.concatenate(labels) if plain else None,
        )

    def frame(self) -> pd.DataFrame:
        """The features as ``frame`` makes them from the events' dicts: a new frame (over its own
        column-major matrix) at every call, so that no learner sees what another did to its frame."""
        if self._matrix is None:
            return frame(list(map(event_x, self.events)))
        return pd.DataFrame(self._matrix.copy(order="F"), columns=self._names, copy=False)

    def labels(self) -> pd.Series:
        """The targets as ``pd.Series(ys)`` makes them."""
        return series(self.ys) if self._labels is None else pd.Series(self._labels)


#: the numpy dtype pandas gives a list of Python values all of one of these types
_PLAIN = {bool: np.bool_, int: np.int64, float: np.float64}


def series(values: list) -> pd.Series:
    """``pd.Series(values)``, through numpy when the values are all bools, all ints or all
    floats: pandas infers the dtype value by value (~0.3 µs each), numpy fills the same dtype
    in C. Anything else (None, text, a mix, ints past int64) is pandas' own."""
    kinds = set(map(type, values))
    kind = _PLAIN.get(kinds.pop()) if len(kinds) == 1 else None
    if kind is not None:
        try:
            return pd.Series(np.fromiter(values, kind, len(values)))
        except OverflowError:  # an int past int64: pandas makes it uint64 or object
            pass
    return pd.Series(values)


def float_matrix(columns: list[np.ndarray]) -> np.ndarray:
    """Float columns as the one column-major float64 matrix ``frame`` builds from the same values."""
    matrix = np.empty((len(columns[0]), len(columns)), dtype=np.float64, order="F")
    for j, column in enumerate(columns):
        matrix[:, j] = column
    return matrix


def frame(xs: list[dict]) -> pd.DataFrame:
    """The features of a mini-batch as River's ``*_many`` take them: ``DataFrame.from_records``.

    When every event has the same float features in the same order (a file or a numeric
    stream), the frame is one float64 matrix filled in C: ~0.02 µs a value instead of pandas'
    ~0.2 µs of inference per value. Anything else (missing or reordered features, ints,
    strings, None) goes through pandas. A column whose first value is a float is read as
    float64, as pandas reads floats mixed with ints.
    """
    names = tuple(xs[0])
    if names and all(type(v) is float for v in xs[0].values()) and all(map(names.__eq__, map(tuple, xs))):
        try:
            values = np.fromiter(chain.from_iterable(map(dict.values, xs)), np.float64, len(xs) * len(names))
        except (TypeError, ValueError):
            pass
        else:
            # column-major, as pandas lays out from_records' columns: a model's numpy sums then
            # run in the same order, to the last bit
            matrix = np.asfortranarray(values.reshape(len(xs), len(names)))
            return pd.DataFrame(matrix, columns=list(names), copy=False)
    return pd.DataFrame.from_records(xs)
