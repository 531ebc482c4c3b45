"""Model versions: a checkpoint is a pickled model, its hash, and the metrics at that point.

Version 0 is the untrained model; each checkpoint starts a new version, and every step records
the version that made its prediction.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from typing import Any

PROTOCOL = 5


@dataclass(frozen=True)
class Checkpoint:
    learner: str
    version: int
    seq: int  # events replayed when it was taken
    state: bytes = field(repr=False)
    sha256: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = "scheduled"


def snapshot(learner: str, model: Any, version: int, seq: int, metrics: dict[str, Any], reason: str) -> Checkpoint:
    state = pickle.dumps(model, protocol=PROTOCOL)
    return Checkpoint(learner, version, seq, state, hashlib.sha256(state).hexdigest(), metrics, reason)


def restore(state: bytes, sha256: str | None = None) -> Any:
    """The model in ``state``; refuses bytes whose hash does not match before unpickling."""
    if sha256 is not None and hashlib.sha256(state).hexdigest() != sha256:
        raise ValueError("checkpoint state does not match its SHA-256: refusing to unpickle it")
    return pickle.loads(state)
