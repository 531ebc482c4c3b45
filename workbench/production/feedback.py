"""The feedback loop: served predictions (from the predictions topic) joined with their labels.

Each joined prediction becomes a row of the run's ``served`` table (arm, version, prediction,
label, correct, loss, when it was served and labelled); predictions whose label never came are
written unlabelled when the service stops. A prediction may reach the update service before or
after its label: labels are remembered (the newest ``JOIN_CAP``) for predictions still on their way.

The served guard compares arm a's accuracy over the last ``window`` joined predictions with arm
b's (the baseline answering beside it, or in its shadow) or, without an arm b, with the bundle's
accuracy at export; ``breached()`` says when arm a is more than ``drop`` below it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

import orjson

#: labels remembered for served predictions not seen yet, and predictions waiting for labels
JOIN_CAP = 200_000
_EPS = 1e-15


class Feedback:
    def __init__(self, classifier: bool, metrics, window: int, drop: float | None, reference: float | None):
        self.classifier = classifier
        self.metrics = metrics
        self.drop = drop
        self.window = window
        self.reference = reference
        self.waiting: dict[str, list[dict]] = {}  # request id -> its served predictions (arms a, b)
        self.recent: dict[str, tuple[Any, int | None]] = {}  # id -> (label, its time in ms)
        self.rows: list[tuple] = []
        self.windows: dict[str, deque] = {}

    def state(self) -> dict:
        return {"waiting": self.waiting, "recent": self.recent}

    def restore(self, state: dict) -> None:
        self.waiting, self.recent = state["waiting"], state["recent"]

    def served(self, value: bytes | None) -> None:
        """A message of the predictions topic."""
        try:
            rec = orjson.loads(value)
            rid = str(rec["id"])
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return  # not a served prediction of ours
        if rid in self.recent:
            self._score(rec, *self.recent[rid])
        else:
            self.waiting.setdefault(rid, []).append(rec)
            _cap(self.waiting)

    def label(self, rid: str, y: Any, ts: int | None) -> None:
        for rec in self.waiting.pop(rid, ()):
            self._score(rec, y, ts)
        self.recent[rid] = (y, ts)
        _cap(self.recent)

    def _score(self, rec: dict, y: Any, ts: int | None) -> None:
        pred, proba = rec.get("prediction"), rec.get("proba")
        correct = (pred == y) if self.classifier and pred is not None else None
        if self.classifier and proba:
            p = next((p for label, p in proba if label == y), 0.0)
            loss = -math.log(max(p, _EPS))
        elif not self.classifier and pred is not None:
            loss = (y - pred) ** 2
        else:
            loss = None
        served_at = rec["served_at"] / 1000
        labelled_at = ts / 1000 if ts is not None else time.time()
        self.rows.append(
            (rec["id"], rec["arm"], rec["version"], rec.get("answered", True), _text(pred), _text(y), correct, loss,
             _utc(served_at), _utc(labelled_at), labelled_at - served_at)
        )  # fmt: skip
        self.metrics.served(rec, correct, max(0.0, time.time() - labelled_at))
        if correct is not None:
            self.windows.setdefault(rec["arm"], deque(maxlen=self.window)).append(correct)

    def breached(self) -> bool:
        """Whether arm a's served accuracy is more than ``drop`` below the baseline's."""
        a, b = self.windows.get("a"), self.windows.get("b")
        if self.drop is None or a is None or len(a) < self.window:
            return False
        reference = sum(b) / len(b) if b is not None and len(b) == self.window else self.reference
        return reference is not None and sum(a) / len(a) < reference - self.drop

    def restart(self) -> None:
        """The served model changed: measure it afresh."""
        self.windows.clear()

    def take(self, final: bool = False) -> list[tuple]:
        """The rows joined since the last call (with ``final``, the unlabelled ones too)."""
        if final:
            for rid, recs in self.waiting.items():
                for rec in recs:
                    self.rows.append(
                        (rid, rec["arm"], rec["version"], rec.get("answered", True), _text(rec.get("prediction")),
                         None, None, None, _utc(rec["served_at"] / 1000), None, None)
                    )  # fmt: skip
        self.metrics.unlabelled(sum(map(len, self.waiting.values())))
        rows, self.rows = self.rows, []
        return rows


def _cap(d: dict) -> None:
    while len(d) > JOIN_CAP:
        del d[next(iter(d))]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)
