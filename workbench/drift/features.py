"""Feature (data) drift: each numeric feature, window by window, against the first window.

Two measures per window: the population stability index over bins cut at the reference
window's quantiles, and the two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp). A
window whose PSI exceeds ``psi`` or whose KS p-value falls below ``ks_pvalue`` raises an alarm
(a 'drift' row in drift_events with learner '' and detector 'psi' or 'ks'). Values that are
not numbers (text categories, missing values) are left out of a feature's window.
"""

from __future__ import annotations

import itertools
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


def _numbers(values: list) -> np.ndarray:
    """The values that are numbers, as floats (missing values and text left out)."""
    try:
        array = np.array(values, dtype=float)
    except (TypeError, ValueError):
        array = np.array([v for v in values if isinstance(v, Real)], dtype=float)
    return array[~np.isnan(array)]


class FeatureDrift:
    """Passes events through unchanged, keeping each window's features to compare at its end."""

    def __init__(self, config: FeatureDriftConfig):
        self.config = config
        self._reference: dict[str, np.ndarray] = {}
        self._window: list[dict] = []
        self._rows: list[tuple] = []
        self._alarms: list[tuple] = []

    def watch(self, events: Iterable[Event]) -> Iterator[Event]:
        # One append per event; the columns are built once per window, at its end.
        size, keep = self.config.window, self._window.append
        for seq, ev in enumerate(events):
            keep(ev.x)
            yield ev
            if not (seq + 1) % size:
                self._close(seq)

    def _close(self, seq: int) -> None:
        cfg, xs = self.config, self._window
        for name in dict.fromkeys(itertools.chain.from_iterable(xs)):
            current = _numbers([x.get(name) for x in xs])
            if len(current) < 2:
                continue
            reference = self._reference.get(name)
            if reference is None:
                self._reference[name] = current
                continue
            index = psi(reference, current, cfg.bins)
            # The asymptotic p-value: the exact one costs ~1 ms a feature and a window.
            ks = stats.ks_2samp(reference, current, method="asymp")
            self._rows.append(
                (str(name), seq, cfg.window, index, float(ks.statistic), float(ks.pvalue))
            )
            span = f"events {seq - cfg.window + 1}-{seq}"
            if index > cfg.psi:
                self._alarms.append(
                    (
                        seq,
                        "psi",
                        "drift",
                        "none",
                        index,
                        f"PSI of {name} over {span} is {index:.3f} > {cfg.psi}",
                    )
                )
            if ks.pvalue < cfg.ks_pvalue:
                self._alarms.append(
                    (
                        seq,
                        "ks",
                        "drift",
                        "none",
                        float(ks.statistic),
                        f"KS of {name} over {span}: D={ks.statistic:.3f}, "
                        f"p={ks.pvalue:.2g} < {cfg.ks_pvalue}",
                    )
                )
        xs.clear()

    def take(self) -> tuple[list[tuple], list[tuple]]:
        """Window rows and alarms since the last call."""
        rows, alarms = self._rows, self._alarms
        self._rows, self._alarms = [], []
        return rows, alarms
