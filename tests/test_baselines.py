"""Batch baselines: scikit-learn arms that see labels only when the replay reveals them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import agrawal_config
from river.datasets import synth
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import workbench as wb
from workbench.learners.batch import BatchLearner
from workbench.replay.labels import Delay
from workbench.runner import Runner, make_batch_arm

FITS: list[dict] = []
PULLED = [-1]  # the position of the last event the replay has read


class SpyClassifier(GaussianNB):
    """Remembers, at every fit, which events it was trained on and how far the replay was."""

    def fit(self, X, y, sample_weight=None):
        FITS.append({"ids": X[:, 0].astype(int).tolist(), "y": list(y), "pulled": PULLED[0]})
        return super().fit(X, y, sample_weight)


def _stream(n: int):
    for i, (x, y) in enumerate(itertools.islice(synth.SEA(seed=3), n)):
        PULLED[0] = i
        yield wb.events.Event({"id": i, **x}, y)  # first seen, so column 0 of X
    PULLED[0] = 10**9  # the stream is over: every label still due is revealed now


@pytest.mark.parametrize("delay", [1, 37, 400])
def test_a_refitting_baseline_never_sees_a_label_before_the_replay_reveals_it(delay):
    FITS.clear()
    learner = BatchLearner(SpyClassifier(), fit_on_first=100, refit_every=150, window=300)
    arm = make_batch_arm("nightly", learner, "binary", ["accuracy"])
    labels = {i: y for i, (_, y) in enumerate(itertools.islice(synth.SEA(seed=3), 1600))}
    batches = list(Runner([arm], Delay("events", delay), False).run(_stream(1600)))
    assert len(FITS) == 1 + (1600 - 100) // 150
    for fit in FITS:
        # a label given with a delay of d events is revealed when event i + d is read
        assert max(fit["ids"]) + delay <= fit["pulled"]
        assert fit["y"] == [labels[i] for i in fit["ids"]]
    assert any(max(f["ids"]) + delay == f["pulled"] for f in FITS)  # the bound is tight
    assert [len(f["ids"]) for f in FITS] == [100, 250] + [300] * (len(FITS) - 2)
    refits = [r for flushed in batches for b in flushed for r in b.refits]
    assert [n for _, n, _ in refits] == [len(f["ids"]) for f in FITS]
    assert all(ms > 0 for _, _, ms in refits)


def test_baselines_abstain_before_their_first_fit_and_predict_as_sklearn_does(db):
    config = agrawal_config(
        3000,
        baselines=[
            {
                "name": "static",
                "model": "sklearn.linear_model.LogisticRegression",
                "preprocessing": ["sklearn.preprocessing.StandardScaler"],
                "fit_on_first": 500,
            },
            {
                "name": "nightly",
                "model": "sklearn.linear_model.LogisticRegression",
                "preprocessing": ["sklearn.preprocessing.StandardScaler"],
                "fit_on_first": 500,
                "refit_every": 1000,
                "window": 800,
            },
        ],
    )
    run = wb.run(config, db=db, progress=False)
    store = wb.connect(db)
    kinds = store.learners(run.id).set_index("learner").kind
    assert kinds.to_dict() == {
        "lr": "online",
        "tree": "online",
        "static": "batch",
        "nightly": "batch",
    }
    static = store.steps(run.id, "static")
    assert (
        static[static.seq < 500].y_pred.isna().all()
        and (static[static.seq < 500].model_version == 0).all()
    )
    assert (
        static[static.seq >= 500].y_pred.notna().all()
        and (static[static.seq >= 500].model_version == 1).all()
    )
    assert store.summary(run.id).set_index("learner").labelled["static"] == 3000

    # the same pipeline fitted by hand on the same 500 events predicts the same probabilities
    from workbench.config import load
    from workbench.sources import open_source

    data = [(ev.x, ev.y) for ev in open_source(load(config).source, 7, None).events(lambda d: None)]
    vec = DictVectorizer(sparse=False, sort=False)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        vec.fit_transform([x for x, _ in data[:500]]), [y for _, y in data[:500]]
    )
    proba = model.predict_proba(vec.transform([x for x, _ in data[500:]]))
    expected = proba[np.arange(len(proba)), proba.argmax(axis=1)]
    np.testing.assert_allclose(static[static.seq >= 500].y_proba.to_numpy(), expected, rtol=1e-12)

    refits = store.refits(run.id)
    nightly = refits[refits.learner == "nightly"]
    assert nightly.seq.tolist() == [499, 1499, 2499] and nightly.n_samples.tolist() == [
        500,
        800,
        800,
    ]
    assert (refits.fit_ms > 0).all()
    versions = store.steps(run.id, "nightly").groupby("model_version").seq.min().tolist()
    assert versions == [0, 500, 1500, 2500]


@pytest.mark.parametrize(
    "baseline, key, words",
    [
        (
            {"name": "b", "model": "river.linear_model.LogisticRegression"},
            "baselines[0].model",
            "scikit-learn",
        ),
        (
            {"name": "b", "model": "sklearn.linear_model.LinearRegression"},
            "baselines[0].model",
            "not a scikit-learn classifier",
        ),
        (
            {"name": "b", "model": "sklearn.linear_model.LogisticRegression", "window": 10},
            "baselines[0].window",
            "refit_every",
        ),
        ({"name": "lr", "model": "sklearn.linear_model.LogisticRegression"}, "baselines", "unique"),
        (
            {"name": "b", "model": "sklearn.linear_model.LogisticRegression", "fit_on_first": 0},
            "baselines[0].fit_on_first",
            "at least 1",
        ),
    ],
)
def test_bad_baseline_config_names_the_key(db, baseline, key, words):
    with pytest.raises(wb.ConfigError) as err:
        wb.run(agrawal_config(100, baselines=[baseline]), db=db, progress=False)
    assert err.value.key == key and words in str(err.value)
