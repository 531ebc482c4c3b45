"""Calibration of probabilistic classifiers: reliability-curve data, ECE and Brier score.

Each step stores the probability a learner gave the label it predicted (``y_proba``) and whether
that label was right (``correct``): that is *top-label* calibration. For two classes it is the
usual binary calibration (the Brier score on the top label equals the Brier score on the
positive class); for more classes it is the top-label form. Bins follow
``sklearn.calibration.calibration_curve`` exactly (uniform edges, an edge value in the lower
bin) so that the two agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RELIABILITY_COLUMNS = [
    "learner",
    "window_start",
    "window_end",
    "bin",
    "confidence",
    "frequency",
    "count",
]
SUMMARY_COLUMNS = ["learner", "window_start", "window_end", "ece", "brier", "n"]


def _windows(scored: pd.DataFrame, window: int | None):
    """(start, end, rows) per window of ``window`` events in replay order (None: the whole run)."""
    if scored.empty:
        return
    if window is None:
        yield int(scored.seq.min()), int(scored.seq.max()), scored
        return
    for start, part in scored.groupby(scored.seq // window * window, sort=True):
        yield int(start), int(start) + window - 1, part


def _bins(confidence: np.ndarray, bins: int) -> np.ndarray:
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], confidence)


def reliability(scored: pd.DataFrame, bins: int = 10, window: int | None = None) -> pd.DataFrame:
    """Mean confidence, observed frequency of being right and count per non-empty bin.

    ``scored`` has columns learner, seq, y_proba, correct (abstentions and unlabelled steps
    already left out).
    """
    rows = []
    for learner, steps in scored.groupby("learner", sort=True):
        for start, end, part in _windows(steps, window):
            conf = part.y_proba.to_numpy(float)
            hit = part.correct.to_numpy(float)
            ids = _bins(conf, bins)
            count = np.bincount(ids, minlength=bins)
            conf_sum = np.bincount(ids, weights=conf, minlength=bins)
            hit_sum = np.bincount(ids, weights=hit, minlength=bins)
            for b in np.flatnonzero(count):
                rows.append(
                    (
                        learner,
                        start,
                        end,
                        int(b),
                        conf_sum[b] / count[b],
                        hit_sum[b] / count[b],
                        int(count[b]),
                    )
                )
    return pd.DataFrame(rows, columns=RELIABILITY_COLUMNS)


def summary(scored: pd.DataFrame, bins: int = 10, window: int | None = None) -> pd.DataFrame:
    """Expected calibration error (count-weighted gap between confidence and frequency over
    ``bins`` bins), Brier score and number of scored steps, per learner and window."""
    curve = reliability(scored, bins, window)
    rows = []
    for learner, steps in scored.groupby("learner", sort=True):
        for start, end, part in _windows(steps, window):
            bins_of = curve[(curve.learner == learner) & (curve.window_start == start)]
            n = len(part)
            ece = float(
                (bins_of["count"] * (bins_of.confidence - bins_of.frequency).abs()).sum() / n
            )
            brier = float(
                ((part.y_proba.to_numpy(float) - part.correct.to_numpy(float)) ** 2).mean()
            )
            rows.append((learner, start, end, ece, brier, n))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
