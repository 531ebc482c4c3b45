"""Resolve dotted names like ``river.linear_model.LogisticRegression`` — from an allow-list only.

A config must never import arbitrary code: only names under ``river.``, ``sklearn.``,
``workbench.``, ``capymoa.`` (the optional MOA backend, workbench.learners.capymoa) and the
packages registered in the ``workbench.learners`` entry-point group resolve, and only to a
*class of the expected kind defined in one of those packages*:

- the walk goes through modules of the allowed packages only: an attribute that is a module
  from elsewhere (``workbench.sources.kafka_dump.glob.os``) ends it;
- private names (``sklearn.utils._testing``, ``workbench.__main__``, ``__globals__``) end it;
- the result must be a class (never a function such as ``workbench.cli.main``) defined in an
  allowed package, and a subclass of what the key needs (a River estimator, a drift
  detector, ...). It is checked before anything calls it.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from workbench.errors import ConfigError

BUILTIN_ROOTS = ("river", "sklearn", "workbench", "capymoa")
ENTRY_POINT_GROUP = "workbench.learners"


@dataclass(frozen=True)
class Kind:
    """What a key needs: a class that subclasses one of ``bases`` (given as dotted names of
    classes, imported when a name is checked) and has the methods ``needs``."""

    what: str
    bases: tuple[str, ...]
    needs: tuple[str, ...] = ()
    examples: str = ""


RIVER_ESTIMATOR = Kind("a River estimator", ("river.base.Estimator",), (), "river.linear_model.LogisticRegression")
RIVER_TRANSFORMER = Kind("a River transformer", ("river.base.Transformer",), (), "river.preprocessing.StandardScaler")
SKLEARN_ESTIMATOR = Kind(
    "a scikit-learn estimator", ("sklearn.base.BaseEstimator",), ("fit",), "sklearn.linear_model.LogisticRegression"
)
SKLEARN_TRANSFORMER = Kind(
    "a scikit-learn transformer",
    ("sklearn.base.BaseEstimator",),
    ("fit", "transform"),
    "sklearn.preprocessing.StandardScaler",
)
DRIFT_DETECTOR = Kind(
    "a River drift detector",
    ("river.base.DriftDetector", "river.base.BinaryDriftDetector"),
    (),
    "river.drift.ADWIN, river.drift.PageHinkley, river.drift.KSWIN, river.drift.binary.DDM",
)
# CapyMOA's learners backed by MOA (its scikit-learn and PyTorch wrappers have no MOA learner)
CAPYMOA_CLASSIFIER = Kind(
    "a CapyMOA classifier backed by MOA", ("capymoa.base.MOAClassifier",), (), "capymoa.classifier.HoeffdingTree"
)
CAPYMOA_REGRESSOR = Kind(
    "a CapyMOA regressor backed by MOA", ("capymoa.base.MOARegressor",), (), "capymoa.regressor.FIMTDD"
)
METRIC = Kind("a River metric", ("river.metrics.base.Metric",), (), "river.metrics.Accuracy")
#: a model's parameter that is itself a component (an optimizer, a loss, a nested estimator)
COMPONENT = Kind(
    "a River or scikit-learn component",
    ("river.base.Base", "sklearn.base.BaseEstimator"),
    (),
    "river.optim.SGD, river.tree.HoeffdingTreeClassifier",
)


def allowed_roots() -> dict[str, str]:
    """Top-level names that may be imported, mapped to the module they stand for.

    A plugin registers ``name = package.module`` in the ``workbench.learners`` group; configs
    then name its classes as ``name.ClassName`` (or by the module's own dotted path).
    """
    return dict(_roots(tuple(sys.path)))


@functools.lru_cache(maxsize=8)
def _roots(search_path: tuple[str, ...]) -> dict[str, str]:
    # Scanning every installed distribution's entry points costs ~8 ms; the answer only changes
    # when the import path does.
    roots = {root: root for root in BUILTIN_ROOTS}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module = ep.value.split(":")[0]
        roots.setdefault(ep.name, module)
        roots.setdefault(module.split(".")[0], module.split(".")[0])
    return roots


def _packages(roots: dict[str, str]) -> frozenset[str]:
    """The top-level packages whose own modules and classes a name may reach."""
    return frozenset(module.split(".")[0] for module in roots.values())


def _inside(module_name: str | None, packages: frozenset[str]) -> bool:
    return bool(module_name) and module_name.split(".")[0] in packages


def resolve(name: str, key: str, kind: Kind = COMPONENT) -> type:
    """The class a dotted ``name`` points to, checked to be ``kind``; or a ConfigError naming
    ``key`` (and nothing of what the name points to has run)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(key, f"expected a dotted name such as '{kind.examples.split(',')[0]}', got {name!r}")
    roots = allowed_roots()
    parts = name.strip().split(".")
    if parts[0] not in roots:
        allowed = ", ".join(f"'{r}.'" for r in sorted(roots))
        raise ConfigError(
            key,
            f"'{name}' is not allowed: names must start with {allowed} "
            f"(register other packages in the '{ENTRY_POINT_GROUP}' entry-point group)",
        )
    private = [p for p in parts if p.startswith("_") or not p.isidentifier()]
    if private:
        raise ConfigError(key, f"'{name}' is not allowed: {private[0]!r} is not a public name")
    packages = _packages(roots)
    obj: Any = importlib.import_module(roots[parts[0]])
    for i, part in enumerate(parts[1:], start=1):
        where = ".".join(parts[:i])
        if not isinstance(obj, ModuleType):
            raise ConfigError(key, f"'{name}' is not allowed: {where} is not a module, so '{part}' is not looked up")
        obj = _child(obj, part, key, name, where)
        if isinstance(obj, ModuleType) and not _inside(obj.__name__, packages):
            raise ConfigError(
                key,
                f"'{name}' is not allowed: {where}.{part} is the module '{obj.__name__}', "
                f"which is not part of {', '.join(sorted(packages))}",
            )
    return _checked(obj, name, key, kind, packages)


def _child(module: ModuleType, part: str, key: str, name: str, where: str) -> Any:
    """``module.part``: an attribute, or else a submodule of it."""
    if hasattr(module, part):
        return getattr(module, part)
    if hasattr(module, "__path__"):  # a package: the name may be a submodule not imported yet
        try:
            return importlib.import_module(f"{module.__name__}.{part}")
        except ModuleNotFoundError as exc:
            # Only swallow "this is not a module"; a module failing inside is a real error.
            if exc.name != f"{module.__name__}.{part}":
                raise
    public = [n for n in dir(module) if not n.startswith("_")]
    hint = difflib.get_close_matches(part, public, n=3)
    suggestion = f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
    raise ConfigError(key, f"'{name}' does not resolve: no '{part}' in {where}{suggestion}")


def _checked(obj: Any, name: str, key: str, kind: Kind, packages: frozenset[str]) -> type:
    try_instead = f"; for example {kind.examples}" if kind.examples else ""
    if not inspect.isclass(obj):
        what = "a module" if isinstance(obj, ModuleType) else f"a {type(obj).__name__}, not a class"
        raise ConfigError(key, f"'{name}' is {what}: expected {kind.what}{try_instead}")
    if not _inside(obj.__module__, packages):
        raise ConfigError(
            key,
            f"'{name}' is not allowed: it is {obj.__module__}.{obj.__qualname__}, defined outside "
            f"{', '.join(sorted(packages))}",
        )
    bases = tuple(_base(b) for b in kind.bases)
    missing = [m for m in kind.needs if not callable(getattr(obj, m, None))]
    if not issubclass(obj, tuple(b for b in bases if b is not None)) or missing:
        raise ConfigError(key, f"'{name}' is not {kind.what}{try_instead}")
    return obj


def _base(dotted: str) -> type | None:
    """A base class by dotted name (None when its package is not installed)."""
    module, _, cls = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError:
        return None
