"""Checkpoints, on-demand and kept-K, manual rollback (API and CLI), and the guard."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest
from conftest import agrawal_config
from river import datasets

import workbench as wb
from workbench.cli import main
from workbench.events import TrueDrift
from workbench.learners.river import build
from workbench.replay.labels import Delay
from workbench.runner import Runner, make_arm
from workbench.store import RunWriter
from workbench.supervision import Supervisor
from workbench.versioning import restore

LR = {
    "name": "lr",
    "model": "river.linear_model.LogisticRegression",
    "preprocessing": ["river.preprocessing.StandardScaler"],
}


def test_a_checkpoint_loaded_again_predicts_what_the_model_predicted_when_saved(db):
    data = list(itertools.islice(datasets.Phishing(), 1250))
    config = {
        "name": "versions",
        "learners": [LR, {"name": "tree", "model": "river.tree.HoeffdingTreeClassifier"}],
        "checkpoints": {"every": 250, "keep": 100, "at": [333]},
    }
    run = wb.run(config, db=db, progress=False, stream=data)
    store = wb.connect(db)
    cps = store.checkpoints(run.id)
    assert (cps.reason == "on demand").sum() == 2  # one per learner, at event 333
    checked = 0
    for cp in cps[(cps.reason != "final") & (cps.seq < len(data))].itertuples():
        steps = store.steps(run.id, cp.learner)
        first = steps[steps.model_version == cp.version].iloc[0]  # the first prediction it made
        assert first.seq == cp.seq
        saved = store.checkpoint_state(run.id, cp.learner, cp.version)
        model = restore(saved["state"], saved["sha256"])
        proba = model.predict_proba_one(data[first.seq][0])
        y_pred = max(proba, key=proba.get)
        assert (
            pa.array([y_pred]).cast(pa.string())[0].as_py() == first.y_pred
        )  # as the store writes it
        assert proba[y_pred] == first.y_proba
        checked += 1
    assert checked == 2 * (4 + 1)  # every 250 updates up to 1000, plus the on-demand one


def test_only_the_last_k_checkpoints_are_kept_besides_the_final_one(db):
    run = wb.run(agrawal_config(3000, checkpoints={"every": 200, "keep": 3}), db=db, progress=False)
    cps = wb.connect(db).checkpoints(run.id)
    lr = cps[cps.learner == "lr"]
    assert lr.reason.tolist() == ["scheduled"] * 3 + ["final"]
    assert lr.seq.tolist() == [2600, 2800, 3000, 3000]


def test_manual_rollback_through_the_api_and_the_cli(db, capsys):
    run = wb.run(agrawal_config(2000, checkpoints={"every": 500}), db=db, progress=False)
    store = wb.connect(db)
    row = store.rollback(run.id, "lr", to_version=2).iloc[0]
    assert (row.from_version, row.to_version, row.reason, row.new_version) == (5, 2, "manual", 6)
    cps = store.checkpoints(run.id).set_index(["learner", "version"])
    assert cps.loc[("lr", 6), "reason"] == "rollback"
    assert cps.loc[("lr", 6), "sha256"] == cps.loc[("lr", 2), "sha256"]
    assert store.checkpoint_state(run.id, "lr")["sha256"] == cps.loc[("lr", 2), "sha256"]  # now current

    assert main(["rollback", run.id, "tree", "--db", str(db)]) == 0  # default: the one before
    out = capsys.readouterr().out
    assert "tree" in out and "rolled back" in out
    rb = store.rollbacks(run.id)
    assert rb[rb.learner == "tree"].to_version.iloc[0] == 4
    assert main(["rollback", run.id, "tree", "--to", "99", "--db", str(db)]) == 2
    assert "has no checkpoint of learner 'tree' version 99; checkpoints: lr v1" in capsys.readouterr().err


def _corrupting(events, arm, at: int):
    """The stream, with the learner's weights turned upside down just before event ``at``:
    a bad update, as a broken deploy or a poisoned batch would make one."""
    for i, ev in enumerate(events):
        if i == at:
            lr = arm.model["LogisticRegression"]
            for k in list(lr.weights):  # .weights is a copy; _weights the model's own
                lr._weights[k] = -20 * lr._weights[k]
        yield ev


def test_the_guard_catches_a_bad_update_and_rolls_back(db):
    from workbench.config import load
    from workbench.sources import open_source

    cfg = load(agrawal_config(6000, source={"kind": "synthetic", "generator": "sea", "n": 6000}))
    source = open_source(cfg.source, cfg.seed, None)
    arm = make_arm("lr", build(cfg.learners[0], "binary", "learners[0]"), "binary", ["accuracy"])
    arm.supervisor = Supervisor(arm, [], checkpoint_every=500, keep=5, guard=("accuracy", 300, 0.1))
    arm.take()
    writer = RunWriter(str(db), "guarded")
    writer.begin("guarded", cfg.to_dict(), "binary", 1, wb.__version__)
    writer.true_drifts([TrueDrift(4000, 1)])
    runner = Runner([arm], Delay("none"), False)
    for batches in runner.run(_corrupting(source.events(writer.dead_letter), arm, 4000)):
        writer.write(batches)
    writer.finish("finished", {"n_events": runner.n_events}, [], 1.0)

    store = wb.connect(db)
    rb = store.rollbacks("guarded")
    assert len(rb) == 1 and rb.reason.iloc[0] == "guard"
    seq = int(rb.seq.iloc[0])
    assert 4000 < seq <= 4300  # caught within one guard window
    steps = store.steps("guarded", "lr").set_index("seq")
    assert steps.model_version[seq + 1] == rb.new_version.iloc[0] != steps.model_version[seq]
    assert rb.from_version.iloc[0] == steps.model_version[seq]
    assert rb.to_version.iloc[0] < steps.model_version[4000]  # a checkpoint from before the damage
    before = steps.loc[3500:3999].correct.mean()
    damaged = steps.loc[4000:seq].correct.mean()
    after = steps.loc[seq + 1 : seq + 500].correct.mean()
    assert damaged < before - 0.1 and after > before - 0.05


@pytest.mark.parametrize(
    "guard, words",
    [
        ({"metric": "mse"}, "for regressors"),
        ({"metric": "f1"}, "allowed: accuracy"),
        ({"drop": -1}, "at least 0"),
    ],
)
def test_bad_guard_config_names_the_key(db, guard, words):
    with pytest.raises(wb.ConfigError) as err:
        wb.run(agrawal_config(100, guard=guard, checkpoints={"every": 50}), db=db, progress=False)
    assert err.value.key.startswith("guard") and words in str(err.value)


def test_the_guard_needs_checkpoints(db):
    with pytest.raises(wb.ConfigError, match="checkpoints"):
        wb.run(agrawal_config(100, guard={"metric": "accuracy"}), db=db, progress=False)


def test_a_tree_over_a_feature_that_only_grows_is_checkpointed(db):
    # TrumpApproval's ordinal_date only grows: a Hoeffding regression tree's E-BST splitter
    # chains one node per date, past Python's recursion limit for pickle after ~600 events
    from river import tree

    cfg = {
        "name": "dates",
        "source": {"kind": "dataset", "name": "TrumpApproval"},
        "learners": [{"name": "htr", "model": "river.tree.HoeffdingTreeRegressor"}],
        "checkpoints": {"every": 250},
    }
    run = wb.run(cfg, db=db, progress=False)
    assert run.status == "finished"
    con = wb.store.schema.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT seq, state, sha256 FROM checkpoints WHERE run_id = ? ORDER BY version", [run.id]
    ).fetchall()
    con.close()
    assert [seq for seq, _, _ in rows] == [250, 500, 750, 1000, 1001]
    river_model, stream = tree.HoeffdingTreeRegressor(), list(datasets.TrumpApproval())
    for x, y in stream:
        river_model.learn_one(x, y)
    final = restore(rows[-1][1], rows[-1][2])
    assert [final.predict_one(x) for x, _ in stream[::50]] == [river_model.predict_one(x) for x, _ in stream[::50]]


def test_a_model_too_deep_even_for_the_deep_stack_is_a_recursion_error_not_a_crash():
    from workbench import versioning

    chain = None
    for _ in range(versioning.DEEP_RECURSION):
        chain = [chain]
    with pytest.raises(RecursionError, match="cannot be pickled"):
        versioning.dumps(chain)
