"""Scoring drift detectors against the drifts a stream was built with (``true_drifts``).

A true drift centred at ``seq`` over ``width`` events starts at ``seq - width // 2``. The first
alarm (kind 'drift') at or after that start, and before the next true drift starts, detects it;
its delay is the alarm's seq minus the drift's centre (negative when a gradual drift is caught
before its centre). With ``max_delay``, a later first alarm does not count: the drift is missed.
Every other alarm is a false alarm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: what a reader of a scores table needs to know about its delays
DELAYS_NOTE = (
    "Delay: events from a drift's centre to the detector's first alarm after it. A negative delay "
    "is an alarm inside a gradual drift, before its centre: caught early, not a false alarm."
)

SCORE_COLUMNS = [
    "learner",
    "detector",
    "true_drifts",
    "detected",
    "missed",
    "false_alarms",
    "mean_delay",
    "median_delay",
    "max_delay",
    "delays",
]


def score(alarms: pd.DataFrame, truth: pd.DataFrame, max_delay: int | None = None) -> pd.DataFrame:
    """One row per (learner, detector) in ``alarms`` (columns learner, detector, seq; drifts
    only) against ``truth`` (columns seq, width)."""
    centres = truth.seq.to_numpy(np.int64)
    starts = centres - truth.width.to_numpy(np.int64) // 2
    ends = np.append(starts[1:], np.iinfo(np.int64).max)
    rows = []
    for (learner, detector), group in alarms.groupby(["learner", "detector"], sort=True):
        seqs = np.sort(group.seq.to_numpy(np.int64))
        delays, used = [], 0
        for centre, start, end in zip(centres, starts, ends, strict=True):
            inside = seqs[(seqs >= start) & (seqs < end)]
            if len(inside) and (max_delay is None or inside[0] - centre <= max_delay):
                delays.append(int(inside[0] - centre))
                used += 1
        rows.append(
            [
                learner,
                detector,
                len(centres),
                len(delays),
                len(centres) - len(delays),
                len(seqs) - used,
                float(np.mean(delays)) if delays else None,
                float(np.median(delays)) if delays else None,
                max(delays) if delays else None,
                delays,
            ]
        )
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)
