"""Model versions: a checkpoint is a pickled model, its hash, and the metrics at that point.

Version 0 is the untrained model; each checkpoint starts a new version, and every step records
the version that made its prediction.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

PROTOCOL = 5
#: the stack of the thread that pickles a model too deep for the caller's (virtual memory, used
#: only as deep as the model goes) and the recursion it allows there: ~330 bytes of stack a level
#: measured, so a model too deep even for this fails with RecursionError, never a crash
DEEP_STACK = 1 << 30
DEEP_RECURSION = DEEP_STACK // 512


@dataclass(frozen=True)
class Checkpoint:
    learner: str
    version: int
    seq: int  # events replayed when it was taken
    state: bytes = field(repr=False)
    sha256: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = "scheduled"


def dumps(model: Any) -> bytes:
    """The model pickled. River's E-BST splitters (Hoeffding regression trees) keep one node per
    value of a feature as a binary tree, a chain for a feature that only grows (a date, a
    counter): past ~400 values it is deeper than Python's recursion limit lets pickle go. Such a
    model is pickled again in a thread with a deep stack (DEEP_STACK, DEEP_RECURSION)."""
    try:
        return pickle.dumps(model, protocol=PROTOCOL)
    except RecursionError:
        pass
    result: list = []

    def deep() -> None:
        try:
            result.append(pickle.dumps(model, protocol=PROTOCOL))
        except BaseException as exc:
            result.append(exc)

    limit = sys.getrecursionlimit()
    stack = threading.stack_size(DEEP_STACK)
    try:
        sys.setrecursionlimit(max(limit, DEEP_RECURSION))
        thread = threading.Thread(target=deep, name="workbench-deep-pickle")
        thread.start()
        thread.join()
    finally:
        threading.stack_size(stack)
        sys.setrecursionlimit(limit)
    if isinstance(result[0], RecursionError):
        raise RecursionError(
            f"{type(model).__name__} is nested more than {DEEP_RECURSION:,} levels deep and cannot be pickled "
            "(River's E-BST splitters grow one level per value of a feature that only grows, e.g. a date: "
            "give the tree another splitter: params: {splitter: {model: river.tree.splitter.QOSplitter}})"
        ) from result[0]
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def snapshot(learner: str, model: Any, version: int, seq: int, metrics: dict[str, Any], reason: str) -> Checkpoint:
    state = dumps(model)
    return Checkpoint(learner, version, seq, state, hashlib.sha256(state).hexdigest(), metrics, reason)


def restore(state: bytes, sha256: str | None = None) -> Any:
    """The model in ``state``; refuses bytes whose hash does not match before unpickling."""
    if sha256 is not None and hashlib.sha256(state).hexdigest() != sha256:
        raise ValueError("checkpoint state does not match its SHA-256: refusing to unpickle it")
    return pickle.loads(state)
