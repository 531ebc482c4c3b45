"""The workbench scores exactly what River's progressive validation scores.

For each case the same model, stream, moment and delay go through
``river.evaluate.progressive_val_score`` / ``iter_progressive_val_score`` and through
``workbench.run``: the final metrics match, and so does every single prediction.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pandas as pd
import pytest
from river import compose, datasets, evaluate, forest, linear_model, metrics, multiclass, preprocessing, stream, tree

import workbench as wb


def river_predictions(data, model, metric, moment=None, delay=None) -> dict[int, object]:
    """River's prediction for every event, keyed by the event's position in the stream."""
    data = list(data)
    results = evaluate.iter_progressive_val_score(
        data, model, metric, moment=moment, delay=delay, step=1, yield_predictions=True
    )
    answers = (i for i, _, y in stream.simulate_qa(data, moment, delay, copy=False) if y is not None)
    return {i: r["Prediction"] for i, r in zip(answers, results, strict=False)}


def label(value) -> str | None:
    """How the store writes a label (Arrow's text cast)."""
    import pyarrow as pa

    return None if value is None else pa.array([value]).cast(pa.string())[0].as_py()


CASES = {
    "phishing-logreg-no-delay": dict(
        source={"kind": "dataset", "name": "Phishing"},
        learner={
            "model": "river.linear_model.LogisticRegression",
            "preprocessing": ["river.preprocessing.StandardScaler"],
        },
        river_model=lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        data=lambda: datasets.Phishing(),
        delay=0,
        river_delay=None,
        moment=None,
        metrics={"accuracy": metrics.Accuracy, "log_loss": metrics.LogLoss, "roc_auc": metrics.ROCAUC},
    ),
    "bananas-tree-delay-50-events": dict(
        source={"kind": "dataset", "name": "Bananas", "n": 2500},
        learner={"model": "river.tree.HoeffdingTreeClassifier", "params": {"grace_period": 50}},
        river_model=lambda: tree.HoeffdingTreeClassifier(grace_period=50),
        data=lambda: itertools.islice(datasets.Bananas(), 2500),
        delay=50,
        river_delay=50,
        moment=None,
        metrics={"accuracy": metrics.Accuracy, "log_loss": metrics.LogLoss, "f1": metrics.F1},
    ),
    # River's ARF sets itself up for the features of the first dict it is asked about: a
    # workbench that probed it with {} before the replay left it with trees that see nothing
    "phishing-arf-no-delay": dict(
        source={"kind": "dataset", "name": "Phishing", "n": 600},
        learner={"model": "river.forest.ARFClassifier", "params": {"n_models": 3, "seed": 1}},
        river_model=lambda: forest.ARFClassifier(n_models=3, seed=1),
        data=lambda: itertools.islice(datasets.Phishing(), 600),
        delay=0,
        river_delay=None,
        moment=None,
        metrics={"accuracy": metrics.Accuracy, "log_loss": metrics.LogLoss},
    ),
    "segments-multiclass-delay-300-events": dict(
        source={"kind": "dataset", "name": "ImageSegments"},
        learner={
            "model": "river.multiclass.OneVsRestClassifier",
            "params": {"classifier": {"model": "river.linear_model.LogisticRegression"}},
            "preprocessing": ["river.preprocessing.StandardScaler"],
        },
        river_model=lambda: (
            preprocessing.StandardScaler() | multiclass.OneVsRestClassifier(linear_model.LogisticRegression())
        ),
        data=lambda: datasets.ImageSegments(),
        delay=300,
        river_delay=300,
        moment=None,
        metrics={"accuracy": metrics.Accuracy, "log_loss": metrics.CrossEntropy, "macro_f1": metrics.MacroF1},
    ),
    "waterflow-regression-event-time-delay-6h": dict(
        source={"kind": "dataset", "name": "WaterFlow", "time": "Time"},
        learner={
            "model": "river.linear_model.LinearRegression",
            "preprocessing": ["river.preprocessing.StandardScaler"],
        },
        # River sees the clock as a field: drop it before the model, as the workbench does.
        river_model=lambda: compose.Discard("Time") | preprocessing.StandardScaler() | linear_model.LinearRegression(),
        data=lambda: datasets.WaterFlow(),
        delay="6h",
        river_delay=dt.timedelta(hours=6),
        moment="Time",
        metrics={"mae": metrics.MAE, "rmse": metrics.RMSE, "r2": metrics.R2},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_final_metrics_and_every_prediction_match_river(case, db):
    c = CASES[case]
    run = wb.run(
        {
            "name": case,
            "source": c["source"],
            "replay": {"label_delay": c["delay"]},
            "learners": [{"name": "m", **c["learner"]}],
            "metrics": list(c["metrics"]),
        },
        db=db,
        progress=False,
    )
    summary = run.summary().set_index("learner").loc["m"]
    for name, metric_cls in c["metrics"].items():
        expected = evaluate.progressive_val_score(
            c["data"](), c["river_model"](), metric_cls(), moment=c["moment"], delay=c["river_delay"]
        ).get()
        assert summary[name] == pytest.approx(expected, rel=1e-12, abs=1e-12), name

    first_metric = next(iter(c["metrics"].values()))
    expected = river_predictions(
        c["data"](), c["river_model"](), first_metric(), moment=c["moment"], delay=c["river_delay"]
    )
    steps = run.steps("m").set_index("seq")
    assert list(steps.index) == sorted(expected)
    if case.startswith("waterflow"):
        assert steps.y_pred.astype(float).tolist() == pytest.approx([expected[i] for i in steps.index], rel=1e-12)
        return
    river_labels = [
        max(p, key=p.get) if isinstance(p, dict) and p else (None if p in ({}, None) else p)
        for p in (expected[i] for i in steps.index)
    ]
    assert steps.y_pred.tolist() == [label(v) for v in river_labels]
    # An abstention (River returned {} or None) is a NULL prediction, never scored.
    abstained = steps.y_pred.isna()
    assert steps.correct[abstained].isna().all()
    truth = dict(zip(itertools.count(), (y for _, y in c["data"]())))
    assert steps.correct[~abstained].tolist() == [
        river_labels[k] == truth[i] for k, i in enumerate(steps.index) if not abstained.iloc[k]
    ]


def test_per_event_delay_field_matches_river(tmp_path, db):
    """label_delay naming a field: each event's own delay, in events (no clock)."""
    rng = random.Random(3)
    rows = [{**x, "delay": rng.randint(0, 40), "label": y} for x, y in datasets.Phishing()]
    path = tmp_path / "phishing.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    run = wb.run(
        {
            "name": "field-delay",
            "source": {"kind": "file", "path": str(path), "target": "label"},
            "replay": {"label_delay": "delay"},
            "learners": [
                {
                    "name": "m",
                    "model": "river.linear_model.LogisticRegression",
                    "preprocessing": ["river.preprocessing.StandardScaler"],
                }
            ],
            "metrics": ["accuracy"],
        },
        db=db,
        progress=False,
    )
    data = [({k: v for k, v in r.items() if k != "label"}, r["label"]) for r in pd.read_csv(path).to_dict("records")]
    model = lambda: compose.Discard("delay") | preprocessing.StandardScaler() | linear_model.LogisticRegression()  # noqa: E731
    expected = evaluate.progressive_val_score(data, model(), metrics.Accuracy(), delay="delay").get()
    assert run.summary().accuracy.iloc[0] == pytest.approx(expected, rel=1e-12)
    predictions = river_predictions(data, model(), metrics.Accuracy(), delay="delay")
    steps = run.steps("m").set_index("seq")
    assert steps.y_pred.tolist() == [label(predictions[i]) for i in steps.index]
