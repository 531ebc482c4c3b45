"""Online learners: any River classifier or regressor by dotted name, with preprocessing."""

from __future__ import annotations

import inspect
from typing import Any

from river import base, compose

from workbench.config import AUTO, LearnerConfig, ModelSpec
from workbench.errors import ConfigError
from workbench.learners import preprocessing
from workbench.learners.registry import COMPONENT, RIVER_ESTIMATOR, RIVER_TRANSFORMER, Kind, resolve
from workbench.replay.schema import TEXT_TYPES, target_type


def instantiate(spec: ModelSpec, key: str, kind: Kind = COMPONENT, name_key: str | None = None) -> Any:
    """Build ``spec.model(**spec.params)``, the class checked to be ``kind`` before it is
    called; nested specs in params (optimizers, losses, inner models) are built first.
    Errors name ``{key}.model`` (or ``name_key``) and ``{key}.params``."""
    cls = resolve(spec.model, name_key or f"{key}.model", kind)
    params = {
        name: instantiate(value, f"{key}.params.{name}", COMPONENT) if isinstance(value, ModelSpec) else value
        for name, value in spec.params.items()
    }
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
        for name in params:
            if name not in signature.parameters and not takes_any:
                allowed = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
                raise ConfigError(
                    f"{key}.params.{name}", f"not a parameter of {spec.model}; allowed: {', '.join(allowed) or 'none'}"
                )
    try:
        return cls(**params)
    except Exception as exc:
        raise ConfigError(f"{key}.params", f"{spec.model}(**{params}) failed: {exc}") from None


def build(config: LearnerConfig, task: str, key: str, fields: list[dict[str, Any]] | None = None) -> base.Estimator:
    """The learner's River pipeline, checked against the stream's task and (when known) the
    feature schema ``fields`` of its first events, which ``preprocessing: auto`` is made from.
    A ``capymoa.`` model is built by workbench.learners.capymoa."""
    if config.model.strip().startswith("capymoa."):
        from workbench.learners import capymoa

        return capymoa.build(config, task, key, fields)
    model = instantiate(ModelSpec(config.model, config.params), key, RIVER_ESTIMATOR)
    if config.preprocessing == AUTO:
        if fields is None:
            raise ConfigError(
                f"{key}.preprocessing",
                "auto is made from the stream's first events, which are not known before a live "
                "topic's run: list the steps, e.g. [river.preprocessing.StandardScaler]",
            )
        steps = [preprocessing.auto(fields, f"{key}.preprocessing")]
    else:
        steps = [
            instantiate(p, f"{key}.preprocessing[{i}]", RIVER_TRANSFORMER) for i, p in enumerate(config.preprocessing)
        ]
        if fields is not None:
            preprocessing.check(steps, [p.model for p in config.preprocessing], fields, f"{key}.preprocessing")
    pipeline = compose.Pipeline(*steps, model) if steps else model
    check_task(pipeline, config.model, task, f"{key}.model", fields)
    return pipeline


def gives_proba(model: base.Estimator) -> bool:
    """Whether a model gives class probabilities (River's base classifier raises otherwise)."""
    # Asked of an untrained twin: an untrained model may set itself up on the first question
    # (River's ARF builds its trees for the features of the dict it is shown, here none).
    probe = model.clone() if isinstance(model, base.Estimator) else model
    try:
        probe.predict_proba_one({})
    except (AttributeError, NotImplementedError):  # a regressor (a pipeline has the method anyway)
        return False
    except Exception:  # an untrained model may fail on an empty dict for other reasons
        return True
    return True


def _final(model: base.Estimator) -> base.Estimator:
    return model[-1] if isinstance(model, compose.Pipeline) else model


def check_task(
    model: base.Estimator, name: str, task: str, key: str, fields: list[dict[str, Any]] | None = None
) -> None:
    """Refuse a model the stream's task (and, when the schema ``fields`` is known, its labels)
    would break: River's two-class models learn True/False (or 1/0) and fail on, or silently
    misread, text labels such as 'yes'/'no'."""
    final = _final(model)
    if task == "regression":
        if not isinstance(final, base.Regressor):
            raise ConfigError(
                key, f"{name} is not a River regressor, but the stream's target is numeric (task: regression)"
            )
        return
    if not isinstance(final, base.Classifier):
        raise ConfigError(key, f"{name} is not a River classifier, but the stream's task is {task} classification")
    if task == "multiclass" and not getattr(final, "_multiclass", False):
        raise ConfigError(
            key,
            f"{name} handles two classes only, but the stream has more; wrap it, e.g. "
            "model: river.multiclass.OneVsRestClassifier with params: {classifier: {model: " + name + "}}",
        )
    labels = target_type(fields)
    if not getattr(final, "_multiclass", False) and labels in TEXT_TYPES:
        labels = "text" if labels == "string" else "text in some events"
        raise ConfigError(
            key,
            f"{name} learns two classes as True/False (or 1/0), but the stream's labels are {labels}; "
            "give the target as booleans, or wrap the model: model: river.multiclass.OneVsRestClassifier "
            "with params: {classifier: {model: " + name + "}}",
        )
