"""The sweep file: a base experiment, the keys to vary (``grid:``, ``random:``, ``streams:``),
an objective and optional racing — expanded into the list of runs and validated before any runs.

Every expanded run is an ordinary experiment config, built with the same ``--set`` machinery
(``workbench.config.load`` with dotted-key overrides), so a run of a sweep is exactly the
``workbench run`` of its expanded config.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from workbench import config as config_mod
from workbench.errors import ConfigError
from workbench.evaluation.metrics import DEFAULTS
from workbench.learners.registry import resolve

_TOP_KEYS = ("name", "base", "grid", "random", "streams", "objective", "racing")
_RANDOM_KEYS = ("samples", "seed", "params")
_DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
MODES = ("max", "min")


@dataclass
class Objective:
    metric: str
    mode: str = "max"
    learner: str | None = None  # None: the first learner of each run


@dataclass
class Racing:
    """Successive halving over the stream: rungs of min_events, min_events·eta, ... events."""

    eta: int = 3
    min_events: int = 1000


@dataclass
class RunSpec:
    """One run of a sweep: its overrides of the base, the config they give, and its key."""

    index: int
    params: dict[str, Any]  # swept key -> value (and "stream" -> its label)
    config: dict[str, Any]  # the expanded experiment config, as plain data
    key: str  # identifies the run across re-runs of the sweep (resume)

    @property
    def label(self) -> str:
        return " ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in self.params.items()) or "base"


@dataclass
class SweepConfig:
    name: str
    objective: Objective
    runs: list[RunSpec]
    swept: list[str]  # the parameter names of the leaderboard, in file order
    racing: Racing | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def load(path_or_dict: str | Path | dict, overrides: list[str] | None = None) -> SweepConfig:
    """Read and validate a sweep file (or dict) and expand it into its runs. ``overrides`` are
    ``key=value`` strings over the sweep file; ``base.KEY=VALUE`` changes every run's base."""
    raw, where = _read(path_or_dict)
    fixed = []  # base.* overrides of a base named by path go to every run's --set list
    for item in overrides or []:
        if item.startswith("base.") and isinstance(raw.get("base"), str):
            fixed.append(item.removeprefix("base."))
        else:
            config_mod.apply_override(raw, item)
    _only(raw, _TOP_KEYS, "")
    if "base" not in raw:
        raise ConfigError("base", "required: the base experiment, a path to its YAML file or its keys as a mapping")
    base = raw["base"]
    if isinstance(base, str):
        base = Path(base) if Path(base).is_absolute() or where is None else where / base
    elif not isinstance(base, dict):
        raise ConfigError("base", f"expected a path to an experiment YAML file or a mapping, got {base!r}")
    default = Path(path_or_dict).stem if isinstance(path_or_dict, (str, Path)) else "sweep"
    name = raw.get("name", default)
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ConfigError("name", f"expected a non-empty name without '/', got {name!r}")
    grid = _grid(raw.get("grid") or {})
    samples = _random(raw.get("random"))
    streams = _streams(raw.get("streams"))
    swept = list(grid) + [k for k in (samples[0] if samples else {}) if k not in grid]
    swept += ["stream"] if streams else []
    runs: list[RunSpec] = []
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    for stream, point, sample in itertools.product(streams or [None], points, samples or [{}]):
        params = {**point, **sample}
        if stream is not None:
            params["stream"] = stream[0]
        run = _expand(base, fixed, name, len(runs), params, None if stream is None else stream[1])
        if run.key not in {r.key for r in runs}:  # a config twice (repeated values, equal draws) runs once
            runs.append(run)
    objective = _objective(raw.get("objective"), runs)
    racing = _racing(raw.get("racing"), runs)
    return SweepConfig(name=name, objective=objective, runs=runs, swept=swept, racing=racing, raw=raw)


def _read(path_or_dict: str | Path | dict) -> tuple[dict, Path | None]:
    if isinstance(path_or_dict, dict):
        return copy.deepcopy(path_or_dict), None
    path = Path(path_or_dict)
    if not path.exists():
        raise ConfigError("", f"sweep file {path} does not exist")
    try:
        raw = yaml.load(path.read_text(), Loader=config_mod.YamlLoader)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("", f"{path}: a sweep is a mapping of keys ({', '.join(_TOP_KEYS)})")
    return raw, path.resolve().parent


def _grid(raw: Any) -> dict[str, list]:
    if not isinstance(raw, dict):
        raise ConfigError("grid", "expected a mapping of dotted config keys to lists of values")
    grid = {}
    for key, values in raw.items():
        where = f"grid.{key}"
        if isinstance(values, dict) and set(values) == {"range"}:
            values = _range(values["range"], where)
        if not isinstance(values, list) or not values:
            raise ConfigError(where, f"expected a non-empty list of values or {{range: [start, stop]}}, got {values!r}")
        grid[str(key)] = values
    return grid


def _range(raw: Any, where: str) -> list[int]:
    """``{range: [1, 5]}`` is 1, 2, 3, 4, 5 (both ends included); a third item is the step."""
    ok = (
        isinstance(raw, list)
        and len(raw) in (2, 3)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in raw)
    )
    if not ok or (len(raw) == 3 and raw[2] <= 0) or raw[1] < raw[0]:
        raise ConfigError(f"{where}.range", f"expected [start, stop] or [start, stop, step] integers, got {raw!r}")
    start, stop, step = (*raw, 1) if len(raw) == 2 else raw
    return list(range(start, stop + 1, step))


def _random(raw: Any) -> list[dict[str, Any]]:
    """``samples`` draws of every key, from a seeded generator (the same draws on every re-run)."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ConfigError("random", "expected {samples: N, seed: S, params: {dotted.key: distribution}}")
    _only(raw, _RANDOM_KEYS, "random")
    n = raw.get("samples")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("random.samples", f"required: the number of random draws, at least 1, got {n!r}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError("random.seed", f"expected an integer, got {seed!r}")
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError("random.params", "required: a mapping of dotted config keys to distributions")
    rng = np.random.default_rng(seed)
    draws = {str(k): _draw(v, f"random.params.{k}", rng, n) for k, v in params.items()}
    return [{k: values[i] for k, values in draws.items()} for i in range(n)]


def _draw(raw: Any, where: str, rng: np.random.Generator, n: int) -> list:
    if isinstance(raw, list):
        raw = {"choice": raw}
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in _DISTRIBUTIONS:
        raise ConfigError(where, f"expected one of {{{': [..]}, {'.join(_DISTRIBUTIONS)}: [..]}}, got {raw!r}")
    kind, args = next(iter(raw.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}.choice", "expected a non-empty list of values")
        return [copy.deepcopy(args[i]) for i in rng.integers(0, len(args), n)]
    numbers = (
        isinstance(args, list)
        and len(args) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in args)
    )
    if not numbers or args[1] < args[0] or (kind == "loguniform" and args[0] <= 0):
        low = "low > 0, " if kind == "loguniform" else ""
        raise ConfigError(f"{where}.{kind}", f"expected [low, high] numbers with {low}low <= high, got {args!r}")
    if kind == "randint":  # both ends included, like {range: ...}
        return [int(v) for v in rng.integers(int(args[0]), int(args[1]) + 1, n)]
    if kind == "loguniform":
        return [float(v) for v in np.exp(rng.uniform(math.log(args[0]), math.log(args[1]), n))]
    return [float(v) for v in rng.uniform(args[0], args[1], n)]


def _streams(raw: Any) -> list[tuple[str, dict]]:
    """Each item is a source mapping (``{kind: ...}``) or ``{name: label, source: {...}}``."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise ConfigError("streams", "expected a list of sources, each {kind: ...} or {name: label, source: {...}}")
    out: list[tuple[str, dict]] = []
    for i, item in enumerate(raw):
        where = f"streams[{i}]"
        if isinstance(item, dict) and "source" in item:
            _only(item, ("name", "source"), where)
            label, source = item.get("name"), item["source"]
        else:
            label, source = None, item
        if not isinstance(source, dict) or "kind" not in source:
            raise ConfigError(where, f"expected a source mapping with a kind, got {source!r}")
        label = str(label or source.get("generator") or source.get("name") or Path(str(source.get("path"))).stem)
        if label in [o[0] for o in out]:
            label = f"{label}-{i}"
        out.append((label, source))
    return out


def _expand(
    base: Path | dict, fixed: list[str], sweep: str, index: int, params: dict[str, Any], source: dict | None
) -> RunSpec:
    overrides: list = [(key, copy.deepcopy(value)) for key, value in params.items() if key != "stream"]
    if source is not None:
        overrides.insert(0, ("source", copy.deepcopy(source)))
    overrides = [*fixed, *overrides]
    try:
        cfg = config_mod.load(base, overrides)
    except ConfigError as exc:
        where = " ".join(f"{k}={_short(v)}" for k, v in params.items())
        raise ConfigError(exc.key, f"{exc.args[0].removeprefix(exc.key + ': ')} (in run {index}: {where})") from None
    if cfg.source.kind == "python":
        raise ConfigError(
            "source.kind",
            "a sweep replays sources its workers can open themselves, not 'python' "
            "(an iterable lives in one process): use a file, dataset, synthetic or Kafka source",
        )
    _check_names(cfg, index)
    data = cfg.to_dict()
    spec = RunSpec(index=index, params=params, config=data, key="")
    spec.key = run_key(data)
    data["name"] = f"{sweep}/{spec.label}"
    return spec


def run_key(config: dict[str, Any]) -> str:
    """A digest of everything but the name: the same config is the same run on a re-run."""
    rest = {k: v for k, v in config.items() if k != "name"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_names(cfg: config_mod.Config, index: int) -> None:
    """Dotted model names resolve now, not after half the sweep has run."""
    names = [(f"learners[{i}].model", lc.model) for i, lc in enumerate(cfg.learners)]
    names += [
        (f"learners[{i}].preprocessing[{j}]", p.model)
        for i, lc in enumerate(cfg.learners)
        for j, p in enumerate(lc.preprocessing)
    ]
    names += [(f"drift[{i}].detector", d.detector) for i, d in enumerate(cfg.drift) if d.detector]
    for key, name in names:
        try:
            resolve(name, key)
        except ConfigError as exc:
            raise ConfigError(exc.key, f"{exc.args[0].removeprefix(exc.key + ': ')} (in run {index})") from None


def _objective(raw: Any, runs: list[RunSpec]) -> Objective:
    if not isinstance(raw, dict) or "metric" not in raw:
        raise ConfigError("objective", "required: {metric: accuracy, mode: max} (learner: defaults to the first)")
    _only(raw, ("metric", "mode", "learner"), "objective")
    obj = Objective(metric=raw["metric"], mode=raw.get("mode", "max"), learner=raw.get("learner"))
    if obj.mode not in MODES:
        raise ConfigError("objective.mode", f"got {obj.mode!r}; allowed: {', '.join(MODES)}")
    for run in runs:
        cfg = run.config
        learners = [lc["name"] for lc in cfg["learners"]] + [b["name"] for b in cfg["baselines"]]
        if obj.learner is not None and obj.learner not in learners:
            raise ConfigError(
                "objective.learner", f"run {run.index} has no learner {obj.learner!r}; it has {', '.join(learners)}"
            )
        known = set(cfg["metrics"] or {m for task_metrics in DEFAULTS.values() for m in task_metrics})
        if obj.metric not in known:
            raise ConfigError(
                "objective.metric",
                f"run {run.index} does not compute {obj.metric!r}; it computes "
                f"{', '.join(sorted(known))} (add it to the base's metrics)",
            )
    return obj


def _racing(raw: Any, runs: list[RunSpec]) -> Racing | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("racing", "expected {eta: 3, min_events: 1000}")
    _only(raw, ("eta", "min_events"), "racing")
    eta, first = raw.get("eta", 3), raw.get("min_events", 1000)
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ConfigError("racing.eta", f"expected an integer of at least 2 (keep the best 1/eta), got {eta!r}")
    if isinstance(first, bool) or not isinstance(first, int) or first < 1:
        raise ConfigError("racing.min_events", f"expected a positive number of events, got {first!r}")
    for run in runs:
        if run.config["source"].get("n") is None:
            raise ConfigError("racing", f"racing needs each stream's length: set source.n (run {run.index} has none)")
    return Racing(eta=eta, min_events=first)


def rungs(racing: Racing, n: int) -> list[int]:
    """The event budgets of the rungs for a stream of ``n`` events; the last is the whole stream."""
    out, budget = [], racing.min_events
    while budget < n:
        out.append(budget)
        budget *= racing.eta
    return [*out, n]


def _only(raw: dict, allowed: tuple[str, ...], where: str) -> None:
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"{where}.{k}" if where else str(k), f"unknown key; allowed here: {', '.join(allowed)}")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:21] + "..."
