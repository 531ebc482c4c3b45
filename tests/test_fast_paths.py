"""The fast paths log exactly what the one-at-a-time loop logs, and score as River does.

- Blocks: without label delays the runner predicts and learns each event in turn, then scores,
  updates metrics and logs the block at once (runner.BLOCK). Every step and every metric equal
  those of the loop that handles one event at a time (block=1), bit for bit.
- Mini-batches (replay.batch_size): predict_proba_many for the batch, then learn_many; the
  logged steps and the metrics equal River's own metrics fed the very same predictions, and
  batch_size 1 is the one-at-a-time replay.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest
from conftest import minibatch_config
from river import base, compose, datasets, linear_model, metrics, optim, preprocessing, tree
from river.datasets import synth

import workbench as wb
from workbench.columns import frame, series
from workbench.errors import ConfigError
from workbench.evaluation.metrics import names_for
from workbench.events import make_event
from workbench.learners.narwhals_boundary import takes_narwhals_labels
from workbench.replay.labels import Delay
from workbench.runner import Runner, make_arm
from workbench.store.schema import connect
from workbench.store.writer import Labels, steps_table
from workbench.versioning import restore

TIMINGS = ["predict_ns", "learn_ns"]


class Parity(base.Classifier):
    """Predicts labels only (no probabilities): the parity of the previous label, or None."""

    def __init__(self):
        self.last = None

    def learn_one(self, x, y):
        self.last = y

    def predict_one(self, x):
        return self.last


def replay(model, rows, task, metric_names, block):
    arm = make_arm("m", model, task, names_for(metric_names, task))
    runner = Runner([arm], Delay("none"), False, block=block)
    events = (make_event((x, y, None, None, i, None)) for i, (x, y) in enumerate(rows))
    batches = [b[0] for b in runner.run(events)]
    tables = [steps_table(b) for b in batches if len(b)]
    steps = pd.concat([t.to_pandas() for t in tables], ignore_index=True).drop(columns=TIMINGS)
    return steps, arm.metric_values(), runner.n_events


def with_gaps(rows):
    """Every 7th event misses a feature and every 11th has its features in another order."""
    out = []
    for i, (x, y) in enumerate(rows):
        x = dict(x)
        if i % 7 == 3:
            x.pop(next(iter(x)))
        if i % 11 == 5:
            x = dict(reversed(list(x.items())))
        out.append((x, y))
    return out


CASES = {
    "binary-proba": (
        lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        lambda: list(datasets.Phishing()),
        "binary",
        ["accuracy", "log_loss", "f1", "roc_auc", "macro_f1", "balanced_accuracy"],
    ),
    # labels 0/1 against the classes False/True, some probabilities saturated at 0 or 1: the
    # log loss of those blocks is River's clamp, not the loss column
    "int-labels-saturated": (
        lambda: linear_model.LogisticRegression(optimizer=optim.SGD(5.0)),
        lambda: [(x, int(y)) for x, y in datasets.Phishing()],
        "binary",
        ["accuracy", "log_loss", "f1", "macro_f1"],
    ),
    "abstaining-tree": (  # {} until it has learned: rows the matrix path hands to _record
        lambda: tree.HoeffdingTreeClassifier(grace_period=30),
        lambda: with_gaps(itertools.islice(datasets.Bananas(), 1500)),
        "binary",
        ["accuracy", "log_loss"],
    ),
    "multiclass": (
        lambda: preprocessing.StandardScaler() | tree.HoeffdingTreeClassifier(grace_period=50),
        lambda: list(itertools.islice(datasets.ImageSegments(), 1200)),
        "multiclass",
        ["accuracy", "log_loss", "macro_f1", "cohen_kappa"],
    ),
    "labels-only": (Parity, lambda: list(datasets.Phishing()), "binary", ["accuracy", "f1", "mcc"]),
    "regression": (
        lambda: preprocessing.StandardScaler() | linear_model.LinearRegression(),
        lambda: list(itertools.islice(datasets.TrumpApproval(), 1000)),
        "regression",
        ["mae", "rmse", "r2"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_blocks_log_exactly_the_steps_of_one_event_at_a_time(case):
    make_model, make_rows, task, metric_names = CASES[case]
    rows = make_rows()
    one, one_metrics, one_n = replay(make_model(), rows, task, metric_names, block=1)
    blocks, block_metrics, block_n = replay(make_model(), rows, task, metric_names, block=256)
    assert one_n == block_n == len(rows) == len(blocks)
    pd.testing.assert_frame_equal(blocks, one, check_exact=True)
    assert block_metrics == one_metrics  # bit for bit, not approximately
    if case == "abstaining-tree":
        assert blocks.y_pred.isna().any() and blocks.y_pred.notna().any()


def test_an_interrupted_block_keeps_the_steps_of_the_events_it_read():
    rows = list(itertools.islice(synth.Agrawal(seed=1), 1000))

    def interrupted():
        for i, (x, y) in enumerate(rows):
            if i == 700:
                raise KeyboardInterrupt
            yield make_event((x, y, None, None, i, None))

    arm = make_arm("lr", linear_model.LogisticRegression(), "binary", ["accuracy"])
    runner = Runner([arm], Delay("none"), False, block=256)
    with pytest.raises(KeyboardInterrupt):
        for _ in runner.run(interrupted()):
            pass
    assert runner.n_events == 700
    assert steps_table(arm.take()).column("seq").to_pylist() == list(range(700))


def test_a_run_through_blocks_matches_river_and_the_one_event_loop(db, monkeypatch):
    """End to end: wb.run's steps and metrics, with blocks and without, and River's score."""
    config = {
        "name": "blocks",
        "source": {"kind": "dataset", "name": "Phishing"},
        "learners": [
            {
                "name": "lr",
                "model": "river.linear_model.LogisticRegression",
                "preprocessing": ["river.preprocessing.StandardScaler"],
            }
        ],
        "metrics": ["accuracy", "log_loss"],
    }
    fast = wb.run(config, db=db, progress=False)
    monkeypatch.setattr("workbench.experiment.BLOCK", 1)
    slow = wb.run(config, db=db, progress=False)
    drop = ["run_id", "predict_us", "learn_us"]
    pd.testing.assert_frame_equal(fast.steps().drop(columns=drop), slow.steps().drop(columns=drop), check_exact=True)
    summary = fast.summary().set_index("learner").loc["lr"]
    assert summary.accuracy == slow.summary().set_index("learner").loc["lr"].accuracy
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    from river import evaluate

    assert summary.accuracy == evaluate.progressive_val_score(datasets.Phishing(), model, metrics.Accuracy()).get()


# -- mini-batches ---------------------------------------------------------------------------
def hyperplane(n, seed=3):
    return [({f"x{k}": v for k, v in x.items()}, y) for x, y in itertools.islice(synth.Hyperplane(seed=seed), n)]


@pytest.mark.parametrize("scaler", [False, True], ids=["lr", "scaler-lr"])
def test_minibatch_steps_and_metrics_are_rivers_on_the_same_predictions(db, scaler):
    rows, size = hyperplane(2_300), 200
    run = wb.run(minibatch_config(size, scaler), db=db, progress=False, stream=rows)
    steps = run.steps("lr").set_index("seq")
    # River, batch by batch: predict the whole batch, then learn it; its metrics fed each row.
    model = (
        compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
        if scaler
        else linear_model.LogisticRegression()
    )
    river = {"accuracy": metrics.Accuracy(), "log_loss": metrics.LogLoss(), "f1": metrics.F1()}
    y_pred, y_proba, loss = [], [], []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        X = pd.DataFrame.from_records([x for x, _ in chunk])
        probas = model.predict_proba_many(X)
        model.learn_many(X, pd.Series([y for _, y in chunk]))
        for (_, y), p in zip(chunk, probas.to_dict("records"), strict=True):
            label = max(p, key=p.get)
            river["accuracy"].update(y, label)
            river["f1"].update(y, label)
            river["log_loss"].update(y, p)
            y_pred.append(label)
            y_proba.append(p[label])
            loss.append(-math.log(max(p.get(y, 0.0), 1e-15)))
    _, as_text = Labels().text([y for _, y in rows], y_pred)  # as the store writes labels
    assert steps.y_pred.tolist() == as_text.to_pylist()
    assert steps.y_proba.tolist() == y_proba
    assert steps.loss.tolist() == loss
    assert steps.correct.tolist() == [p == y for p, (_, y) in zip(y_pred, rows, strict=True)]
    summary = run.summary().set_index("learner").loc["lr"]
    for name, metric in river.items():
        assert summary[name] == metric.get(), name  # exactly River's value
    # the model learnt what River's did from its pandas frames (the runner hands it narwhals ones)
    con = connect(str(db), read_only=True)
    state, sha256 = con.execute(
        "SELECT state, sha256 FROM checkpoints WHERE run_id = ? AND reason = 'final'", [run.id]
    ).fetchone()
    con.close()
    learnt = restore(state, sha256)
    lr, river_lr = (learnt["LogisticRegression"], model["LogisticRegression"]) if scaler else (learnt, model)
    assert dict(lr.weights) == dict(river_lr.weights) and lr.intercept == river_lr.intercept
    if scaler:
        assert dict(learnt["StandardScaler"].means) == dict(model["StandardScaler"].means)


def test_batch_size_one_is_the_one_at_a_time_replay(db):
    rows = hyperplane(1_500)
    one = wb.run(minibatch_config(1, True), db=db, progress=False, stream=rows)
    plain = wb.run({**minibatch_config(1, True), "replay": {}}, db=db, progress=False, stream=rows)
    drop = ["run_id", "predict_us", "learn_us"]
    pd.testing.assert_frame_equal(one.steps().drop(columns=drop), plain.steps().drop(columns=drop), check_exact=True)
    metric_names = ["accuracy", "log_loss", "f1"]
    assert one.summary()[metric_names].equals(plain.summary()[metric_names])


@pytest.mark.parametrize(
    "rows",
    [
        [{"a": 1.0, "b": 2.5}, {"a": -0.0, "b": float("inf")}],  # floats, one matrix
        [{"a": 1.0, "b": 2}, {"a": 3.0, "b": 4}],  # an int column
        [{"a": 1.0, "b": 2.0}, {"b": 4.0, "a": 3.0}],  # another order
        [{"a": 1.0, "b": 2.0}, {"a": 3.0}],  # a missing feature
        [{"a": 1.0, "b": None}, {"a": 3.0, "b": 1.0}],  # None
        [{"a": 1.0, "b": "x"}, {"a": 3.0, "b": "y"}],  # text
        [{0: 1.5, 1: 2.5}, {0: 0.5, 1: 1.0}],  # integer names
    ],
)
def test_a_batch_frame_is_what_pandas_from_records_makes(rows):
    expected = pd.DataFrame.from_records(rows)
    got = frame(rows)
    pd.testing.assert_frame_equal(got, expected, check_exact=True, check_column_type=False)


@pytest.mark.parametrize(
    "labels",
    [
        [True, False, True],
        [1, 0, 1],
        [0.5, 1.0, -2.0],
        [1, True, 0],  # ints and bools: pandas keeps them as objects
        [1, 2.5],  # ints and floats
        [1, None, 0],
        ["yes", "no"],
        [2**63, 1],  # past int64
        [-(2**63) - 1, 1],
        [float("nan"), 1.0],
        [],
    ],
)
def test_batch_labels_are_what_pandas_makes_of_the_list(labels):
    pd.testing.assert_series_equal(series(labels), pd.Series(labels), check_exact=True)


def test_only_a_glm_learn_many_is_handed_narwhals_labels():
    lr = linear_model.LogisticRegression
    assert takes_narwhals_labels(lr())
    assert takes_narwhals_labels(linear_model.LinearRegression())
    assert takes_narwhals_labels(preprocessing.StandardScaler() | lr())
    assert not takes_narwhals_labels(tree.HoeffdingTreeClassifier())

    class Supervised(base.SupervisedTransformer):  # reads y itself, as pandas
        def learn_one(self, x, y):
            pass

        def transform_one(self, x):
            return x

    # a supervised step before the model is handed y as River hands it: pandas
    assert not takes_narwhals_labels(compose.Pipeline(Supervised(), lr()))


def test_a_learner_whose_minibatch_methods_fail_on_the_stream_is_refused_before_the_run(db):
    # River's Hyperplane names its features 0, 1, ...: River's StandardScaler.transform_many
    # fails on integer column names (narwhals' from_numpy takes them for a schema)
    rows = list(itertools.islice(synth.Hyperplane(seed=3, n_features=3), 600))
    with pytest.raises(ConfigError) as refused:
        wb.run(minibatch_config(100, True), db=db, progress=False, stream=rows)
    assert refused.value.key == "learners[0].model"
    assert "StandardScaler.transform_many" in str(refused.value) and "batch_size: 1" in str(refused.value)
    assert not db.exists() or connect(str(db), read_only=True).execute("SELECT count(*) FROM runs").fetchone() == (0,)
    # one event at a time, and LogisticRegression's own *_many, take those names
    for cfg in (minibatch_config(1, True), minibatch_config(100, False)):
        run = wb.run(cfg, db=db, progress=False, stream=rows)
        assert run.status == "finished" and len(run.steps("lr")) == 600


def test_a_pipeline_whose_model_has_no_minibatch_methods_takes_a_batch_one_event_at_a_time(db):
    # River's Pipeline has learn_many and predict_proba_many whatever its steps; a Hoeffding
    # tree has neither (its batch failed with an AttributeError from inside the pipeline)
    rows = hyperplane(900)
    learner = {"name": "lr", "model": "river.tree.HoeffdingTreeClassifier",
               "preprocessing": ["river.preprocessing.StandardScaler"]}
    batched = wb.run({**minibatch_config(100, True), "learners": [learner]}, db=db, progress=False, stream=rows)
    plain = wb.run({**minibatch_config(1, True), "learners": [learner], "replay": {}}, db=db, progress=False,
                   stream=rows)
    drop = ["run_id", "predict_us", "learn_us"]
    assert batched.status == "finished" and len(batched.steps()) == 900
    got, expected = batched.steps().drop(columns=drop), plain.steps().drop(columns=drop)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
