"""Resolve dotted names like ``river.linear_model.LogisticRegression`` — from an allow-list only.

A config must never import arbitrary code: only names under ``river.``, ``sklearn.``,
``workbench.``, ``capymoa.`` (the optional MOA backend; its learners are kind-checked in
workbench.learners.capymoa) and the packages registered in the ``workbench.learners`` entry-point group
resolve.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import sys
from importlib.metadata import entry_points
from typing import Any

from workbench.errors import ConfigError

BUILTIN_ROOTS = ("river", "sklearn", "workbench", "capymoa")
ENTRY_POINT_GROUP = "workbench.learners"


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


def resolve(name: str, key: str) -> Any:
    """Return the object a dotted ``name`` points to, or raise a ConfigError naming ``key``."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(key, f"expected a dotted name such as 'river.linear_model.LogisticRegression', got {name!r}")
    roots = allowed_roots()
    parts = name.strip().split(".")
    if parts[0] not in roots:
        allowed = ", ".join(f"'{r}.'" for r in sorted(roots))
        raise ConfigError(
            key,
            f"'{name}' is not allowed: names must start with {allowed} "
            f"(register other packages in the '{ENTRY_POINT_GROUP}' entry-point group)",
        )
    base = roots[parts[0]].split(".") + parts[1:]
    module, rest = _import_longest_prefix(base, key, name)
    obj: Any = module
    for i, attr in enumerate(rest):
        if not hasattr(obj, attr):
            where = ".".join(base[: len(base) - len(rest) + i])
            public = [n for n in dir(obj) if not n.startswith("_")]
            hint = difflib.get_close_matches(attr, public, n=3)
            suggestion = f"; did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
            raise ConfigError(key, f"'{name}' does not resolve: no '{attr}' in {where}{suggestion}")
        obj = getattr(obj, attr)
    return obj


def _import_longest_prefix(parts: list[str], key: str, name: str):
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            return importlib.import_module(module_name), parts[cut:]
        except ModuleNotFoundError as exc:
            # Only swallow "this prefix is not a module"; a module failing inside is a real error.
            if exc.name is None or not module_name.startswith(exc.name):
                raise
    raise ConfigError(key, f"'{name}' does not resolve: no module '{parts[0]}' is installed")
