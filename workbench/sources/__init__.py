"""Sources yield events; they know nothing about models."""

from __future__ import annotations

from collections.abc import Iterable

from workbench.config import SourceConfig
from workbench.errors import ConfigError
from workbench.sources.base import Source
from workbench.sources.datasets import DatasetSource
from workbench.sources.files import FileSource
from workbench.sources.kafka_dump import KafkaDumpSource
from workbench.sources.python import IterableSource
from workbench.sources.synthetic import SyntheticSource

__all__ = [
    "Source",
    "open_source",
    "DatasetSource",
    "FileSource",
    "IterableSource",
    "KafkaDumpSource",
    "SyntheticSource",
]


def open_source(config: SourceConfig, seed: int, stream: Iterable | None = None) -> Source:
    """The source a config names, validated (raises ConfigError/SourceError before any replay)."""
    if (stream is None) != (config.kind != "python"):
        raise ConfigError(
            "source.kind", "'python' goes with a stream passed to workbench.run(config, stream=...), and only with it"
        )
    if config.kind == "python":
        source = IterableSource(config, stream)
    elif config.kind == "synthetic":
        source = SyntheticSource(config, seed)
    elif config.kind == "dataset":
        source = DatasetSource(config)
    elif config.kind == "kafka_dump":
        source = KafkaDumpSource(config)
    elif config.kind == "kafka":
        # confluent-kafka is loaded only for live runs
        from workbench.sources.kafka_live import KafkaSource

        source = KafkaSource(config)
    else:
        source = FileSource(config)
    source.validate()
    return source
