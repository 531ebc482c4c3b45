"""The ``deploy:`` config: one bundle, the topics it learns from, the store, the replicas.

```yaml
deploy:
  bundle: bundles/lr                      # the exported bundle the deployment starts from
  store: bundles/lr.store                 # a directory (default: BUNDLE.store) or redis://host:port/db
  kafka:
    bootstrap_servers: 127.0.0.1:9092
    events: {topic: applications, id: application_id}            # time: kafka | a payload field
    labels: {topic: decisions, id: application_id, target: approved}
    predictions: served-predictions       # where replicas log what they served (optional)
    group_id: workbench-learner
  db: runs/workbench.duckdb               # the update service's steps: a run with status `live`
  checkpoints: {every: 1000, seconds: 10} # publish a version every N updates or T seconds
  batch_size: 1                           # labels learned per mini-batch (learn_many where the model has it)
  replicas: 2                             # serve processes, on ports port, port+1, ...
  port: 8000
  metrics_port: 9108                      # the update service's Prometheus metrics
  ab: {b: 3, split: 0.5, shadow: false}   # b: a version of the store, or a bundle path
  served_guard: {window: 500, drop: 0.05} # served accuracy this far below arm b's (or the bundle's): roll back
  trust_unsigned: false                   # load an unsigned bundle and unsigned versions (no signing key)
```
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.config import YamlLoader, apply_override
from workbench.errors import ConfigError

_KEYS = (
    "bundle",
    "store",
    "kafka",
    "db",
    "checkpoints",
    "batch_size",
    "replicas",
    "host",
    "port",
    "metrics_port",
    "ab",
    "served_guard",
)


@dataclass
class Topic:
    topic: str
    id: str
    target: str | None = None
    time: str = "kafka"


@dataclass
class ABConfig:
    b: int | str  # a version number of the store, or the path of a bundle (e.g. a frozen baseline)
    split: float = 0.5  # the share of keys answered by arm b
    shadow: bool = False  # arm b predicts every request too, but arm a answers


@dataclass
class DeployConfig:
    bundle: str
    bootstrap_servers: str
    events: Topic
    labels: Topic
    store: str = ""
    predictions: str | None = None
    group_id: str = "workbench-learner"
    db: str = "runs/workbench.duckdb"
    every: int = 1000
    seconds: float = 10.0
    batch_size: int = 1
    replicas: int = 2
    host: str = "127.0.0.1"
    port: int = 8000
    metrics_port: int | None = None
    ab: ABConfig | None = None
    guard_window: int = 500
    guard_drop: float | None = None
    trust_unsigned: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The ``deploy:`` mapping that ``parse`` reads back to an equal config."""
        d = asdict(self)
        out = {k: d[k] for k in ("bundle", "store", "db", "batch_size", "replicas", "host", "port")}
        out["kafka"] = {
            "bootstrap_servers": self.bootstrap_servers,
            "events": {k: v for k, v in d["events"].items() if v is not None},
            "labels": d["labels"],
            "group_id": self.group_id,
            **({"predictions": self.predictions} if self.predictions else {}),
        }
        out["checkpoints"] = {"every": self.every, "seconds": self.seconds}
        if self.trust_unsigned:
            out["trust_unsigned"] = True
        if self.metrics_port is not None:
            out["metrics_port"] = self.metrics_port
        if self.ab is not None:
            out["ab"] = d["ab"]
        if self.guard_drop is not None:
            out["served_guard"] = {"window": self.guard_window, "drop": self.guard_drop}
        return {"deploy": out}


def load(config: str | Path | dict, overrides: list[str] | None = None) -> DeployConfig:
    """A YAML file with a ``deploy:`` key, its dict, or a bundle directory; then ``key=value``
    overrides (``deploy.kafka.bootstrap_servers=...``)."""
    if isinstance(config, (str, Path)) and Path(config).is_dir():
        raw: Any = {"deploy": {"bundle": str(config)}}
    elif isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise ConfigError("", f"{path} is neither a bundle directory nor a deploy config file")
        raw = yaml.load(path.read_text(), Loader=YamlLoader)
    else:
        raw = copy.deepcopy(config)
    if not isinstance(raw, dict) or not isinstance(raw.get("deploy"), dict):
        raise ConfigError("deploy", "expected a mapping under the key deploy: {bundle, kafka, store, ...}")
    for item in overrides or []:
        apply_override(raw, item)
    return parse(raw["deploy"])


def _only(raw: dict, allowed: tuple, where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", f"unknown key; allowed: {', '.join(allowed)}")


def _str(raw: dict, key: str, where: str, default: Any = ...) -> Any:
    value = raw.get(key, default)
    if value is ...:
        raise ConfigError(f"{where}.{key}", "required")
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where}.{key}", f"expected a non-empty string, got {value!r}")
    return value


def _int(raw: dict, key: str, where: str, default: int | None, minimum: int = 1) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}.{key}", f"expected a whole number of at least {minimum}, got {value!r}")
    return value


def _topic(raw: Any, where: str, label: bool) -> Topic:
    if not isinstance(raw, dict):
        raise ConfigError(where, "expected a mapping {topic, id" + (", target}" if label else "}"))
    _only(raw, ("topic", "id", "target", "time") if label else ("topic", "id", "time"), where)
    return Topic(
        _str(raw, "topic", where),
        _str(raw, "id", where),
        _str(raw, "target", where) if label else None,
        _str(raw, "time", where, "kafka"),
    )


def parse(raw: dict) -> DeployConfig:
    where = "deploy"
    _only(raw, _KEYS, where)
    bundle = _str(raw, "bundle", where)
    if not (Path(bundle) / "SHA256SUMS").is_file():
        raise ConfigError("deploy.bundle", f"{bundle} is not a bundle (make one with `workbench export`)")
    kafka = raw.get("kafka")
    if not isinstance(kafka, dict):
        raise ConfigError(
            "deploy.kafka", "required: {bootstrap_servers, events: {topic, id}, labels: {topic, id, target}}"
        )
    _only(kafka, ("bootstrap_servers", "events", "labels", "predictions", "group_id"), "deploy.kafka")
    cfg = DeployConfig(
        bundle=bundle,
        bootstrap_servers=_str(kafka, "bootstrap_servers", "deploy.kafka"),
        events=_topic(kafka.get("events"), "deploy.kafka.events", label=False),
        labels=_topic(kafka.get("labels"), "deploy.kafka.labels", label=True),
        store=_str(raw, "store", where, None) or str(Path(bundle).with_suffix(".store")),
        predictions=_str(kafka, "predictions", "deploy.kafka", None),
        group_id=_str(kafka, "group_id", "deploy.kafka", "workbench-learner"),
        db=_str(raw, "db", where, "runs/workbench.duckdb"),
        batch_size=_int(raw, "batch_size", where, 1),
        replicas=_int(raw, "replicas", where, 2),
        host=_str(raw, "host", where, "127.0.0.1"),
        port=_int(raw, "port", where, 8000),
        metrics_port=_int(raw, "metrics_port", where, None),
    )
    checkpoints = raw.get("checkpoints") or {}
    if not isinstance(checkpoints, dict):
        raise ConfigError("deploy.checkpoints", "expected {every: N updates, seconds: T}")
    _only(checkpoints, ("every", "seconds"), "deploy.checkpoints")
    cfg.every = _int(checkpoints, "every", "deploy.checkpoints", 1000)
    seconds = checkpoints.get("seconds", 10.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ConfigError("deploy.checkpoints.seconds", f"expected a positive number of seconds, got {seconds!r}")
    cfg.seconds = float(seconds)
    if raw.get("ab") is not None:
        cfg.ab = _ab(raw["ab"])
    if not isinstance(raw.get("trust_unsigned", False), bool):
        raise ConfigError("deploy.trust_unsigned", f"expected true or false, got {raw['trust_unsigned']!r}")
    cfg.trust_unsigned = raw.get("trust_unsigned", False)
    if raw.get("served_guard") is not None:
        guard = raw["served_guard"]
        if not isinstance(guard, dict):
            raise ConfigError("deploy.served_guard", "expected {window: N, drop: 0.05}")
        _only(guard, ("window", "drop"), "deploy.served_guard")
        cfg.guard_window = _int(guard, "window", "deploy.served_guard", 500)
        drop = guard.get("drop", 0.05)
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop <= 1:
            raise ConfigError("deploy.served_guard.drop", f"expected a number from 0 to 1, got {drop!r}")
        cfg.guard_drop = float(drop)
    return cfg


def _ab(raw: Any) -> ABConfig:
    if not isinstance(raw, dict) or "b" not in raw:
        raise ConfigError("deploy.ab", "expected {b: a version number or a bundle path, split, shadow}")
    _only(raw, ("b", "split", "shadow"), "deploy.ab")
    b = raw["b"]
    if isinstance(b, bool) or not isinstance(b, (int, str)):
        raise ConfigError("deploy.ab.b", f"expected a version number or a bundle path, got {b!r}")
    split = raw.get("split", 0.5)
    if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0 <= split <= 1:
        raise ConfigError("deploy.ab.split", f"expected the share of traffic arm b answers, from 0 to 1; got {split!r}")
    shadow = raw.get("shadow", False)
    if not isinstance(shadow, bool):
        raise ConfigError("deploy.ab.shadow", f"expected true or false, got {shadow!r}")
    return ABConfig(b, float(split), shadow)
