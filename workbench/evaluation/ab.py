"""A/B statistics over one replay: a paired comparison of two learners and a traffic split.

Both learners saw exactly the same events in the same order, so their scores pair up by event:
the comparison uses only events both scored. Per-window metric differences get a bootstrap
confidence interval (scipy.stats.bootstrap, percentile method); for classifiers, McNemar's test
asks whether the events one gets right and the other wrong are lopsided.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from workbench.errors import WorkbenchError

#: metric -> (per-step value from the steps columns, higher is better)
PER_STEP = {
    "accuracy": (lambda s: s.correct.astype(float), True),
    "error_rate": (lambda s: 1.0 - s.correct.astype(float), False),
    "log_loss": (lambda s: s.loss.astype(float), False),
    "mse": (lambda s: s.loss.astype(float), False),
    "mae": (lambda s: (s.y_true.astype(float) - s.y_pred.astype(float)).abs(), False),
}
AB_COLUMNS = [
    "a",
    "b",
    "metric",
    "n",
    "a_value",
    "b_value",
    "diff",
    "ci_low",
    "ci_high",
    "mcnemar_statistic",
    "mcnemar_pvalue",
    "verdict",
]


def per_step(steps: pd.DataFrame, metric: str) -> pd.Series:
    if metric not in PER_STEP:
        raise WorkbenchError(
            f"metric {metric!r} cannot be compared per event; allowed: {', '.join(PER_STEP)}"
        )
    values = PER_STEP[metric][0](steps)
    if values.isna().all():
        raise WorkbenchError(
            f"no {metric} values in these steps (a classifier without probabilities has no "
            "log_loss; a regressor has no accuracy)"
        )
    return values


def mcnemar(a_right: np.ndarray, b_right: np.ndarray) -> tuple[float, float]:
    """McNemar's test on paired right/wrong outcomes: the exact binomial test when fewer than
    25 events disagree, else the chi-squared statistic with continuity correction."""
    only_a = int(np.sum(a_right & ~b_right))
    only_b = int(np.sum(~a_right & b_right))
    disagree = only_a + only_b
    if disagree == 0:
        return 0.0, 1.0
    if disagree < 25:
        return float(min(only_a, only_b)), float(stats.binomtest(only_a, disagree, 0.5).pvalue)
    statistic = (abs(only_a - only_b) - 1) ** 2 / disagree
    return float(statistic), float(stats.chi2.sf(statistic, 1))


def compare(
    a_steps: pd.DataFrame,
    b_steps: pd.DataFrame,
    a: str,
    b: str,
    metric: str = "accuracy",
    window: int = 1000,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row: each learner's metric on the events both scored, the difference a - b, its
    bootstrap CI over per-window differences, McNemar (classifiers) and a one-line verdict."""
    paired = a_steps.merge(b_steps, on="seq", suffixes=("_a", "_b"))
    if paired.empty:
        raise WorkbenchError(f"{a!r} and {b!r} scored no event in common")
    va = per_step(_side(paired, "_a"), metric).to_numpy()
    vb = per_step(_side(paired, "_b"), metric).to_numpy()
    diffs = pd.Series(va - vb).groupby(paired.seq.to_numpy() // window).mean().to_numpy()
    if len(diffs) >= 2:
        boot = stats.bootstrap(
            (diffs,),
            np.mean,
            n_resamples=n_boot,
            confidence_level=level,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
        low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    else:
        low = high = float("nan")
    if metric in ("accuracy", "error_rate"):
        statistic, pvalue = mcnemar(
            paired.correct_a.to_numpy(bool), paired.correct_b.to_numpy(bool)
        )
    else:
        statistic = pvalue = float("nan")
    a_value, b_value = float(va.mean()), float(vb.mean())
    row = [
        a,
        b,
        metric,
        len(paired),
        a_value,
        b_value,
        a_value - b_value,
        low,
        high,
        statistic,
        pvalue,
        verdict(a, b, metric, a_value - b_value, low, high, pvalue, level),
    ]
    return pd.DataFrame([row], columns=AB_COLUMNS)


def _side(paired: pd.DataFrame, suffix: str) -> pd.DataFrame:
    cols = [c for c in paired.columns if c.endswith(suffix)]
    return paired[cols].rename(columns=lambda c: c[: -len(suffix)])


def pvalue_text(value: float | None) -> str:
    """A p-value as people write it: 3 significant digits, and "< 1e-300" rather than the 0 a
    double underflows to (NaN and None: "–")."""
    if value is None or value != value:
        return "–"
    return "< 1e-300" if value < 1e-300 else f"{value:.3g}"


def verdict(
    a: str, b: str, metric: str, diff: float, low: float, high: float, pvalue: float, level: float
) -> str:
    higher_better = PER_STEP[metric][1]
    if np.isnan(low):
        return f"too few windows for a confidence interval; {a} - {b} = {diff:+.4f} {metric}"
    if low <= 0 <= high and not (pvalue < 1 - level):
        return (
            f"no clear difference: {a} - {b} = {diff:+.4f} {metric}, "
            f"{level:.0%} CI [{low:+.4f}, {high:+.4f}]"
        )
    if low <= 0 <= high:
        shown = pvalue_text(pvalue)
        return (
            f"mixed evidence: McNemar p {'' if shown.startswith('<') else '= '}{shown} but the {level:.0%} CI "
            f"of {a} - {b} [{low:+.4f}, {high:+.4f}] spans 0"
        )
    better = a if (diff > 0) == higher_better else b
    return (
        f"{better} is better: {a} - {b} = {diff:+.4f} {metric}, "
        f"{level:.0%} CI [{low:+.4f}, {high:+.4f}]"
    )
