"""Batch baselines: a scikit-learn estimator retrained the way a team would run it nightly.

``BatchLearner`` speaks River's one-event API so that the runner treats it as any other arm:
``learn_one`` only buffers the labels the replay reveals (it never sees one earlier) and fits
when the schedule says so; ``predict_proba_one`` / ``predict_one`` abstain (``{}`` / ``None``)
until the first fit. Every fit is timed and kept in ``fits`` for the refits table.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter
from typing import Any

from sklearn.base import clone, is_classifier, is_regressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import make_pipeline

from workbench.config import BaselineConfig, ModelSpec
from workbench.errors import ConfigError
from workbench.learners.registry import SKLEARN_ESTIMATOR, SKLEARN_TRANSFORMER
from workbench.learners.river import instantiate


class BatchLearner:
    """Buffer labelled events; fit on the first ``fit_on_first``; refit every ``refit_every``
    on the last ``window`` (all of them when ``window`` is None)."""

    def __init__(
        self,
        estimator: Any,
        fit_on_first: int,
        refit_every: int | None = None,
        window: int | None = None,
    ):
        self.estimator = estimator
        self.fit_on_first = fit_on_first
        self.refit_every = refit_every
        self.window = window
        self.fits: list[tuple[int, float]] = []  # (n_samples, fit_ms) of each fit
        self._xs: deque = deque(maxlen=window)
        self._ys: deque = deque(maxlen=window)
        self._n = 0
        self._model: Any = None
        self._vectorizer: DictVectorizer | None = None

    def fits_next(self) -> bool:
        """Whether the next label completes a training set (so the model changes after it)."""
        after_first = self._n + 1 - self.fit_on_first
        return after_first == 0 or bool(
            self.refit_every and after_first > 0 and after_first % self.refit_every == 0
        )

    def learn_one(self, x: dict, y: Any) -> None:
        fit = self.fits_next()
        self._xs.append(x)
        self._ys.append(y)
        self._n += 1
        if fit:
            self._fit()

    def _fit(self) -> None:
        start = perf_counter()
        # DictVectorizer turns dicts into columns (one-hot for text values) in the order features
        # first appear (not sorted: River streams may name features by numbers).
        model = make_pipeline(DictVectorizer(sparse=False, sort=False), clone(self.estimator))
        model.fit(list(self._xs), list(self._ys))
        self._model, self._vectorizer = model[1:], model[0]
        self._classes = model.classes_.tolist() if hasattr(model, "classes_") else None
        self.fits.append((len(self._xs), (perf_counter() - start) * 1000))

    # scikit-learn costs ~0.3-1 ms a call whatever the rows, so the runner asks for many at once:
    # the model only changes at a fit, and every question asked before a fit is answered first.
    def predict_proba_many(self, xs: list[dict]) -> list[dict]:
        if self._model is None:
            return [{}] * len(xs)
        probas = self._model.predict_proba(self._vectorizer.transform(xs)).tolist()
        return [dict(zip(self._classes, p, strict=True)) for p in probas]

    def predict_many(self, xs: list[dict]) -> list:
        if self._model is None:
            return [None] * len(xs)
        return self._model.predict(self._vectorizer.transform(xs)).tolist()

    def predict_proba_one(self, x: dict) -> dict:
        if not hasattr(self.estimator, "predict_proba"):
            raise NotImplementedError  # the runner then scores labels only
        return self.predict_proba_many([x])[0]

    def predict_one(self, x: dict) -> Any:
        return self.predict_many([x])[0]


def build(config: BaselineConfig, task: str, key: str) -> BatchLearner:
    """The baseline's scikit-learn pipeline (preprocessing, then the model), checked against
    the stream's task."""
    steps = [
        instantiate(p, f"{key}.preprocessing[{i}]", SKLEARN_TRANSFORMER)
        for i, p in enumerate(config.preprocessing)
    ]
    model = instantiate(ModelSpec(config.model, config.params), key, SKLEARN_ESTIMATOR)
    if task == "regression" and not is_regressor(model):
        raise ConfigError(
            f"{key}.model",
            f"{config.model} is not a scikit-learn regressor, but the stream's target is numeric",
        )
    if task != "regression" and not is_classifier(model):
        raise ConfigError(
            f"{key}.model",
            f"{config.model} is not a scikit-learn classifier, "
            f"but the stream's task is {task} classification",
        )
    estimator = make_pipeline(*steps, model) if steps else model
    return BatchLearner(estimator, config.fit_on_first, config.refit_every, config.window)
