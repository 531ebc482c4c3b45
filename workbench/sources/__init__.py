"""Sources yield events; they know nothing about models."""

from __future__ import annotations

from workbench.config import SourceConfig
from workbench.sources.base import Source
from workbench.sources.datasets import DatasetSource
from workbench.sources.files import FileSource
from workbench.sources.synthetic import SyntheticSource

__all__ = ["Source", "open_source", "DatasetSource", "FileSource", "SyntheticSource"]


def open_source(config: SourceConfig, seed: int) -> Source:
    """The source a config names, validated (raises ConfigError/SourceError before any replay)."""
    if config.kind == "synthetic":
        source = SyntheticSource(config, seed)
    elif config.kind == "dataset":
        source = DatasetSource(config)
    else:
        source = FileSource(config)
    source.validate()
    return source
