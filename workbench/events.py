"""Small records passed between stages: sources → replay → runner → store.

They are plain slotted classes: one is made per event, so they must be cheap to build.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np


class Event(NamedTuple):
    """One record of a stream, as a source read it.

    ``x`` holds the features, ``y`` the target (``None`` when the label comes later or never),
    ``time`` the event time (``None`` when the stream has no clock), ``key`` the id naming the
    event, ``origin`` where it came from (a line number for files, a tuple for Kafka) and
    ``delay`` a label delay the record carries itself (``replay.label_delay: <field>``).

    A tuple, so that a source can build millions of them in C: ``make_events`` below.
    """

    x: dict
    y: Any = None
    time: Any = None
    key: Any = None
    origin: Any = None
    delay: Any = None


#: Build an Event from a tuple without a Python-level call (~0.3 µs saved per event):
#: ``map(make_event, zip(xs, ys, times, keys, origins, delays))`` runs entirely in C. The tuple
#: must have all six fields.
make_event = partial(tuple.__new__, Event)


#: an Event's x, y and time as C callables: ``map(event_y, events)`` makes no Python call an event
event_x, event_y, event_time = itemgetter(0), itemgetter(1), itemgetter(2)


def non_finite(x: dict) -> str | None:
    """The name of the first feature holding NaN or ±Infinity, else None.

    One rule for every way in (the block and per-message Kafka paths, CSV/Parquet/JSON Lines files,
    the service): such a number poisons most learners' state for good, so the record is refused
    with ``non_finite_reason`` instead of learned from.
    """
    for name, value in x.items():
        if value.__class__ is float and not math.isfinite(value):
            return name
    return None


def non_finite_reason(name: str, value: float) -> str:
    return f"feature {name!r} is {value!r}: numbers must be finite (NaN and Infinity are refused)"


def identity(key: Any) -> Any:
    """What tells two event ids apart: the value *and* its JSON type, so that ``0`` and ``0.0``,
    or ``1`` and ``true``, are different ids (Python alone holds them equal). A string is its
    own identity (no other type equals a string; most ids are strings, and this is cheaper)."""
    return key if key.__class__ is str else (key.__class__, key)


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be used: where it came from, why, and its raw bytes."""

    origin: str
    reason: str
    raw: bytes | None = None


@dataclass(frozen=True)
class TrueDrift:
    """A drift the stream was built with: centred at ``seq``, spread over ``width`` events."""

    seq: int
    width: int


#: the columns of a step, in the order of a StepBatch row
STEP_COLUMNS = (
    "seq",
    "event_time",
    "y_true",
    "y_pred",
    "y_proba",
    "correct",
    "loss",
    "predict_ns",
    "learn_ns",
    "model_version",
)


@dataclass
class StepBatch:
    """Steps of one learner: a tuple per step in ``rows``, in STEP_COLUMNS order, or whole
    blocks of steps as columns (times in nanoseconds; the store keeps microseconds).

    A tuple is the cheapest record CPython builds one at a time (a dict or an object per row
    costs ~2 µs); an arm that scores a block of events at once hands its columns over whole
    (``add``). The writer turns either into Arrow columns every few thousand steps.
    """

    learner: str
    rows: list[tuple] = field(default_factory=list)
    #: column blocks (STEP_COLUMNS -> a list or a numpy array), in step order before ``rows``
    blocks: list[dict] = field(default_factory=list)
    # What else happened to the learner meanwhile (only arms that configure drift, checkpoints,
    # a guard or a baseline fill these), as rows of the tables of the same names without
    # run_id and learner: drift_events (seq, detector, kind, action, statistic, reason),
    # rollbacks (seq, from_version, to_version, reason, new_version), refits (seq, n_samples,
    # fit_ms); checkpoints holds versioning.Checkpoint records.
    drift_events: list[tuple] = field(default_factory=list)
    rollbacks: list[tuple] = field(default_factory=list)
    refits: list[tuple] = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    _block_rows: int = field(default=0, repr=False)  # steps in blocks

    def __len__(self) -> int:
        return self._block_rows + len(self.rows)

    def add(self, block: dict) -> None:
        """Append a block of steps as columns (after any rows emitted one by one)."""
        if self.rows:  # keep step order: the rows so far become a block first
            self.blocks.append(_transpose(self.rows))
            self._block_rows += len(self.rows)
            self.rows.clear()  # the same list: an arm's emit appends to it
        self.blocks.append(block)
        self._block_rows += len(block["seq"])

    def columns(self) -> dict[str, list | np.ndarray]:
        parts = [*self.blocks, _transpose(self.rows)] if self.rows or not self.blocks else self.blocks
        if len(parts) == 1:
            return parts[0]
        return {name: _concat([part[name] for part in parts]) for name in STEP_COLUMNS}


def _transpose(rows: list[tuple]) -> dict[str, list]:
    return {name: list(map(itemgetter(i), rows)) for i, name in enumerate(STEP_COLUMNS)}


def _concat(parts: list) -> list | np.ndarray:
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    return list(chain.from_iterable(p.tolist() if isinstance(p, np.ndarray) else p for p in parts))
