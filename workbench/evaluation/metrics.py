"""Metrics by name, from River: which exist for which task, and whether they need probabilities."""

from __future__ import annotations

from river import metrics

from workbench.errors import ConfigError
from workbench.learners.registry import METRIC, resolve

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


def make(name: str, task: str, key: str = "metrics") -> metrics.base.Metric:
    """A fresh River metric for ``name`` (a short name or a dotted river.metrics path)."""
    if name.startswith("river."):
        return resolve(name, key, METRIC)()
    if name not in allowed(task):
        raise ConfigError(
            key,
            f"unknown metric {name!r} for a {task} stream; allowed: {', '.join(allowed(task))} "
            "(or a dotted river.metrics name)",
        )
    if name == "log_loss":
        return metrics.LogLoss() if task == "binary" else metrics.CrossEntropy()
    table = REGRESSION if task == "regression" else CLASSIFICATION
    return table[name]()


def names_for(requested: list[str], task: str) -> list[str]:
    """The metrics to compute: the requested ones (validated) or the task's defaults."""
    chosen = requested or DEFAULTS[task]
    for i, name in enumerate(chosen):
        make(name, task, f"metrics[{i}]")
    return chosen
