"""Small records passed between stages: sources → replay → runner → store.

They are plain slotted classes: one is made per event, so they must be cheap to build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Event:
    """One record of a stream, as a source read it.

    ``x`` holds the features, ``y`` the target (``None`` when the label comes later or never),
    ``time`` the event time (``None`` when the stream has no clock), ``key`` the id naming the
    event, ``origin`` where it came from (a line number for files, a tuple for Kafka) and
    ``delay`` a label delay the record carries itself (``replay.label_delay: <field>``).
    """

    __slots__ = ("x", "y", "time", "key", "origin", "delay")

    def __init__(self, x, y=None, time=None, key=None, origin=None, delay=None):
        self.x = x
        self.y = y
        self.time = time
        self.key = key
        self.origin = origin
        self.delay = delay

    def __repr__(self) -> str:
        return (
            f"Event(x={self.x!r}, y={self.y!r}, time={self.time!r}, key={self.key!r}, "
            f"origin={self.origin!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)


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


@dataclass
class StepBatch:
    """Steps of one learner, column by column (a Python object per row would cost ~2 µs).

    Every list has one entry per step; ``learner`` is the same for all of them.
    """

    learner: str
    seq: list[int] = field(default_factory=list)
    event_time: list[Any] = field(default_factory=list)
    y_true: list[Any] = field(default_factory=list)
    y_pred: list[Any] = field(default_factory=list)
    y_proba: list[float | None] = field(default_factory=list)
    correct: list[bool | None] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    predict_us: list[float] = field(default_factory=list)
    learn_us: list[float | None] = field(default_factory=list)
    model_version: list[int] = field(default_factory=list)

    COLUMNS = (
        "seq", "event_time", "y_true", "y_pred", "y_proba", "correct", "loss",
        "predict_us", "learn_us", "model_version",
    )

    def __len__(self) -> int:
        return len(self.seq)

    def columns(self) -> dict[str, list]:
        return {name: getattr(self, name) for name in self.COLUMNS}
