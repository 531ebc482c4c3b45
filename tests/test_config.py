"""Bad configs are refused up front, naming the key and what is allowed."""

from __future__ import annotations

import sys
import textwrap

import pytest
from conftest import agrawal_config

import workbench as wb
from workbench import config as cfgmod
from workbench.errors import ConfigError
from workbench.learners.registry import RIVER_ESTIMATOR, resolve


def refuse(config: dict, db) -> str:
    with pytest.raises(ConfigError) as info:
        wb.run(config, db=db, progress=False)
    assert not db.exists() or wb.connect(str(db)).runs().empty, "a refused config must not start a run"
    return str(info.value)


def test_unknown_top_level_key_lists_allowed(db):
    msg = refuse(agrawal_config(learner=[]), db)
    assert msg.startswith("learner: unknown key")
    assert "learners" in msg and "source" in msg


def test_unknown_source_key_names_full_path(db):
    config = agrawal_config()
    config["source"]["generater"] = "sea"
    assert refuse(config, db).startswith("source.generater: unknown key; allowed here: kind, generator")


def test_bad_source_kind(db):
    config = agrawal_config()
    config["source"] = {"kind": "ftp"}
    assert "source.kind: got 'ftp'; allowed: synthetic, dataset, file" in refuse(config, db)


def test_unknown_generator_lists_generators(db):
    config = agrawal_config()
    config["source"]["generator"] = "agrawall"
    msg = refuse(config, db)
    assert msg.startswith("source.generator: unknown generator 'agrawall'")
    assert "agrawal" in msg and "sea" in msg and "hyperplane" in msg


def test_unknown_generator_param(db):
    config = agrawal_config()
    config["source"]["params"] = {"classification_fn": 1}
    msg = refuse(config, db)
    assert msg.startswith("source.params.classification_fn: not a parameter of Agrawal")
    assert "classification_function" in msg


def test_unknown_dataset_lists_bundled(db):
    config = agrawal_config()
    config["source"] = {"kind": "dataset", "name": "Phising"}
    msg = refuse(config, db)
    assert "unknown dataset 'Phising'" in msg and "Phishing" in msg and "Bananas" in msg


@pytest.mark.parametrize("model", ["os.system", "subprocess.Popen", "builtins.eval"])
def test_disallowed_model_path(db, model):
    config = agrawal_config()
    config["learners"][0]["model"] = model
    msg = refuse(config, db)
    assert msg.startswith(f"learners[0].model: '{model}' is not allowed")
    assert "'river.'" in msg and "'sklearn.'" in msg and "workbench.learners" in msg
    assert model.split(".")[0] not in sys.modules or model.startswith(("os", "builtins", "subprocess"))


def test_unresolvable_model_suggests(db):
    config = agrawal_config()
    config["learners"][1]["model"] = "river.tree.HoefdingTreeClassifier"
    msg = refuse(config, db)
    assert msg.startswith("learners[1].model: 'river.tree.HoefdingTreeClassifier' does not resolve")
    assert "did you mean 'HoeffdingTreeClassifier'" in msg


def test_unknown_model_param(db):
    config = agrawal_config()
    config["learners"][1]["params"] = {"grace": 10}
    msg = refuse(config, db)
    assert msg.startswith("learners[1].params.grace: not a parameter of river.tree.HoeffdingTreeClassifier")
    assert "grace_period" in msg


def test_regressor_on_classification_stream(db):
    config = agrawal_config()
    config["learners"][0]["model"] = "river.linear_model.LinearRegression"
    assert "is not a River classifier" in refuse(config, db)


def test_binary_learner_on_multiclass_stream(db):
    config = agrawal_config()
    config["source"] = {"kind": "dataset", "name": "ImageSegments"}
    msg = refuse(config, db)
    assert "handles two classes only" in msg and "OneVsRestClassifier" in msg


def test_metric_for_wrong_task(db):
    msg = refuse(agrawal_config(metrics=["mae"]), db)
    assert msg.startswith("metrics[0]: unknown metric 'mae' for a binary stream; allowed: accuracy")


@pytest.mark.parametrize("delay", [-3, 2.5, True, ""])
def test_bad_label_delay(db, delay):
    msg = refuse(agrawal_config(replay={"label_delay": delay}), db)
    assert msg.startswith("replay.label_delay: got")
    assert "a number of events" in msg and "'10m'" in msg


def test_event_time_delay_needs_a_clock(db):
    msg = refuse(agrawal_config(replay={"label_delay": "10m"}), db)
    assert "no event time" in msg and "source.time" in msg


def test_duplicate_learner_names(db):
    config = agrawal_config()
    config["learners"][1]["name"] = "lr"
    assert "learner names must be unique; repeated: lr" in refuse(config, db)


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent("""
        source: {kind: synthetic, generator: sea, n: 100}
        learners:
          - {name: nb, model: river.naive_bayes.GaussianNB}
    """))
    cfg = cfgmod.load(path, ["source.n=250", "learners.0.params.var_smoothing=0.1", "replay.label_delay=10m"])
    assert cfg.name == "exp"  # defaults to the file's name
    assert cfg.source.n == 250
    assert cfg.learners[0].params == {"var_smoothing": 0.1}
    assert cfg.replay.label_delay == "10m"
    with pytest.raises(ConfigError, match=r"^learners.3: expected a list index from 0 to 0"):
        cfgmod.load(path, ["learners.3.model=x"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        cfgmod.load(path, ["source.n"])


def test_nested_model_params_and_round_trip():
    cfg = cfgmod.load({
        "name": "nested",
        "source": {"kind": "dataset", "name": "Phishing"},
        "learners": [{"name": "lr", "model": "river.linear_model.LogisticRegression",
                      "params": {"optimizer": {"model": "river.optim.SGD", "params": {"lr": 0.05}}}}],
    })
    again = cfgmod.load(cfg.to_dict())
    assert again == cfg
    run_model = wb.learners.river.build(cfg.learners[0], "binary", "learners[0]")
    assert run_model.optimizer.lr.learning_rate == 0.05


def test_entry_point_plugin_resolves(tmp_path, monkeypatch):
    """A package registered in the workbench.learners group resolves; before that it does not."""
    pkg = tmp_path / "myplugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from river.linear_model import LogisticRegression as MyModel\n")
    with pytest.raises(ConfigError, match="is not allowed"):
        resolve("myplugin.MyModel", "learners[0].model", RIVER_ESTIMATOR)
    dist = tmp_path / "myplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[workbench.learners]\nmyplugin = myplugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from river.linear_model import LogisticRegression

    assert resolve("myplugin.MyModel", "learners[0].model", RIVER_ESTIMATOR) is LogisticRegression


def test_yaml_on_is_a_key_not_a_boolean(tmp_path):
    """PyYAML reads `on:` as True (YAML 1.1); the workbench reads configs as YAML 1.2 does."""
    path = tmp_path / "drift.yaml"
    path.write_text(textwrap.dedent("""
        source: {kind: synthetic, generator: sea, n: 100}
        learners: [{name: nb, model: river.naive_bayes.GaussianNB}]
        drift: {detector: river.drift.ADWIN, on: loss, action: none}
    """))
    cfg = cfgmod.load(path, ["drift.on=error"])
    assert cfg.drift[0].on == "error"
    assert cfgmod.load(path).drift[0].on == "loss"
