"""Mini-batch frames handed to River already wrapped in narwhals, for the River code known to take them.

River's ``*_many`` methods wrap their pandas input with narwhals on entry
(``river.utils.dataframe.into_frame``), and narwhals hands back a frame that is already a
narwhals frame as it is. Wrapping a pandas frame costs ~150 µs (its type's attributes looked up
statically, on every call), and a batch was wrapped once for the predict and again for the learn
(three times through a scaler: its learn, and its transform for the predict and for the learn).
The runner wraps each batch once and hands that frame to all of them; and, for a learner whose
learn_many reads y only through ``into_series`` (a GLM's), the labels' Series likewise (another
~150 µs a batch).

Only for the methods listed here, each of which reads its frame through ``into_frame`` first
and so sees the same numpy matrix (the results are the same to the bit: tests/test_fast_paths.py).
Any other model (a River model written against pandas, a model of the user's own) gets its
pandas frame as before.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

try:  # River with narwhals at its boundary
    import narwhals.stable.v2 as nw
    from river import compose, linear_model, preprocessing
    from river.linear_model.base import GLM
    from river.utils import dataframe as _river_dataframe  # noqa: F401 — only a River that has it qualifies
except ImportError:  # pragma: no cover — an older River: pandas frames throughout
    nw = None
    _TAKE_FRAMES: set = set()
else:
    #: methods that read their X through into_frame before anything else
    _TAKE_FRAMES = {
        GLM.learn_many,
        linear_model.LogisticRegression.predict_proba_many,
        linear_model.LogisticRegression.predict_many,
        linear_model.LinearRegression.predict_many,
        preprocessing.StandardScaler.learn_many,
        preprocessing.StandardScaler.transform_many,
    }


def _takes(model: Any, *methods: str) -> bool:
    return all(getattr(type(model), name, None) in _TAKE_FRAMES for name in methods)


def takes_narwhals(model: Any, predict_many: str) -> bool:
    """Whether ``model.<predict_many>(X)`` and ``model.learn_many(X, y)`` may be given a
    narwhals frame: the model itself takes it in both, or it is a pipeline whose first step (the
    only one that sees X: the others see what it makes of X) is an unsupervised transformer
    that takes it in its learn_many and transform_many."""
    if nw is None:
        return False
    if isinstance(model, compose.Pipeline):
        steps = list(model.steps.values())
        if len(steps) == 1:
            return takes_narwhals(steps[0], predict_many)
        first = steps[0]
        return not getattr(first, "_supervised", True) and _takes(first, "learn_many", "transform_many")
    return _takes(model, predict_many, "learn_many")


def takes_narwhals_labels(model: Any) -> bool:
    """Whether ``model.learn_many(X, y)`` may be given ``y`` as a narwhals Series: the model's
    learn_many is a GLM's (which reads y through ``into_series`` only), or it is a pipeline of
    unsupervised steps (which never see y) ending in one."""
    if nw is None:
        return False
    if isinstance(model, compose.Pipeline):
        *firsts, last = model.steps.values()
        return not any(getattr(step, "_supervised", True) for step in firsts) and takes_narwhals_labels(last)
    return getattr(type(model), "learn_many", None) is GLM.learn_many


def wrap(X: pd.DataFrame) -> Any:
    """The frame as River's into_frame wraps it."""
    return nw.from_native(X, eager_only=True)


def wrap_series(y: pd.Series) -> Any:
    """The labels as River's into_series wraps them."""
    return nw.from_native(y, series_only=True)
