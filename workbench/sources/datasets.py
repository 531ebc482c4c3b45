"""River's bundled datasets, by name (Phishing, Bananas, ImageSegments, TrumpApproval, ...)."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterator

from river import datasets

from workbench.config import SourceConfig
from workbench.errors import ConfigError, SourceError
from workbench.events import Event, TrueDrift
from workbench.sources.base import DeadLetterSink, river_task

_TASKS = {"Binary classification", "Multi-class classification", "Regression"}


def catalogue() -> dict[str, type]:
    """Every single-target dataset River defines, by lower-case name."""
    out = {}
    for name, cls in vars(datasets).items():
        if inspect.isclass(cls) and issubclass(cls, datasets.base.Dataset) and cls.__module__ != datasets.base.__name__:
            out[name.lower()] = cls
    return out


def bundled() -> list[str]:
    """Names of the datasets that ship inside the River package (no download needed)."""
    return sorted(
        cls.__name__
        for cls in catalogue().values()
        if issubclass(cls, datasets.base.FileDataset)
        and not issubclass(cls, datasets.base.RemoteDataset)
        and _single_target(cls)
    )


def _single_target(cls: type) -> bool:
    try:
        return cls().task in _TASKS
    except Exception:  # a dataset that cannot even be described is not usable
        return False


class DatasetSource:
    def __init__(self, config: SourceConfig):
        self.config = config

    def dataset(self):
        cat = catalogue()
        name = (self.config.name or "").lower()
        if name not in cat:
            raise ConfigError(
                "source.name", f"unknown dataset {self.config.name!r}; bundled with River: {', '.join(bundled())}"
            )
        ds = cat[name]()
        if ds.task not in _TASKS:
            raise ConfigError(
                "source.name",
                f"{ds.__class__.__name__} is a {ds.task.lower()} dataset; the workbench replays "
                "binary, multiclass and regression streams",
            )
        if isinstance(ds, datasets.base.RemoteDataset) and not ds.is_downloaded:
            raise SourceError(
                f"source.name: River's {ds.__class__.__name__} is not bundled with River: it must be "
                f"downloaded from {ds.url}, and this workbench does not download at replay time. "
                f"Download it once with `river.datasets.{ds.__class__.__name__}().download()` on a "
                f"machine with internet, or pick a bundled dataset: {', '.join(bundled())}"
            )
        return ds

    def validate(self) -> None:
        self.dataset()

    @property
    def task(self) -> str:
        return self.config.task or river_task(self.dataset().task)

    @property
    def length(self) -> int | None:
        n = self.dataset().n_samples
        return min(n, self.config.n) if self.config.n and n else (self.config.n or n)

    def true_drifts(self) -> list[TrueDrift]:
        return []

    def events(self, dead_letter: DeadLetterSink) -> Iterator[Event]:
        time_field = self.config.time
        rows = itertools.islice(self.dataset(), self.config.n)
        if time_field is None:
            for x, y in rows:
                yield Event(x, y)
            return
        for i, (x, y) in enumerate(rows):
            if time_field not in x:
                raise ConfigError("source.time", f"no field {time_field!r} in the dataset; fields: {', '.join(x)}")
            # The clock is not a feature: a model must not learn from when the event happened.
            yield Event(x, y, time=x.pop(time_field), origin=i)
