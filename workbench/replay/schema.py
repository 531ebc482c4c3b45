"""The feature schema of a stream, read from its first events: names, types, which may be missing.

A served model must refuse what it never saw in training, so the replay records what it saw.
The first events are peeked and chained back in front of the stream (in C, so the replay loop
pays nothing per event).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from workbench.events import Event

#: events read to infer the schema
SAMPLE = 200


def type_name(value: Any) -> str:
    """The JSON kind a value travels as: number, string, boolean, null; else 'any'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "any"


#: the target types River's two-class models and positive-class metrics misread (they take True,
#: or 1, as the positive class): text, or text in some events
TEXT_TYPES = ("string", "any")


def target_type(fields: list[dict[str, Any]] | None) -> str | None:
    """The target's type in a schema from ``infer`` (None without one)."""
    return next((f["type"] for f in fields or [] if f["role"] == "target"), None)


def _merge(seen: set[str]) -> str:
    kinds = seen - {"null"}
    if len(kinds) == 1:
        return kinds.pop()
    return "any" if kinds else "null"


def infer(
    events: Iterable[Event], sample: int = SAMPLE
) -> tuple[list[dict[str, Any]], Iterator[Event]]:
    """``(fields, events)``: one field per feature and one for the target, and the same events.

    A field is ``{"name", "role" ('feature' | 'target'), "type", "nullable", "name_type"}``; a
    feature absent or None in any sampled event is nullable. ``name_type`` is 'int' for a feature
    named by an integer (River's Friedman, Hyperplane...): JSON names are text, so a service must
    turn "3" back into 3.
    """
    it = iter(events)
    head = list(itertools.islice(it, sample))
    names: dict[Any, set[str]] = {}
    for ev in head:
        for name, value in ev.x.items():
            names.setdefault(name, set()).add(type_name(value))
    fields = []
    for name, seen in names.items():
        nullable = "null" in seen or any(name not in ev.x for ev in head)
        name_type = "int" if type(name) is int else "str"
        fields.append(
            {
                "name": str(name),
                "role": "feature",
                "type": _merge(seen),
                "nullable": nullable,
                "name_type": name_type,
            }
        )
    targets = {type_name(ev.y) for ev in head}
    fields.append(
        {
            "name": "",
            "role": "target",
            "type": _merge(targets),
            "nullable": "null" in targets,
            "name_type": "str",
        }
    )
    return fields, itertools.chain(head, it)
