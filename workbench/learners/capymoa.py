"""CapyMOA learners (MOA, in Java): ``model: capymoa.classifier.HoeffdingTree`` in a config.

A learner speaks River's one-event API, so the runner, supervision, export and the service treat
it as any other arm, but it talks to MOA directly: each event becomes one Java row of doubles
in the order of the replay's feature schema (picked out of the event in C), wrapped once in a
MOA instance that serves both the prediction and the update. CapyMOA's own per-event Python
objects cost more than the tree itself (HoeffdingTree's gain over River vanishes through them).

Choices, where MOA and the workbench differ:
- features are numbers (booleans count as 0/1); a missing or None value is MOA's missing value
  (NaN). A text feature is refused with the feature's name. Features the schema did not list
  (first seen after the replay's schema sample) are not given to the model.
- MOA indexes classes; labels get indices in the order they first arrive (MOA's learners grow
  with the classes they see, so the header's class list needs no up-front vocabulary).
- the state pickles through Java serialization (the MOA learner and its header in one stream),
  so checkpoints, rollback and bundles round-trip exactly: a restored learner predicts exactly
  what it predicted when it was saved.

The JVM starts (~4 s) the first time a CapyMOA learner is built or unpickled in a process.
"""

from __future__ import annotations

import inspect
import math
from operator import itemgetter
from typing import Any

from workbench.config import LearnerConfig
from workbench.errors import ConfigError
from workbench.learners.registry import CAPYMOA_CLASSIFIER, CAPYMOA_REGRESSOR, resolve

EXTRA = "pip install 'online-learning-workbench[capymoa]' (and a Java runtime, e.g. Debian's default-jre-headless)"
_NAN = math.nan


def _java():
    """The Java classes this module uses (importing capymoa starts the JVM)."""
    try:
        import capymoa  # noqa: F401 — starts the JVM and puts MOA on its class path
    except ImportError as exc:
        raise ConfigError("learners", f"CapyMOA learners need the capymoa extra: {EXTRA} ({exc})") from None
    from com.yahoo.labs.samoa.instances import DenseInstance
    from jpype import JArray, JDouble

    return DenseInstance, JArray(JDouble)


class Features:
    """The feature names a learner reads, in the replay's schema order; shared by a learner and
    its clones (the schema is the stream's, not the model's)."""

    def __init__(self, names: list | None = None):
        self.names = names

    def set(self, fields: list[dict[str, Any]], learner: str) -> None:
        """Take the replay's schema (workbench.replay.schema.infer) if none was taken yet."""
        if self.names is not None:
            return
        features = [f for f in fields if f["role"] == "feature"]
        text = [f["name"] for f in features if f["type"] not in ("number", "boolean", "null")]
        if text:
            raise ConfigError(
                f"learners.{learner}",
                f"CapyMOA learners take numeric features; {', '.join(map(repr, text))} "
                "carry text or mixed values in the first events of the stream",
            )
        self.names = [int(f["name"]) if f.get("name_type") == "int" else f["name"] for f in features]


class CapyMOALearner:
    """A CapyMOA classifier or regressor, by class, with its constructor params (no schema)."""

    def __init__(self, model: type, params: dict[str, Any], name: str = "", features: Features | None = None):
        self.model = model
        self.params = params
        self.name = name
        self.features = features or Features()
        self._learner = None  # the MOA learner (Java), built with the schema

    # -- River's API -------------------------------------------------------------------------
    def clone(self) -> CapyMOALearner:
        """An untrained twin reading the same features."""
        return type(self)(self.model, self.params, self.name, self.features)

    def use_schema(self, fields: list[dict[str, Any]]) -> None:
        self.features.set(fields, self.name)

    def learn_one(self, x: dict, y: Any) -> None:
        inst = self._last[1] if x is self._last[0] else self._instance(x)
        inst.setClassValue(self._target(y))
        self._learner.trainOnInstance(inst)

    # -- the MOA side ------------------------------------------------------------------------
    _last: tuple = (None, None)

    def _instance(self, x: dict):
        """The MOA instance of ``x`` (class missing); the last one is kept for ``learn_one``."""
        if self._learner is None:
            self._build(x)
        try:
            row = self._JRow([*self._pick(x), _NAN])
        except (KeyError, TypeError):  # a missing or None feature: MOA's missing value
            row = self._JRow([_number(x.get(name)) for name in self.features.names] + [_NAN])
        inst = self._Instance(1.0, row)
        inst.setDataset(self._header)
        self._last = (x, inst)
        return inst

    def _build(self, x: dict) -> None:
        if self.features.names is None:
            if not x:
                raise ValueError(f"{self.model.__name__} has no features to learn from yet")
            self.features.names = list(x)  # outside a replay: the first event's features
        from capymoa.stream import Schema

        self._Instance, self._JRow = _java()
        names = self.features.names
        self._pick = _picker(names)
        target = "__target__"
        categories = {target: ["0", "1"]} if self._classifier else {}
        schema = Schema.from_custom([*map(str, names), target], target, categories, self.name or "workbench")
        self._header = schema.get_moa_header()
        self._learner = self.model(schema=schema, **self.params).moa_learner
        self._init_state()

    def __reduce__(self):
        if self._learner is None:
            return (type(self), (self.model, self.params, self.name, self.features))
        from jpype import JArray, JClass, JObject

        # JPype's encoder: Java serialization that finds MOA's classes on JPype's class path
        pair = JArray(JObject)([self._learner, self._header])
        java_state = bytes(JClass("org.jpype.pickle.Encoder")().pack(pair))
        state = (self.model, self.params, self.name, self.features.names, java_state, self._state())
        return (_restore, (type(self), *state))


def _restore(cls, model, params, name, names, java_state: bytes, state):
    from jpype import JClass

    learner = cls(model, params, name, Features(names))
    learner._Instance, learner._JRow = _java()
    learner._learner, learner._header = JClass("org.jpype.pickle.Decoder")().unpack(java_state)
    learner._pick = _picker(names)
    learner._set_state(state)
    return learner


def _picker(names: list):
    """The values of ``names`` in a dict, as a tuple, picked in C."""
    return itemgetter(*names) if len(names) > 1 else (lambda x: (x[names[0]],))


def _number(value: Any) -> float:
    if value is None:
        return _NAN
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"CapyMOA learners take numeric features, got {value!r}") from None


class CapyMOAClassifier(CapyMOALearner):
    """Probabilities are MOA's votes, normalised; no votes (an untrained model) abstain."""

    _classifier = True

    def _init_state(self) -> None:
        self.classes: list = []  # the label of each MOA class index
        self._index: dict = {}

    def _state(self):
        return self.classes

    def _set_state(self, classes) -> None:
        self.classes, self._index = list(classes), {c: i for i, c in enumerate(classes)}

    def _target(self, y: Any) -> float:
        index = self._index.get(y)
        if index is None:
            index = self._index[y] = len(self.classes)
            self.classes.append(y)
        return index

    def predict_proba_one(self, x: dict) -> dict:
        if self._learner is None and not x:  # asked before any event (workbench.learners.river.gives_proba)
            return {}
        inst = self._instance(x)  # builds the learner at the first event
        votes = memoryview(self._learner.getVotesForInstance(inst)).tolist()
        total = sum(votes)
        if not total > 0 or not math.isfinite(total):
            return {}
        # MOA sizes the votes by the classes its model has seen, at most all the labels
        return {c: v / total for c, v in zip(self.classes, votes, strict=False)}

    def predict_one(self, x: dict) -> Any:
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.get) if proba else None


class CapyMOARegressor(CapyMOALearner):
    """Predictions are MOA's first vote; an untrained model predicts what MOA says (often 0)."""

    _classifier = False

    def _init_state(self) -> None:
        pass

    def _state(self):
        return None

    def _set_state(self, state) -> None:
        pass

    @staticmethod
    def _target(y: Any) -> float:
        return float(y)

    def predict_one(self, x: dict) -> float | None:
        inst = self._instance(x)
        votes = self._learner.getVotesForInstance(inst)
        return float(votes[0]) if len(votes) else None


def build(config: LearnerConfig, task: str, key: str, fields: list[dict[str, Any]] | None = None) -> CapyMOALearner:
    """The learner named by ``config.model`` (a CapyMOA class), checked against the task; it
    reads the features of the schema ``fields`` when known, else the replay's (``use_schema``)."""
    if config.preprocessing:
        raise ConfigError(
            f"{key}.preprocessing", "CapyMOA learners take the features as they come: remove the preprocessing"
        )
    _java()
    kind = CAPYMOA_REGRESSOR if task == "regression" else CAPYMOA_CLASSIFIER
    cls = resolve(config.model, f"{key}.model", kind)  # checked before anything is called
    allowed = [p for p in inspect.signature(cls).parameters if p not in ("self", "schema", "CLI")]
    for name in config.params:
        if name not in allowed:
            raise ConfigError(
                f"{key}.params.{name}", f"not a parameter of {config.model}; allowed: {', '.join(allowed)}"
            )
    wrapper = CapyMOARegressor if task == "regression" else CapyMOAClassifier
    learner = wrapper(cls, dict(config.params), config.name)
    try:  # the params are checked now, on a one-feature schema, not when the replay starts
        wrapper(cls, learner.params, config.name, Features(["x"]))._build({})
    except Exception as exc:
        raise ConfigError(f"{key}.params", f"{config.model}(**{config.params}) failed: {exc}") from None
    if fields is not None:
        learner.use_schema(fields)
    return learner
