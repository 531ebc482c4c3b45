"""The experiment config: parse, validate up front, fill defaults.

A config is a YAML file or a dict with the keys in DESIGN.md. Everything is checked before a
single event is read, and every error names the dotted key and what is allowed there.
"""

from __future__ import annotations

import copy
import glob
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import ConfigError


class YamlLoader(yaml.SafeLoader):
    """YAML 1.2's booleans: only true/false. PyYAML's YAML 1.1 also reads on/off/yes/no as
    booleans, which turns the config key ``on: error`` into ``True: error``."""


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

SOURCE_KINDS = ("synthetic", "dataset", "file", "python", "kafka_dump", "kafka")
TASKS = ("binary", "multiclass", "regression")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta | None:
    """'10m' → 10 minutes; None if ``text`` is not a duration."""
    match = _DURATION.match(text)
    if not match:
        return None
    value, unit = match.groups()
    return timedelta(**{_UNITS[unit]: float(value)})


@dataclass
class ModelSpec:
    """A dotted model name with its constructor params (values may nest ModelSpecs)."""

    model: str
    params: dict[str, Any] = field(default_factory=dict)


#: ``preprocessing: auto``: the standard pipeline for the stream's features (learners/preprocessing.py)
AUTO = "auto"


@dataclass
class LearnerConfig:
    name: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    preprocessing: list[ModelSpec] | str = field(default_factory=list)  # or AUTO


@dataclass
class DriftSpec:
    at: int
    width: int = 1
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceConfig:
    kind: str
    n: int | None = None
    task: str | None = None
    # synthetic
    generator: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    drifts: list[DriftSpec] = field(default_factory=list)
    # dataset
    name: str | None = None
    # file
    path: str | None = None
    target: str | None = None
    features: list[str] | None = None
    time: str | None = None
    time_unit: str = "s"
    # kafka_dump and kafka (path may also be a list of paths or globs)
    id: str | None = None
    format: str = "auto"
    labels: LabelsConfig | None = None
    strict: bool = False
    bootstrap_servers: str | None = None
    topics: list[str] = field(default_factory=list)
    group_id: str | None = None
    start: Any = "earliest"
    stop: StopConfig | None = None


@dataclass
class LabelsConfig:
    """Labels arriving later in another dump (``path``) or topic (``topic``), joined on ``id``."""

    id: str
    target: str
    path: Any = None
    topic: str | None = None
    time: str = "kafka"
    format: str = "auto"


@dataclass
class StopConfig:
    """When a live Kafka replay ends: whichever comes first."""

    max_events: int | None = None
    idle_timeout: float | None = None
    end_offsets: bool = True


@dataclass
class ReplayConfig:
    label_delay: int | str = 0
    allowed_lateness: Any = 0
    late: str = "dead_letter"
    batch_size: int = 1
    batch_timeout: float | None = None
    speed: float | None = None


@dataclass
class Config:
    name: str
    source: SourceConfig
    learners: list[LearnerConfig]
    seed: int = 42
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    metrics: list[str] = field(default_factory=list)
    rolling_window: int = 1000
    baselines: list[BaselineConfig] = field(default_factory=list)
    drift: list[DriftConfig] = field(default_factory=list)
    checkpoints: CheckpointConfig | None = None
    guard: GuardConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data that ``load`` reads back to an equal Config."""
        out = asdict(self)
        allowed = _SOURCE_KEYS[self.source.kind]
        out["source"] = {k: v for k, v in out["source"].items() if k in allowed and v not in (None, [], {})}
        return out


_TOP_KEYS = (
    "name",
    "seed",
    "source",
    "replay",
    "learners",
    "metrics",
    "rolling_window",
    "baselines",
    "drift",
    "checkpoints",
    "guard",
)
_SOURCE_KEYS = {
    "synthetic": ("kind", "generator", "params", "drifts", "n", "task"),
    "dataset": ("kind", "name", "time", "n", "task"),
    "file": ("kind", "path", "target", "features", "time", "time_unit", "n", "task"),
    "python": ("kind", "n", "task"),  # wb.run(config, stream=...) from Python
    "kafka_dump": ("kind", "path", "format", "target", "id", "time", "time_unit", "labels", "strict", "n", "task"),
    "kafka": (
        "kind",
        "bootstrap_servers",
        "topics",
        "group_id",
        "start",
        "stop",
        "target",
        "id",
        "time",
        "time_unit",
        "labels",
        "strict",
        "n",
        "task",
    ),
}
DUMP_FORMATS = ("auto", "kcat", "console", "s3", "jsonl")
LATE_POLICIES = ("dead_letter", "replay")
_LEARNER_KEYS = ("name", "model", "params", "preprocessing")
_DRIFT_KEYS = ("at", "width", "params")
_REPLAY_KEYS = ("label_delay", "allowed_lateness", "late", "batch_size", "batch_timeout", "speed")


def load(config: str | Path | dict | Config, overrides: list[str | tuple[str, Any]] | None = None) -> Config:
    """Read a YAML path or a dict, apply overrides (``"key=value"`` strings or ``(key, value)``
    pairs), validate, fill defaults."""
    if isinstance(config, Config):
        if overrides:
            return load(config.to_dict(), overrides)
        return config
    default_name = "experiment"
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.exists():
            raise ConfigError("", f"config file {path} does not exist")
        try:
            raw = yaml.load(path.read_text(), Loader=YamlLoader)
        except yaml.YAMLError as exc:
            raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
        default_name = path.stem
    elif isinstance(config, dict):
        raw = copy.deepcopy(config)
    else:
        raise ConfigError("", f"expected a YAML path or a dict, got {type(config).__name__}")
    if not isinstance(raw, dict):
        raise ConfigError("", "the config must be a mapping of keys (name, source, learners, ...)")
    for item in overrides or []:
        if isinstance(item, tuple):
            set_key(raw, *item)
        else:
            apply_override(raw, item)
    raw.setdefault("name", default_name)
    cfg = parse(raw)
    if isinstance(config, (str, Path)) and cfg.source.kind == "kafka_dump":
        _relative_to_file(cfg.source, Path(config).resolve().parent)
    return cfg


def _relative_to_file(source: SourceConfig, base: Path) -> None:
    """Dump paths in a YAML file naming files beside it (../datasets/x) work from any folder."""

    def resolve(paths: str | list[str]) -> str | list[str]:
        if isinstance(paths, list):
            return [resolve(p) for p in paths]
        candidate = base / paths
        return str(candidate) if not Path(paths).is_absolute() and glob.glob(str(candidate)) else paths

    source.path = resolve(source.path)
    if source.labels is not None and source.labels.path is not None:
        source.labels.path = resolve(source.labels.path)


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``dotted.key=value`` (value parsed as YAML; list items by index)."""
    if "=" not in item:
        raise ConfigError(item, "an override must look like key=value, e.g. source.n=1000")
    key, _, text = item.partition("=")
    set_key(raw, key, yaml.load(text, Loader=YamlLoader) if text.strip() else None)


def set_key(raw: dict, key: str, value: Any) -> None:
    """Set one dotted key of a raw config: ``learners.0.params.l2`` or ``learners[0].params.l2``."""
    parts = re.sub(r"\[(\d+)\]", r".\1", key.strip()).split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_index(part, node, where)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(where, f"cannot set a key inside {node!r}")
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, key)] = value
    else:
        node[last] = value


def _index(part: str, seq: list, where: str) -> int:
    if not part.isdigit() or int(part) >= len(seq):
        raise ConfigError(where, f"expected a list index from 0 to {len(seq) - 1}")
    return int(part)


def parse(raw: dict[str, Any]) -> Config:
    _only(raw, _TOP_KEYS, "")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("name", "expected a non-empty string naming the experiment")
    seed = _int(raw.get("seed", 42), "seed")
    source = _source(_mapping(raw.get("source"), "source", required=True))
    replay = _replay(_mapping(raw.get("replay", {}), "replay"))
    if replay.batch_size > 1 and (replay.label_delay != 0 or source.labels is not None):
        raise ConfigError("replay.batch_size", "mini-batches need labels in the same message "
                          "with no replay.label_delay (a delayed label cannot join its batch)")
    learners_raw = raw.get("learners")
    if not isinstance(learners_raw, list) or not learners_raw:
        raise ConfigError("learners", "expected a list of at least one learner (name, model, params, preprocessing)")
    learners = [_learner(item, f"learners[{i}]") for i, item in enumerate(learners_raw)]
    names = [lr.name for lr in learners]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError("learners", f"learner names must be unique; repeated: {', '.join(dupes)}")
    metrics = raw.get("metrics", [])
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise ConfigError("metrics", "expected a list of metric names, e.g. [accuracy, log_loss]")
    window = _int(raw.get("rolling_window", 1000), "rolling_window", minimum=1)
    return Config(
        name=name,
        seed=seed,
        source=source,
        replay=replay,
        learners=learners,
        metrics=list(metrics),
        rolling_window=window,
        **_science(raw, names),
    )


def _source(raw: dict) -> SourceConfig:
    kind = raw.get("kind")
    if kind not in SOURCE_KINDS:
        raise ConfigError("source.kind", f"got {kind!r}; allowed: {', '.join(SOURCE_KINDS)}")
    _only(raw, _SOURCE_KEYS[kind], "source")
    cfg = SourceConfig(kind=kind)
    if raw.get("n") is not None:
        cfg.n = _int(raw["n"], "source.n", minimum=1)
    if raw.get("task") is not None:
        if raw["task"] not in TASKS:
            raise ConfigError("source.task", f"got {raw['task']!r}; allowed: {', '.join(TASKS)}")
        cfg.task = raw["task"]
    if kind == "synthetic":
        cfg.generator = _str(raw.get("generator"), "source.generator")
        cfg.params = _mapping(raw.get("params", {}), "source.params")
        drifts = raw.get("drifts", [])
        if not isinstance(drifts, list):
            raise ConfigError("source.drifts", "expected a list of {at, width, params}")
        cfg.drifts = [_drift(d, f"source.drifts[{i}]") for i, d in enumerate(drifts)]
        positions = [d.at for d in cfg.drifts]
        if positions != sorted(positions):
            raise ConfigError("source.drifts", f"drifts must be in increasing order of 'at', got {positions}")
    elif kind == "dataset":
        cfg.name = _str(raw.get("name"), "source.name")
        if raw.get("time") is not None:
            cfg.time = _str(raw["time"], "source.time")
    elif kind == "file":
        cfg.path = _str(raw.get("path"), "source.path")
        cfg.target = _str(raw.get("target"), "source.target")
        if raw.get("features") is not None:
            feats = raw["features"]
            if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats) or not feats:
                raise ConfigError("source.features", "expected a non-empty list of column names")
            cfg.features = feats
        if raw.get("time") is not None:
            cfg.time = _str(raw["time"], "source.time")
        unit = raw.get("time_unit", "s")
        if unit not in ("s", "ms", "us"):
            raise ConfigError("source.time_unit", f"got {unit!r}; allowed: s, ms, us (for numeric time columns)")
        cfg.time_unit = unit
    elif kind in ("kafka_dump", "kafka"):
        _kafka_source(raw, cfg)
    return cfg


def _kafka_source(raw: dict, cfg: SourceConfig) -> None:
    if cfg.kind == "kafka_dump":
        cfg.path = _paths(raw.get("path"), "source.path")
        cfg.format = _choice(raw.get("format", "auto"), "source.format", DUMP_FORMATS)
    else:
        cfg.bootstrap_servers = _str(raw.get("bootstrap_servers"), "source.bootstrap_servers")
        topics = raw.get("topics")
        cfg.topics = [topics] if isinstance(topics, str) else topics
        if not isinstance(cfg.topics, list) or not cfg.topics or not all(isinstance(t, str) and t for t in cfg.topics):
            raise ConfigError("source.topics", f"required: a topic name or a list of them, got {topics!r}")
        if raw.get("group_id") is not None:
            cfg.group_id = _str(raw["group_id"], "source.group_id")
        cfg.start = _start(raw.get("start", "earliest"))
        stop = _mapping(raw.get("stop", {}), "source.stop")
        _only(stop, ("max_events", "idle_timeout", "end_offsets"), "source.stop")
        cfg.stop = StopConfig(
            max_events=None
            if stop.get("max_events") is None
            else _int(stop["max_events"], "source.stop.max_events", minimum=1),
            idle_timeout=None
            if stop.get("idle_timeout") is None
            else _positive(stop["idle_timeout"], "source.stop.idle_timeout"),
            end_offsets=_bool(stop.get("end_offsets", True), "source.stop.end_offsets"),
        )
    for key in ("target", "id"):
        if raw.get(key) is not None:
            setattr(cfg, key, _str(raw[key], f"source.{key}"))
    cfg.time = _str(raw.get("time", "kafka"), "source.time")
    unit = raw.get("time_unit", "ms" if cfg.time != "kafka" else "s")
    if unit not in ("s", "ms", "us"):
        raise ConfigError("source.time_unit", f"got {unit!r}; allowed: s, ms, us (for numeric time fields)")
    cfg.time_unit = unit
    cfg.strict = _bool(raw.get("strict", False), "source.strict")
    if raw.get("labels") is not None:
        cfg.labels = _labels(_mapping(raw["labels"], "source.labels"), cfg.kind)
    if cfg.target is None and cfg.labels is None:
        raise ConfigError(
            "source.target",
            "required: the payload field holding the label, or source.labels "
            "{path, id, target} for labels that arrive later in another dump or topic",
        )
    if cfg.target is not None and cfg.labels is not None:
        raise ConfigError(
            "source.labels",
            "give the label either in the same message (source.target) or in "
            "another dump/topic (source.labels), not both",
        )


def _labels(raw: dict, kind: str) -> LabelsConfig:
    _only(raw, ("path", "topic", "id", "target", "time", "format"), "source.labels")
    labels = LabelsConfig(
        id=_str(raw.get("id"), "source.labels.id"),
        target=_str(raw.get("target"), "source.labels.target"),
        time=_str(raw.get("time", "kafka"), "source.labels.time"),
        format=_choice(raw.get("format", "auto"), "source.labels.format", DUMP_FORMATS),
    )
    if (raw.get("path") is None) == (raw.get("topic") is None):
        raise ConfigError(
            "source.labels",
            "give exactly one of path (a labels dump) or topic (a live labels topic)",
        )
    if raw.get("topic") is not None:
        if kind != "kafka":
            raise ConfigError(
                "source.labels.topic",
                "a labels topic goes with a live source (kind: kafka); a dump takes labels.path",
            )
        labels.topic = _str(raw["topic"], "source.labels.topic")
    else:
        labels.path = _paths(raw["path"], "source.labels.path")
    return labels


def _paths(raw: Any, key: str) -> str | list[str]:
    if isinstance(raw, list) and raw and all(isinstance(p, str) and p for p in raw):
        return raw
    return _str(raw, key)


def _start(raw: Any) -> Any:
    """earliest | latest | an ISO time | {partition: offset} | {topic: {partition: offset}}."""
    if raw in ("earliest", "latest") or isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            datetime.fromisoformat(raw)
            return raw
        except ValueError:
            pass
    if isinstance(raw, datetime):
        return raw.isoformat()
    raise ConfigError(
        "source.start",
        f"got {raw!r}; allowed: earliest, latest, an ISO timestamp "
        "(e.g. '2026-01-01T00:00:00Z'), or offsets {partition: offset}",
    )


def _choice(raw: Any, key: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise ConfigError(key, f"got {raw!r}; allowed: {', '.join(allowed)}")
    return raw


def _bool(raw: Any, key: str) -> bool:
    if not isinstance(raw, bool):
        raise ConfigError(key, f"expected true or false, got {raw!r}")
    return raw


def _positive(raw: Any, key: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
        raise ConfigError(key, f"expected a positive number, got {raw!r}")
    return float(raw)


def _drift(raw: Any, key: str) -> DriftSpec:
    raw = _mapping(raw, key, required=True)
    _only(raw, _DRIFT_KEYS, key)
    if "at" not in raw:
        raise ConfigError(f"{key}.at", "required: the position (event index) where the drift is centred")
    return DriftSpec(
        at=_int(raw["at"], f"{key}.at", minimum=0),
        width=_int(raw.get("width", 1), f"{key}.width", minimum=1),
        params=_mapping(raw.get("params", {}), f"{key}.params"),
    )


def _replay(raw: dict) -> ReplayConfig:
    _only(raw, _REPLAY_KEYS, "replay")
    delay = raw.get("label_delay", 0)
    if delay is None:
        delay = 0
    if isinstance(delay, bool) or not isinstance(delay, (int, str)):
        raise ConfigError("replay.label_delay", _DELAY_HELP.format(got=repr(delay)))
    if isinstance(delay, int) and delay < 0:
        raise ConfigError("replay.label_delay", _DELAY_HELP.format(got=repr(delay)))
    if isinstance(delay, str) and not delay.strip():
        raise ConfigError("replay.label_delay", _DELAY_HELP.format(got=repr(delay)))
    out = ReplayConfig(label_delay=delay)
    lateness = raw.get("allowed_lateness", 0)
    if (
        isinstance(lateness, str)
        and parse_duration(lateness) is None
        or isinstance(lateness, bool)
        or not isinstance(lateness, (int, float, str))
        or (not isinstance(lateness, str) and lateness < 0)
    ):
        raise ConfigError(
            "replay.allowed_lateness",
            f"got {lateness!r}; allowed: 0, a duration of event time (e.g. '60s', '5m'), or a number of seconds",
        )
    out.allowed_lateness = lateness
    out.late = _choice(raw.get("late", "dead_letter"), "replay.late", LATE_POLICIES)
    out.batch_size = _int(raw.get("batch_size", 1), "replay.batch_size", minimum=1)
    if raw.get("batch_timeout") is not None:
        out.batch_timeout = _positive(raw["batch_timeout"], "replay.batch_timeout")
    if raw.get("speed") is not None:
        out.speed = _positive(raw["speed"], "replay.speed")
    return out


def lateness(replay: ReplayConfig) -> timedelta:
    """replay.allowed_lateness as a duration (a bare number is seconds)."""
    value = replay.allowed_lateness
    return parse_duration(value) if isinstance(value, str) else timedelta(seconds=value)


_DELAY_HELP = (
    "got {got}; allowed: 0 (no delay), a number of events (e.g. 500), an event-time duration "
    "(e.g. '10m', '30s', '2h', '1d'), or the name of a field holding each event's delay"
)


def _learner(raw: Any, key: str) -> LearnerConfig:
    raw = _mapping(raw, key, required=True)
    _only(raw, _LEARNER_KEYS, key)
    model = _str(raw.get("model"), f"{key}.model")
    name = raw.get("name") or model.rsplit(".", 1)[-1]
    if not isinstance(name, str):
        raise ConfigError(f"{key}.name", "expected a string")
    params = _params(raw.get("params", {}), f"{key}.params")
    prep_raw = raw.get("preprocessing", [])
    if prep_raw == AUTO:
        return LearnerConfig(name=name, model=model, params=params, preprocessing=AUTO)
    if not isinstance(prep_raw, list):
        raise ConfigError(
            f"{key}.preprocessing",
            f"expected {AUTO!r} (numbers scaled, text one-hot encoded) or a list of dotted names or {{model, params}}",
        )
    prep = [_model_spec(p, f"{key}.preprocessing[{i}]") for i, p in enumerate(prep_raw)]
    return LearnerConfig(name=name, model=model, params=params, preprocessing=prep)


def _model_spec(raw: Any, key: str) -> ModelSpec:
    if isinstance(raw, str):
        return ModelSpec(model=raw)
    raw = _mapping(raw, key, required=True)
    _only(raw, ("model", "params"), key)
    return ModelSpec(
        model=_str(raw.get("model"), f"{key}.model"), params=_params(raw.get("params", {}), f"{key}.params")
    )


def _params(raw: Any, key: str) -> dict[str, Any]:
    """Constructor params; a value of the form {model: ..., params: ...} is a nested model."""
    raw = _mapping(raw, key)
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if isinstance(value, dict) and "model" in value and set(value) <= {"model", "params"}:
            out[name] = _model_spec(value, f"{key}.{name}")
        else:
            out[name] = value
    return out


def _only(raw: dict, allowed: tuple[str, ...], where: str) -> None:
    for k in raw:
        if k not in allowed:
            key = f"{where}.{k}" if where else str(k)
            raise ConfigError(key, f"unknown key; allowed here: {', '.join(allowed)}")


def _mapping(raw: Any, key: str, required: bool = False) -> dict:
    if raw is None and not required:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(key, f"expected a mapping, got {raw!r}")
    return raw


def _str(raw: Any, key: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(key, f"required: expected a non-empty string, got {raw!r}")
    return raw


def _int(raw: Any, key: str, minimum: int | None = None) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(key, f"expected an integer, got {raw!r}")
    if minimum is not None and raw < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {raw}")
    return raw


# -- the science keys: baselines, drift, checkpoints, guard ------------------------------------

DRIFT_ON = ("error", "loss")
DRIFT_ACTIONS = ("none", "reset", "background", "rollback")
GUARD_METRICS = ("accuracy", "log_loss", "mse", "mae")


@dataclass
class BaselineConfig:
    """A batch-trained scikit-learn arm: fit once on the first ``fit_on_first`` labelled events,
    then (if ``refit_every``) refit every ``refit_every`` labels on the last ``window`` ones."""

    name: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    preprocessing: list[ModelSpec] = field(default_factory=list)
    fit_on_first: int = 1000
    refit_every: int | None = None
    window: int | None = None


@dataclass
class FeatureDriftConfig:
    """PSI and KS of every numeric feature, per ``window`` events, against the first window."""

    window: int = 1000
    bins: int = 10
    psi: float = 0.2  # alarm when a window's PSI exceeds this
    ks_pvalue: float = 0.001  # alarm when the KS test's p-value falls below this


@dataclass
class DriftConfig:
    """One drift detector watching the learners' error or loss (and what to do on a drift)."""

    detector: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    on: str = "error"
    action: str = "none"
    learners: list[str] | None = None  # None: every learner and baseline
    name: str | None = None  # the detector's name in drift_events (default: its class)
    features: FeatureDriftConfig | None = None


@dataclass
class CheckpointConfig:
    every: int | None = None  # updates between scheduled checkpoints
    keep: int = 10  # scheduled / on-demand / rollback checkpoints kept
    at: list[int] = field(default_factory=list)  # positions of on-demand checkpoints


@dataclass
class GuardConfig:
    metric: str = "accuracy"
    window: int = 1000
    drop: float = 0.05


_BASELINE_KEYS = (
    "name",
    "model",
    "params",
    "preprocessing",
    "fit_on_first",
    "refit_every",
    "window",
)
_DRIFT_CFG_KEYS = ("detector", "params", "on", "action", "learners", "name", "features")
_FEATURE_KEYS = ("window", "bins", "psi", "ks_pvalue")


def _science(raw: dict, learner_names: list[str]) -> dict[str, Any]:
    baselines_raw = raw.get("baselines") or []
    if not isinstance(baselines_raw, list):
        raise ConfigError(
            "baselines",
            "expected a list of {name, model, params, preprocessing, fit_on_first, refit_every, window}",
        )
    baselines = [_baseline(b, f"baselines[{i}]") for i, b in enumerate(baselines_raw)]
    names = learner_names + [b.name for b in baselines]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError("baselines", f"learner and baseline names must be unique; repeated: {', '.join(dupes)}")
    drift_raw = raw.get("drift") or []
    items = [drift_raw] if isinstance(drift_raw, dict) else drift_raw
    if not isinstance(items, list):
        raise ConfigError("drift", "expected a mapping {detector, params, on, action} or a list of them")
    keys = ["drift"] if isinstance(drift_raw, dict) else [f"drift[{i}]" for i in range(len(items))]
    drift = [_drift_config(d, k, names) for d, k in zip(items, keys, strict=True)]
    if sum(d.features is not None for d in drift) > 1:
        raise ConfigError("drift", "give features: {window, ...} once")
    acting = [
        n for n in names for d in drift if d.action != "none" and d.detector and (d.learners is None or n in d.learners)
    ]
    twice = sorted({n for n in acting if acting.count(n) > 1})
    if twice:
        raise ConfigError(
            "drift",
            f"only one detector per learner may act (action other than none); {', '.join(twice)} would get several",
        )
    checkpoints = _checkpoints(raw.get("checkpoints"))
    guard = _guard(raw.get("guard"))
    needs_checkpoints = guard is not None or any(d.action == "rollback" for d in drift)
    if needs_checkpoints and (checkpoints is None or not (checkpoints.every or checkpoints.at)):
        key = "guard" if guard is not None else "drift.action"
        raise ConfigError(key, "rolling back needs checkpoints to roll back to: set checkpoints: {every: N}")
    return {"baselines": baselines, "drift": drift, "checkpoints": checkpoints, "guard": guard}


def _baseline(raw: Any, key: str) -> BaselineConfig:
    raw = _mapping(raw, key, required=True)
    _only(raw, _BASELINE_KEYS, key)
    lc = _learner({k: v for k, v in raw.items() if k in _LEARNER_KEYS}, key)
    if not lc.model.startswith("sklearn."):
        raise ConfigError(
            f"{key}.model",
            f"a baseline is a scikit-learn estimator ('sklearn.…'), got {lc.model!r}",
        )
    if lc.preprocessing == AUTO:
        raise ConfigError(
            f"{key}.preprocessing",
            f"{AUTO!r} is for online (River) learners; list scikit-learn steps, "
            "e.g. [sklearn.preprocessing.StandardScaler]",
        )
    cfg = BaselineConfig(name=lc.name, model=lc.model, params=lc.params, preprocessing=lc.preprocessing)
    cfg.fit_on_first = _int(raw.get("fit_on_first", 1000), f"{key}.fit_on_first", minimum=1)
    if raw.get("refit_every") is not None:
        cfg.refit_every = _int(raw["refit_every"], f"{key}.refit_every", minimum=1)
    if raw.get("window") is not None:
        cfg.window = _int(raw["window"], f"{key}.window", minimum=1)
        if cfg.refit_every is None:
            raise ConfigError(f"{key}.window", "a window only matters with refit_every: set refit_every too")
    return cfg


def _drift_config(raw: Any, key: str, names: list[str]) -> DriftConfig:
    raw = _mapping(raw, key, required=True)
    _only(raw, _DRIFT_CFG_KEYS, key)
    cfg = DriftConfig()
    if raw.get("detector") is not None:
        cfg.detector = _str(raw["detector"], f"{key}.detector")
    elif raw.get("features") is None:
        raise ConfigError(
            f"{key}.detector",
            "required: a River drift detector such as river.drift.ADWIN "
            "(or give features: {window: N} for feature drift only)",
        )
    cfg.params = _mapping(raw.get("params", {}), f"{key}.params")
    if raw.get("on", "error") not in DRIFT_ON:
        raise ConfigError(f"{key}.on", f"got {raw['on']!r}; allowed: {', '.join(DRIFT_ON)}")
    cfg.on = raw.get("on", "error")
    if raw.get("action", "none") not in DRIFT_ACTIONS:
        raise ConfigError(f"{key}.action", f"got {raw['action']!r}; allowed: {', '.join(DRIFT_ACTIONS)}")
    cfg.action = raw.get("action", "none")
    if raw.get("learners") is not None:
        chosen = raw["learners"]
        if not isinstance(chosen, list) or not all(isinstance(n, str) for n in chosen):
            raise ConfigError(f"{key}.learners", "expected a list of learner names")
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise ConfigError(f"{key}.learners", f"unknown learner {unknown[0]!r}; learners: {', '.join(names)}")
        cfg.learners = chosen
    if raw.get("name") is not None:
        cfg.name = _str(raw["name"], f"{key}.name")
    if raw.get("features") is not None:
        cfg.features = _features(raw["features"], f"{key}.features")
    return cfg


def _features(raw: Any, key: str) -> FeatureDriftConfig:
    raw = _mapping(raw, key, required=True)
    _only(raw, _FEATURE_KEYS, key)
    cfg = FeatureDriftConfig()
    cfg.window = _int(raw.get("window", cfg.window), f"{key}.window", minimum=10)
    cfg.bins = _int(raw.get("bins", cfg.bins), f"{key}.bins", minimum=2)
    cfg.psi = _number(raw.get("psi", cfg.psi), f"{key}.psi", 0.0, None)
    cfg.ks_pvalue = _number(raw.get("ks_pvalue", cfg.ks_pvalue), f"{key}.ks_pvalue", 0.0, 1.0)
    return cfg


def _checkpoints(raw: Any) -> CheckpointConfig | None:
    if raw is None:
        return None
    raw = _mapping(raw, "checkpoints", required=True)
    _only(raw, ("every", "keep", "at"), "checkpoints")
    cfg = CheckpointConfig()
    if raw.get("every") is not None:
        cfg.every = _int(raw["every"], "checkpoints.every", minimum=1)
    cfg.keep = _int(raw.get("keep", cfg.keep), "checkpoints.keep", minimum=1)
    at = raw.get("at") or []
    if not isinstance(at, list):
        raise ConfigError("checkpoints.at", "expected a list of event positions")
    cfg.at = [_int(v, f"checkpoints.at[{i}]", minimum=0) for i, v in enumerate(at)]
    return cfg


def _guard(raw: Any) -> GuardConfig | None:
    if raw is None:
        return None
    raw = _mapping(raw, "guard", required=True)
    _only(raw, ("metric", "window", "drop"), "guard")
    cfg = GuardConfig()
    if raw.get("metric", cfg.metric) not in GUARD_METRICS:
        raise ConfigError("guard.metric", f"got {raw['metric']!r}; allowed: {', '.join(GUARD_METRICS)}")
    cfg.metric = raw.get("metric", cfg.metric)
    cfg.window = _int(raw.get("window", cfg.window), "guard.window", minimum=1)
    cfg.drop = _number(raw.get("drop", cfg.drop), "guard.drop", 0.0, None)
    return cfg


def _number(raw: Any, key: str, low: float, high: float | None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < low or (high is not None and raw > high):
        span = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ConfigError(key, f"expected a number {span}, got {raw!r}")
    return float(raw)
