"""Metrics by name, from River: which exist for which task, and whether they need probabilities."""

from __future__ import annotations

from river import metrics

from workbench.errors import ConfigError
from workbench.learners.registry import METRIC, resolve
from workbench.replay.schema import TEXT_TYPES

CLASSIFICATION = {
    "accuracy": metrics.Accuracy,
    "balanced_accuracy": metrics.BalancedAccuracy,
    "f1": metrics.F1,
    "macro_f1": metrics.MacroF1,
    "micro_f1": metrics.MicroF1,
    "precision": metrics.Precision,
    "recall": metrics.Recall,
    "mcc": metrics.MCC,
    "cohen_kappa": metrics.CohenKappa,
    "log_loss": None,  # LogLoss for binary streams, CrossEntropy for multiclass
    "roc_auc": metrics.ROCAUC,
}
REGRESSION = {
    "mae": metrics.MAE,
    "mse": metrics.MSE,
    "rmse": metrics.RMSE,
    "r2": metrics.R2,
    "smape": metrics.SMAPE,
}
BINARY_ONLY = {"f1", "precision", "recall", "mcc", "roc_auc"}
DEFAULTS = {"binary": ["accuracy", "log_loss"], "multiclass": ["accuracy", "log_loss"], "regression": ["mae", "rmse"]}


def allowed(task: str) -> list[str]:
    if task == "regression":
        return list(REGRESSION)
    names = list(CLASSIFICATION)
    return names if task == "binary" else [n for n in names if n not in BINARY_ONLY]


def make(name: str, task: str, key: str = "metrics", labels: str | None = None) -> metrics.base.Metric:
    """A fresh River metric for ``name`` (a short name or a dotted river.metrics path), for a
    stream whose target has type ``labels`` (replay/schema.py's, when known)."""
    if name.startswith("river."):
        return resolve(name, key, METRIC)()
    # over 'yes'/'no', LogLoss would be its maximum and F1 0 whatever the model does
    text = task == "binary" and labels in TEXT_TYPES
    if text and name in BINARY_ONLY:
        raise ConfigError(
            key,
            f"{name} counts True (or 1) as the positive class, but the stream's labels are text; "
            "give the target as booleans, or use a metric that needs no positive class: "
            "accuracy, balanced_accuracy, macro_f1, micro_f1, cohen_kappa or log_loss",
        )
    if name not in allowed(task):
        raise ConfigError(
            key,
            f"unknown metric {name!r} for a {task} stream; allowed: {', '.join(allowed(task))} "
            "(or a dotted river.metrics name)",
        )
    if name == "log_loss":  # for two classes CrossEntropy is the same log loss, whatever the labels
        return metrics.LogLoss() if task == "binary" and not text else metrics.CrossEntropy()
    table = REGRESSION if task == "regression" else CLASSIFICATION
    return table[name]()


def names_for(requested: list[str], task: str, labels: str | None = None) -> list[str]:
    """The metrics to compute: the requested ones (validated) or the task's defaults."""
    chosen = requested or DEFAULTS[task]
    for i, name in enumerate(chosen):
        make(name, task, f"metrics[{i}]", labels)
    return chosen
