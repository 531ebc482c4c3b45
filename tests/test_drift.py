"""Drift detectors on the learners' errors, feature drift, scoring, adaptation actions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import agrawal_config
from river import drift
from scipy import stats

import workbench as wb
from workbench.cli import main
from workbench.drift.features import psi
from workbench.drift.scoring import score


def abrupt(n: int = 6000, **extra) -> dict:
    return agrawal_config(n, **extra)


def test_adwin_fires_after_the_true_drift_at_the_positions_river_gives(db, capsys):
    run = wb.run(
        abrupt(drift={"detector": "river.drift.ADWIN", "params": {"delta": 0.002}}),
        db=db,
        progress=False,
    )
    store = wb.connect(db)
    events = store.drift_events(run.id)
    assert set(events.action) == {"none"} and set(events.kind) == {"drift"}
    for learner in ("lr", "tree"):
        steps = store.steps(run.id, learner)
        scored = steps[steps.y_pred.notna()]  # abstentions are not errors: skipped
        detector, fired = drift.ADWIN(delta=0.002), []
        for seq, correct in zip(scored.seq, scored.correct, strict=True):
            detector.update(int(not correct))
            if detector.drift_detected:
                fired.append(seq)
        assert events[events.learner == learner].seq.tolist() == fired
    lr_after = events[(events.learner == "lr") & (events.seq >= 3000)].seq
    assert len(lr_after) >= 1
    scores = store.drift_scores(run.id).set_index("learner")
    assert scores.loc["lr", "detected"] == 1 and scores.loc["lr", "missed"] == 0
    assert scores.loc["lr", "mean_delay"] == lr_after.iloc[0] - 3000
    assert scores.loc["lr", "false_alarms"] == (events.learner == "lr").sum() - 1
    assert main(["drift", "--db", str(db)]) == 0  # the latest run
    out = capsys.readouterr().out
    assert "scored against its 1 true drifts" in out and "ADWIN" in out


def test_scoring_counts_delays_false_alarms_and_misses():
    truth = pd.DataFrame({"seq": [1000, 3000, 6000], "width": [1, 1, 400]})
    alarms = pd.DataFrame(
        {"learner": ["a"] * 5, "detector": ["D"] * 5, "seq": [500, 1040, 1100, 5850, 9000]}
    )
    row = score(alarms, truth).iloc[0]
    # 500 is before any drift; 1040 catches the first (delay 40), 1100 is a second alarm;
    # nothing between 3000 and 5800; 5850 catches the gradual drift starting at 5800 early.
    assert (row.detected, row.missed, row.false_alarms) == (2, 1, 3)
    assert row.delays == [40, -150]
    assert score(alarms, truth, max_delay=30).iloc[0].detected == 1


def test_binary_detectors_give_warnings_once_per_episode(db):
    run = wb.run(
        abrupt(4000, drift={"detector": "river.drift.binary.DDM", "learners": ["lr"]}),
        db=db,
        progress=False,
    )
    events = wb.connect(db).drift_events(run.id)
    assert set(events.kind) <= {"warning", "drift"} and "warning" in set(events.kind)
    kinds = events.kind.tolist()
    assert all(not (a == b == "warning") for a, b in zip(kinds, kinds[1:], strict=False)), kinds


@pytest.mark.parametrize("action", ["reset", "background", "rollback"])
def test_each_action_changes_the_version_and_says_why(db, action):
    detector = "river.drift.binary.DDM" if action == "background" else "river.drift.ADWIN"
    config = abrupt(
        drift={"detector": detector, "action": action, "learners": ["lr"]},
        checkpoints={"every": 500, "keep": 50},
    )
    run = wb.run(config, db=db, progress=False)
    store = wb.connect(db)
    events = store.drift_events(run.id)
    acted = events[(events.kind == "drift") & (events.action == action)]
    assert len(acted) >= 1, events
    seq = int(acted.seq.iloc[0])
    steps = store.steps(run.id, "lr").set_index("seq")
    assert steps.model_version[seq + 1] > steps.model_version[seq]
    if action == "background":
        warnings = events[(events.kind == "warning") & (events.action == "background")]
        assert (warnings.seq < seq).any()
        assert "background" in set(store.checkpoints(run.id).reason)
    if action == "rollback":
        rb = store.rollbacks(run.id)
        assert rb.reason.iloc[0] == "drift" and rb.seq.iloc[0] == seq
        assert rb.new_version.iloc[0] == steps.model_version[seq + 1]
    # The tree is not watched: its versions change at its scheduled checkpoints only.
    tree = store.steps(run.id, "tree")
    assert (tree.model_version == tree.seq // 500).all()


def test_feature_drift_matches_scipy_and_flags_the_shifted_feature(db):
    rng = np.random.default_rng(0)
    rows = [
        (
            {
                "stable": float(rng.normal()),
                "shifts": float(rng.normal() + (1.5 if i >= 2000 else 0)),
            },
            bool(rng.random() < 0.5),
        )
        for i in range(4000)
    ]
    config = {
        "name": "features",
        "learners": [{"name": "lr", "model": "river.linear_model.LogisticRegression"}],
        "drift": {"features": {"window": 1000, "psi": 0.2, "ks_pvalue": 0.001}},
    }
    run = wb.run(config, db=db, progress=False, stream=rows)
    store = wb.connect(db)
    fd = store.feature_drift(run.id)
    assert sorted(fd.seq.unique()) == [1999, 2999, 3999]
    shifted = fd[fd.feature == "shifts"].set_index("seq")
    ref = np.array([x["shifts"] for x, _ in rows[:1000]])
    cur = np.array([x["shifts"] for x, _ in rows[2000:3000]])
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert shifted.ks[2999] == pytest.approx(expected.statistic)
    assert shifted.ks_pvalue[2999] == pytest.approx(expected.pvalue)
    assert shifted.psi[2999] == pytest.approx(psi(ref, cur))
    alarms = store.drift_events(run.id)
    alarms = alarms[alarms.learner == ""]
    assert set(alarms.detector) == {"psi", "ks"}
    assert set(alarms.seq) == {2999, 3999}
    assert alarms.reason.str.contains("shifts").all()


def test_psi_is_zero_for_the_same_sample_and_grows_with_the_shift():
    x = np.random.default_rng(1).normal(size=5000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert psi(x, x + 0.2) < psi(x, x + 1.0)


@pytest.mark.parametrize(
    "drift_cfg, key, words",
    [
        (
            {"detector": "river.linear_model.LogisticRegression"},
            "drift.detector",
            "not a River drift detector",
        ),
        ({"detector": "river.drift.binary.DDM", "on": "loss"}, "drift.on", "binary detector"),
        (
            {"detector": "river.drift.ADWIN", "action": "explode"},
            "drift.action",
            "allowed: none, reset",
        ),
        ({"detector": "river.drift.ADWIN", "action": "rollback"}, "drift.action", "checkpoints"),
        (
            {"detector": "river.drift.ADWIN", "learners": ["nope"]},
            "drift.learners",
            "unknown learner",
        ),
        ({"params": {}}, "drift.detector", "required"),
    ],
)
def test_bad_drift_config_names_the_key(db, drift_cfg, key, words):
    with pytest.raises(wb.ConfigError) as err:
        wb.run(abrupt(200, drift=drift_cfg), db=db, progress=False)
    assert err.value.key == key and words in str(err.value)


def test_the_science_keys_round_trip_through_to_dict():
    from workbench import config as cfgmod

    raw = abrupt(
        100,
        baselines=[
            {
                "name": "nightly",
                "model": "sklearn.linear_model.LogisticRegression",
                "fit_on_first": 50,
                "refit_every": 20,
                "window": 40,
            }
        ],
        drift=[
            {"detector": "river.drift.ADWIN", "action": "reset", "learners": ["lr"]},
            {"detector": "river.drift.binary.DDM", "name": "ddm", "features": {"window": 50}},
        ],
        checkpoints={"every": 30, "keep": 2, "at": [5]},
        guard={"metric": "log_loss", "window": 20, "drop": 0.1},
    )
    cfg = cfgmod.load(raw)
    assert cfgmod.load(cfg.to_dict()) == cfg
    assert cfg.drift[1].features.window == 50 and cfg.guard.metric == "log_loss"


def test_two_acting_detectors_on_one_learner_are_refused(db):
    twice = [{"detector": "river.drift.ADWIN", "action": "reset"}] * 2
    with pytest.raises(wb.ConfigError, match="only one detector per learner may act"):
        wb.run(abrupt(100, drift=twice), db=db, progress=False)


def test_regression_learners_are_watched_on_their_absolute_error(db):
    rows = [({"x": float(i % 50)}, float(i % 50) * (1 if i < 1500 else -3)) for i in range(3000)]
    config = {
        "name": "regression",
        "source": {"kind": "python", "task": "regression"},
        "learners": [
            {
                "name": "lin",
                "model": "river.linear_model.LinearRegression",
                "preprocessing": ["river.preprocessing.StandardScaler"],
            }
        ],
        "baselines": [
            {"name": "ols", "model": "sklearn.linear_model.LinearRegression", "fit_on_first": 100}
        ],
        "drift": {
            "detector": "river.drift.PageHinkley",
            "params": {"mode": "up", "threshold": 200},
            "action": "reset",
            "learners": ["lin"],
        },
    }
    run = wb.run(config, db=db, progress=False, stream=rows)
    store = wb.connect(db)
    events = store.drift_events(run.id)
    assert len(events) >= 1 and events.seq.min() >= 1500 and set(events.action) == {"reset"}
    ols = store.steps(run.id, "ols")
    assert ols[ols.seq < 100].y_pred.isna().all() and ols[ols.seq >= 100].y_pred.notna().all()
