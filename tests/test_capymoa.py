"""CapyMOA (MOA in Java) arms: logged and checkpointed like any arm; a checkpoint restores the
exact model, exports and serves. One JVM for the whole module (it starts with the first run)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

import workbench as wb
from workbench.config import load
from workbench.errors import ConfigError
from workbench.export import verify
from workbench.export.service import Service
from workbench.sources import open_source
from workbench.store import Store
from workbench.versioning import restore

if shutil.which("java") is None:
    pytest.skip(
        "CapyMOA needs Java, and no `java` is on PATH: apt-get install default-jre-headless",
        allow_module_level=True,
    )

N = 3000
EVERY = 1000


def config(n: int = N, **extra) -> dict:
    return {
        "name": "capymoa",
        "seed": 3,
        "source": {"kind": "synthetic", "generator": "agrawal", "params": {"classification_function": 2}, "n": n},
        "learners": [
            {"name": "ht", "model": "capymoa.classifier.HoeffdingTree", "params": {"grace_period": 50}},
            {
                "name": "arf",
                "model": "capymoa.classifier.AdaptiveRandomForestClassifier",
                "params": {"ensemble_size": 3, "random_seed": 7},
            },
            {"name": "river_ht", "model": "river.tree.HoeffdingTreeClassifier", "params": {"grace_period": 50}},
        ],
        "metrics": ["accuracy", "log_loss"],
        "checkpoints": {"every": EVERY},
        **extra,
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return wb.run(config(), db=tmp_path_factory.mktemp("capymoa") / "runs.duckdb", progress=False)


def events(n: int = N) -> list:
    return list(open_source(load(config(n)).source, 3).events(lambda _: None))


def test_a_capymoa_arm_logs_every_step(run):
    steps = run.steps()
    for learner in ("ht", "arf"):
        mine = steps[steps.learner == learner].sort_values("seq")
        assert mine.seq.tolist() == list(range(N))
        answered = mine.dropna(subset=["y_pred"])
        assert len(answered) >= 0.98 * N  # MOA abstains where its votes are all zero (a new leaf)
        assert answered.y_proba.between(0, 1).all() and answered.loss.notna().all()
        assert (mine.predict_us > 0).all() and (mine.learn_us > 0).all()
    summary = run.summary().set_index("learner")
    # they learn (River's tree, beside them, scores ~0.63 on this stream)
    assert summary.accuracy["ht"] > 0.65 and summary.accuracy["arf"] > 0.65
    versions = run.checkpoints()
    assert sorted(versions[versions.learner == "ht"].version) == [1, 2, 3, 4]  # 3 scheduled + final


@pytest.mark.parametrize("learner", ["ht", "arf"])
def test_a_restored_checkpoint_predicts_what_the_model_predicted_then(run, learner):
    store = Store(run.store.path)
    cp = store.checkpoint_state(run.id, learner, version=1)
    assert cp["seq"] == EVERY
    model = restore(cp["state"], cp["sha256"])
    logged = run.steps(learner).set_index("seq")
    stream = events()
    for seq in range(EVERY, N):  # the rest of the replay, from the restored state
        x, y = stream[seq].x, stream[seq].y
        proba = model.predict_proba_one(x)
        if not proba:
            assert pd.isna(logged.y_pred[seq]), seq
        else:
            y_pred = max(proba, key=proba.get)
            assert str(y_pred) == logged.y_pred[seq], seq  # the store keeps labels as text
            assert proba[y_pred] == logged.y_proba[seq], seq  # exactly: Java state, random generators too
        model.learn_one(x, y)


def test_a_capymoa_bundle_verifies_and_serves(run, tmp_path):
    path = wb.export(run, "arf", tmp_path / "bundle", version=2)
    result = verify(path, run.id, db=run.store.path)
    assert result.ok, str(result)
    service = Service(path, tmp_path / "state")
    try:
        x = events(1)[0].x
        answer = service.predict({"features": x})
        assert answer["prediction"] in (0, 1) and abs(sum(answer["proba"].values()) - 1) < 1e-9
        learned, _ = service.learn({"features": x, "label": 1})
        assert learned["learned"] == 1
    finally:
        service.close()


def test_a_capymoa_regressor_runs(tmp_path):
    run = wb.run(
        {
            "name": "capymoa-regression",
            "seed": 1,
            "source": {"kind": "synthetic", "generator": "friedman", "n": 1500},
            "learners": [{"name": "fimtdd", "model": "capymoa.regressor.FIMTDD"}],
            "metrics": ["mae"],
        },
        db=tmp_path / "runs.duckdb",
        progress=False,
    )
    steps = run.steps("fimtdd")
    assert len(steps) == 1500 and steps.loss.notna().sum() >= 1499
    late, early = steps.loss.iloc[-500:].mean(), steps.loss.iloc[:100].mean()
    assert late < early  # it learns


@pytest.mark.parametrize(
    ("learner", "message"),
    [
        ({"model": "capymoa.regressor.FIMTDD"}, "is not a CapyMOA classifier"),
        ({"model": "capymoa.stream.Schema"}, "is not a CapyMOA classifier"),
        ({"model": "capymoa.classifier.SGDClassifier"}, "backed by MOA"),
        ({"model": "capymoa.classifier.HoeffdingTre"}, "did you mean 'HoeffdingTree'"),
        ({"model": "capymoa.classifier.HoeffdingTree", "params": {"grace": 5}}, "allowed: random_seed, grace_period"),
        ({"model": "capymoa.classifier.HoeffdingTree", "params": {"grace_period": "x"}}, "learners[0].params"),
        (
            {"model": "capymoa.classifier.HoeffdingTree", "preprocessing": ["river.preprocessing.StandardScaler"]},
            "learners[0].preprocessing",
        ),
    ],
)
def test_bad_capymoa_learners_are_config_errors(learner, message, tmp_path):
    cfg = {**config(10), "learners": [{"name": "bad", **learner}]}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        wb.run(cfg, db=tmp_path / "runs.duckdb", progress=False)


def test_text_features_are_refused_by_name(tmp_path):
    rows = [({"size": float(i), "colour": "red" if i % 2 else "blue"}, i % 2) for i in range(50)]
    cfg = {"name": "text", "learners": [{"name": "ht", "model": "capymoa.classifier.HoeffdingTree"}]}
    with pytest.raises(ConfigError, match="'colour'"):
        wb.run(cfg, db=tmp_path / "runs.duckdb", progress=False, stream=rows)
