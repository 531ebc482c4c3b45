"""Preprocessing from the stream's feature schema: ``preprocessing: auto``, and the check that a
numeric-only step never meets a text feature.

``fields`` is the feature schema the replay records (replay/schema.py), read from the stream's
first events before the run: one ``{"name", "role", "type", "nullable", "name_type"}`` per
feature. ``auto`` composes River's standard pipeline: numbers (and booleans) scaled with
``StandardScaler``, text one-hot encoded, side by side::

    Select(*numbers) | StandardScaler()  +  Select(*texts) | OneHotEncoder()
"""

from __future__ import annotations

from typing import Any

from river import base, compose, preprocessing

from workbench.errors import ConfigError

#: River transformers that do arithmetic on every feature they see: text breaks them
NUMERIC_ONLY = (
    preprocessing.StandardScaler,
    preprocessing.AdaptiveStandardScaler,
    preprocessing.MinMaxScaler,
    preprocessing.MaxAbsScaler,
    preprocessing.RobustScaler,
    preprocessing.Normalizer,
    preprocessing.Binarizer,
)


def _name(field: dict[str, Any]) -> Any:
    return int(field["name"]) if field["name_type"] == "int" else field["name"]


def _features(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in fields if f["role"] == "feature"]


def auto(fields: list[dict[str, Any]], key: str) -> base.Transformer:
    """River's standard preprocessing for these features (features seen only as null in the
    first events are left out: nothing says yet how to encode them)."""
    features = _features(fields)
    mixed = [f["name"] for f in features if f["type"] == "any"]
    if mixed:
        raise ConfigError(
            key,
            f"feature {mixed[0]!r} has values of several types in the stream's first events, so "
            "auto cannot tell whether to scale or encode it: list the steps yourself, e.g. "
            f"compose.Select / compose.Discard for {mixed[0]!r}",
        )
    numbers = [_name(f) for f in features if f["type"] in ("number", "boolean")]
    texts = [_name(f) for f in features if f["type"] == "string"]
    parts = [
        compose.Select(*names) | step()
        for names, step in ((numbers, preprocessing.StandardScaler), (texts, preprocessing.OneHotEncoder))
        if names
    ]
    if not parts:
        raise ConfigError(key, "auto found no number or text feature in the stream's first events")
    return parts[0] if len(parts) == 1 else compose.TransformerUnion(*parts)


def check(steps: list[base.Transformer], names: list[str], fields: list[dict[str, Any]], key: str) -> None:
    """Refuse a numeric-only first step (it sees every raw feature) when a feature is text."""
    if not steps or not isinstance(steps[0], NUMERIC_ONLY):
        return
    text = next((f for f in _features(fields) if f["type"] in ("string", "any")), None)
    if text is not None:
        kind = "text" if text["type"] == "string" else "text in some events"
        raise ConfigError(
            f"{key}[0]",
            f"feature {text['name']!r} is {kind}, and {names[0]} takes numbers only; use "
            "preprocessing: auto (numbers scaled, text one-hot encoded), or encode it first "
            "(e.g. river.preprocessing.OneHotEncoder on compose.Select of the text features)",
        )
