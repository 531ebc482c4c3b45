"""Synthetic streams: any ``river.datasets.synth`` generator, with a schedule of concept drifts."""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import random
from collections.abc import Iterator

from river.datasets import synth

from workbench.config import SourceConfig
from workbench.errors import ConfigError
from workbench.events import Event, TrueDrift
from workbench.sources.base import DeadLetterSink, river_task

# Combinators and anomaly streams are not concepts one can schedule.
_EXCLUDED = {"ConceptDriftStream", "AnomalySine"}
# Beyond this the logistic is 0 or 1 to double precision; River's own formula overflows there.
_MAX_EXPONENT = 700.0


@functools.cache
def generators() -> dict[str, type]:
    """Every single-target generator of river.datasets.synth, by lower-case name."""
    return {
        name.lower(): cls
        for name, cls in vars(synth).items()
        if inspect.isclass(cls)
        and name not in _EXCLUDED
        and hasattr(cls, "__iter__")
        and river_task(cls().task) in ("binary", "multiclass", "regression")
    }


class ScheduledDrift(synth.ConceptDriftStream):
    """River's ``ConceptDriftStream`` centred on a 0-based event index, safe at any position.

    River computes ``exp(-4 (i - position) / width)``, which overflows for a narrow width far
    from the start (``width=1`` at 20000). Here the exponent is clipped, and ``width=1`` is an
    exact switch: every event from ``position`` on comes from ``drift_stream``.
    """

    def __iter__(self):
        rng = random.Random(self.seed)
        old, new = iter(self.stream), iter(self.drift_stream)
        for i in itertools.count():
            if self.width <= 1:
                p_new = 1.0 if i >= self.position else 0.0
            else:
                v = -4.0 * (i - self.position) / self.width
                p_new = 1.0 / (1.0 + math.exp(max(-_MAX_EXPONENT, min(_MAX_EXPONENT, v))))
            try:
                x, y = next(new) if rng.random() < p_new else next(old)
            except StopIteration:
                return
            yield x, y


class SyntheticSource:
    """A River generator by name, optionally drifting to new params at scheduled positions.

    A drift's ``params`` are applied on top of the base params, so a later drift back to the
    original params makes a recurring concept.
    """

    def __init__(self, config: SourceConfig, seed: int):
        self.config = config
        self.seed = seed

    @property
    def _cls(self) -> type:
        gens = generators()
        name = (self.config.generator or "").lower()
        if name not in gens:
            raise ConfigError(
                "source.generator", f"unknown generator {self.config.generator!r}; allowed: {', '.join(sorted(gens))}"
            )
        return gens[name]

    def validate(self) -> None:
        if self.config.n is None:
            raise ConfigError("source.n", "synthetic streams are endless: set n, the number of events to replay")
        self.build()

    def _make(self, params: dict, seed: int, key: str):
        cls = self._cls
        accepted = inspect.signature(cls).parameters
        unknown = [p for p in params if p not in accepted]
        if unknown:
            raise ConfigError(
                f"{key}.{unknown[0]}", f"not a parameter of {cls.__name__}; allowed: {', '.join(accepted)}"
            )
        kwargs = dict(params)
        if "seed" in accepted:
            kwargs.setdefault("seed", seed)  # a seed in the params wins over the config's
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(key, f"{cls.__name__}({kwargs}) failed: {exc}") from None

    def build(self):
        cfg = self.config
        stream = self._make(cfg.params, self.seed, "source.params")
        for k, drift in enumerate(cfg.drifts, start=1):
            params = {**cfg.params, **drift.params}
            new = self._make(params, self.seed + k, f"source.drifts[{k - 1}].params")
            if getattr(new, "n_features", None) != getattr(stream, "n_features", None):
                raise ConfigError(f"source.drifts[{k - 1}].params", "a drift must keep the number of features")
            stream = ScheduledDrift(
                stream=stream, drift_stream=new, position=drift.at, width=drift.width, seed=self.seed + 1000 + k
            )
        return stream

    @property
    def task(self) -> str:
        return self.config.task or river_task(self.build().task)

    @property
    def length(self) -> int | None:
        return self.config.n

    def true_drifts(self) -> list[TrueDrift]:
        return [TrueDrift(seq=d.at, width=d.width) for d in self.config.drifts]

    def events(self, dead_letter: DeadLetterSink) -> Iterator[Event]:
        for x, y in itertools.islice(self.build(), self.config.n):
            yield Event(x, y)
