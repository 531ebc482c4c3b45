"""A/B paired comparison, traffic split and calibration, checked against scipy and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import agrawal_config
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

import workbench as wb
from workbench.evaluation.ab import mcnemar


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    db = tmp_path_factory.mktemp("ab") / "runs.duckdb"
    config = agrawal_config(
        6000,
        baselines=[
            {
                "name": "static",
                "model": "sklearn.linear_model.LogisticRegression",
                "preprocessing": ["sklearn.preprocessing.StandardScaler"],
                "fit_on_first": 1000,
            }
        ],
    )
    return wb.run(config, db=db, progress=False)


def test_ab_pairs_events_and_agrees_with_scipy(run):
    store = run.store
    row = store.ab(run.id, "tree", "static", window=500, n_boot=2000, seed=1).iloc[0]
    a = store.steps(run.id, "tree").set_index("seq")
    b = store.steps(run.id, "static").set_index("seq")
    both = a.correct.notna() & b.correct.reindex(a.index).notna()
    seqs = a.index[both]
    assert row.n == len(seqs) == 5000  # the baseline abstained on the first 1000
    ca, cb = a.correct[seqs].astype(bool).to_numpy(), b.correct[seqs].astype(bool).to_numpy()
    assert row.a_value == pytest.approx(ca.mean()) and row.b_value == pytest.approx(cb.mean())
    assert row["diff"] == pytest.approx(ca.mean() - cb.mean())
    only_a, only_b = int((ca & ~cb).sum()), int((~ca & cb).sum())
    assert row.mcnemar_statistic == pytest.approx(
        (abs(only_a - only_b) - 1) ** 2 / (only_a + only_b)
    )
    assert row.mcnemar_pvalue == pytest.approx(stats.chi2.sf(row.mcnemar_statistic, 1))
    diffs = (ca.astype(float) - cb).reshape(-1, 500).mean(axis=1)  # 10 windows of 500 events
    assert row.ci_low <= diffs.mean() <= row.ci_high
    expected = stats.bootstrap(
        (diffs,),
        np.mean,
        n_resamples=2000,
        method="percentile",
        random_state=np.random.default_rng(1),
    ).confidence_interval
    assert (row.ci_low, row.ci_high) == pytest.approx((expected.low, expected.high))
    assert (
        row.verdict.startswith("tree is better") if row.ci_low > 0 else isinstance(row.verdict, str)
    )
    swapped = store.ab(run.id, "static", "tree", window=500, n_boot=2000, seed=1).iloc[0]
    assert swapped["diff"] == pytest.approx(-row["diff"])


def test_ab_from_the_command_line(run, capsys):
    from workbench.cli import main

    assert main(["ab", run.id, "tree", "static", "--db", run.store.path, "--window", "500"]) == 0
    out = capsys.readouterr().out
    row = run.store.ab(run.id, "tree", "static", window=500).iloc[0]
    assert row.verdict in out and "McNemar" in out


def test_mcnemar_uses_the_exact_test_when_few_events_disagree():
    a = np.array([True] * 20 + [True] * 6 + [False] * 1)
    b = np.array([True] * 20 + [False] * 6 + [True] * 1)
    statistic, p = mcnemar(a, b)
    assert statistic == 1 and p == pytest.approx(stats.binomtest(6, 7, 0.5).pvalue)
    assert mcnemar(a, a) == (0.0, 1.0)


def test_log_loss_comparison_and_unknown_learners(run):
    row = run.store.ab(run.id, "lr", "tree", metric="log_loss").iloc[0]
    assert np.isnan(row.mcnemar_pvalue) and row.a_value > 0
    with pytest.raises(wb.WorkbenchError, match="learners: lr, tree, static"):
        run.store.ab(run.id, "lr", "nope")
    with pytest.raises(wb.WorkbenchError, match="allowed: accuracy"):
        run.store.ab(run.id, "lr", "tree", metric="auc")


def test_traffic_split_routes_every_event_to_one_arm_by_hash(run):
    store = run.store
    split = store.traffic_split(run.id, "lr", "tree", ratio=0.3, seed=5)
    assert split.arm.tolist() == ["A", "B"] and split.learner.tolist() == ["lr", "tree"]
    assert split.n.sum() == 6000 - 1  # every event once (the tree abstained on the first)
    assert 0.25 < split.n[0] / 6000 < 0.35
    again = store.traffic_split(run.id, "lr", "tree", ratio=0.3, seed=5)
    assert again.equals(split)
    other = store.traffic_split(run.id, "lr", "tree", ratio=0.3, seed=6)
    assert not other.n.equals(split.n)
    everything = store.traffic_split(run.id, "lr", "tree", ratio=1.0)
    assert everything.learner.tolist() == ["lr"]
    lr = store.steps(run.id, "lr")
    assert everything.accuracy[0] == pytest.approx(lr.correct.mean())


def test_calibration_matches_scikit_learn(run):
    store = run.store
    steps = store.steps(run.id, "lr")
    curve = store.calibration(run.id, "lr", bins=10)
    prob_true, prob_pred = calibration_curve(steps.correct.astype(int), steps.y_proba, n_bins=10)
    np.testing.assert_allclose(curve.frequency, prob_true)
    np.testing.assert_allclose(curve.confidence, prob_pred)
    assert curve["count"].sum() == len(steps)
    summary = store.calibration_summary(run.id).set_index("learner")
    # binary: the top-label Brier score is the usual Brier score of the positive class
    positive = np.where(
        steps.y_pred == "1", steps.y_proba, 1 - steps.y_proba
    )  # predictions in the labels' vocabulary (0/1), though River's LR answers True/False
    assert summary.brier["lr"] == pytest.approx(brier_score_loss(steps.y_true == "1", positive))
    ece = (curve["count"] * (curve.confidence - curve.frequency).abs()).sum() / len(steps)
    assert summary.ece["lr"] == pytest.approx(ece)
    assert summary.n["static"] == 5000


def test_calibration_per_window(run):
    windows = run.store.calibration_summary(run.id, window=2000)
    lr = windows[windows.learner == "lr"]
    assert lr.window_start.tolist() == [0, 2000, 4000] and lr.window_end.tolist() == [
        1999,
        3999,
        5999,
    ]
    assert lr.n.tolist() == [2000, 2000, 2000]
    curve = run.store.calibration(run.id, window=2000)
    assert set(curve.learner) == {"lr", "tree", "static"}
    assert curve.groupby(["learner", "window_start"])["count"].sum()["lr"].tolist() == [2000] * 3
