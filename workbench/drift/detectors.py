"""River drift detectors by dotted name, and the value of a step each one watches.

A detector watches a learner's *error* (1 when the prediction was wrong, else 0; the absolute
error for regressors) or its *loss* (log loss; squared error for regressors). Steps where the
learner abstained (a baseline before its first fit, a River model without an answer yet) are
skipped: an abstention is not an error, and feeding it as one would raise alarms about the
warm-up instead of the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from river import base

from workbench.config import DriftConfig, ModelSpec
from workbench.errors import ConfigError
from workbench.learners.registry import DRIFT_DETECTOR
from workbench.learners.river import instantiate

#: where a StepBatch row keeps the fields a detector reads (see events.STEP_COLUMNS)
CORRECT, LOSS = 5, 6


def build(cfg: DriftConfig, key: str) -> base.DriftDetector | base.BinaryDriftDetector:
    return instantiate(ModelSpec(cfg.detector, cfg.params), key, DRIFT_DETECTOR, f"{key}.detector")


def error(row: tuple) -> int | None:
    correct = row[CORRECT]
    return None if correct is None else int(not correct)


def loss(row: tuple) -> float | None:
    return row[LOSS]


def abs_error(row: tuple) -> float | None:
    loss = row[LOSS]  # a regressor's loss is the squared error
    return None if loss is None else loss**0.5


def value_of(
    cfg: DriftConfig, detector: Any, task: str, has_proba: bool, key: str, learner: str
) -> Callable[[tuple], Any]:
    """The function that reads the watched value out of a step (None: skip the step)."""
    binary = isinstance(detector, base.BinaryDriftDetector)
    if binary and (cfg.on == "loss" or task == "regression"):
        raise ConfigError(
            f"{key}.on",
            f"{cfg.detector} watches right/wrong only (a binary detector): "
            f"use on: error on a classifier, or a detector such as river.drift.ADWIN",
        )
    if task == "regression":
        return abs_error if cfg.on == "error" else loss
    if cfg.on == "loss" and not has_proba:
        raise ConfigError(
            f"{key}.on",
            f"learner {learner!r} gives no probabilities, so it has no loss: use on: error",
        )
    return error if cfg.on == "error" else loss


def statistic(detector: Any) -> float | None:
    """What the detector estimates now, when it says (ADWIN's mean of its window)."""
    value = getattr(detector, "estimation", None)
    return float(value) if isinstance(value, (int, float)) else None
