"""Feature (data) drift: each numeric feature, window by window, against the first window.

Two measures per window: the population stability index over bins cut at the reference
window's quantiles, and the two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp). A
window whose PSI exceeds ``psi`` or whose KS p-value falls below ``ks_pvalue`` raises an alarm
(a 'drift' row in drift_events with learner '' and detector 'psi' or 'ks'). Values that are
not numbers (text categories, missing values) are left out of a feature's window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from numbers import Real

import numpy as np
from scipy import stats

from workbench.config import FeatureDriftConfig
from workbench.events import Event

#: floor on a bin's share, so that an empty bin does not make the PSI infinite
_SHARE_FLOOR = 1e-4


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference``."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(reference, edges)[0] / len(reference)
    actual = np.histogram(current, edges)[0] / len(current)
    expected = np.maximum(expected, _SHARE_FLOOR)
    actual = np.maximum(actual, _SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


class FeatureDrift:
    """Passes events through unchanged while collecting each numeric feature per window."""

    def __init__(self, config: FeatureDriftConfig):
        self.config = config
        self._reference: dict[str, np.ndarray] = {}
        self._values: defaultdict[str, list] = defaultdict(list)
        self._rows: list[tuple] = []
        self._alarms: list[tuple] = []

    def watch(self, events: Iterable[Event]) -> Iterator[Event]:
        window = self.config.window
        values = self._values
        for seq, ev in enumerate(events):
            for name, value in ev.x.items():
                values[name].append(value)
            yield ev
            if not (seq + 1) % window:
                self._close(seq)

    def _close(self, seq: int) -> None:
        cfg = self.config
        for name, raw in self._values.items():
            current = np.array([v for v in raw if isinstance(v, Real) and v == v], dtype=float)
            if len(current) < 2:
                continue
            reference = self._reference.get(name)
            if reference is None:
                self._reference[name] = current
                continue
            index = psi(reference, current, cfg.bins)
            ks = stats.ks_2samp(reference, current)
            self._rows.append((name, seq, cfg.window, index, float(ks.statistic), float(ks.pvalue)))
            if index > cfg.psi:
                self._alarms.append((seq, "psi", "drift", "none", index,
                                     f"PSI of {name} over events {seq - cfg.window + 1}-{seq} is {index:.3f} > {cfg.psi}"))
            if ks.pvalue < cfg.ks_pvalue:
                self._alarms.append((seq, "ks", "drift", "none", float(ks.statistic),
                                     f"KS of {name} over events {seq - cfg.window + 1}-{seq}: "
                                     f"D={ks.statistic:.3f}, p={ks.pvalue:.2g} < {cfg.ks_pvalue}"))
            raw.clear()

    def take(self) -> tuple[list[tuple], list[tuple]]:
        """Window rows and alarms since the last call."""
        rows, alarms = self._rows, self._alarms
        self._rows, self._alarms = [], []
        return rows, alarms
