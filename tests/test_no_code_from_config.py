"""No config can run code: every dotted name resolves to a class of the expected kind defined in
an allowed package, checked before it is called. Each chain here executed before the fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import agrawal_config

import workbench as wb
from workbench.errors import ConfigError

#: (dotted name, the params that make it leave a marker file if it ever runs)
CHAINS = {
    "foreign module re-exported": ("workbench.sources.kafka_dump.glob.os.system", "shell"),
    "private module": ("sklearn.utils._testing.os.system", "shell"),
    "a function of the workbench": ("workbench.cli.main", "argv"),
    "import through an imported module": ("workbench.learners.registry.importlib.import_module", "import"),
    "a package's __main__": ("workbench.__main__.main", None),
    "dunder attributes": ("river.linear_model.LogisticRegression.__init__.__globals__", None),
    "a foreign class re-exported": ("workbench.experiment.Path", None),
    "an attribute of a class": ("river.linear_model.LogisticRegression.learn_one", None),
}


def _params(how: str | None, marker: Path) -> dict:
    if how == "shell":
        return {"command": f"touch {marker}"}
    if how == "argv":  # `workbench record` opens its output file first
        return {
            "argv": [
                "record",
                "--bootstrap-servers",
                "127.0.0.1:9",
                "--topic",
                "t",
                "--out",
                str(marker),
                "--max-events",
                "1",
                "--idle-timeout",
                "0.1",
            ]
        }
    if how == "import":  # a module on the path that leaves the marker when imported
        module = marker.parent / "leaves_a_marker.py"
        module.write_text(f"open({str(marker)!r}, 'w').close()\n")
        return {"name": "leaves_a_marker"}
    return {}


def _place(config: dict, where: str, name: str, params: dict) -> dict:
    spec = {"model": name, "params": params}
    if where == "learner":
        config["learners"][0] = {"name": "evil", **spec}
    elif where == "preprocessing":
        config["learners"][0]["preprocessing"] = [spec]
    elif where == "nested param":
        config["learners"][0]["params"] = {"optimizer": spec}
    elif where == "drift detector":
        config["drift"] = {"detector": name, "params": params}
    elif where == "baseline":
        config["baselines"] = [{"name": "evil", **spec}]
    elif where == "baseline preprocessing":
        config["baselines"] = [
            {"name": "b", "model": "sklearn.linear_model.LogisticRegression", "preprocessing": [spec]}
        ]
    elif where == "metric":
        config["metrics"] = [name]
    return config


WHERE = ["learner", "preprocessing", "nested param", "drift detector", "baseline", "baseline preprocessing", "metric"]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("chain", list(CHAINS))
def test_no_chain_runs_from_any_key(tmp_path, monkeypatch, chain, where):
    name, how = CHAINS[chain]
    if where in ("baseline", "baseline preprocessing") and not name.startswith("sklearn."):
        name = "sklearn." + name.split(".", 1)[1]  # a baseline must name sklearn.…
    if where == "metric" and not name.startswith("river."):
        name = "river." + name.split(".", 1)[1]  # a dotted metric must name river.…
    marker = tmp_path / "marker"
    monkeypatch.syspath_prepend(str(tmp_path))
    config = _place(agrawal_config(n=50), where, name, _params(how, marker))
    db = tmp_path / "runs.duckdb"
    with pytest.raises(ConfigError) as info:
        wb.run(config, db=db, progress=False)
    message = str(info.value)
    assert not marker.exists(), f"{name} ran from {where}"
    assert "leaves_a_marker" not in sys.modules
    assert not db.exists(), "a refused config must not start a run"
    assert name in message and any(why in message for why in ("is not", "does not resolve", "not a class"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("workbench.sources.kafka_dump.glob.os.system", "workbench.sources.kafka_dump.glob is the module 'glob'"),
        ("sklearn.utils._testing.os.system", "'_testing' is not a public name"),
        ("workbench.cli.main", "is a function, not a class: expected a River estimator"),
        ("workbench.learners.registry.importlib.import_module", "is the module 'importlib'"),
        ("workbench.experiment.Path", "it is pathlib.Path, defined outside capymoa, river, sklearn, workbench"),
        ("river.linear_model.LogisticRegression.learn_one", "river.linear_model.LogisticRegression is not a module"),
        ("workbench.learners.batch.BatchLearner", "is not a River estimator"),
        ("river.stream.iter_csv", "is a function, not a class"),
        ("river.linear_model", "is a module: expected a River estimator"),
    ],
)
def test_the_refusal_says_why(db, name, expected):
    config = agrawal_config(n=50)
    config["learners"][0]["model"] = name
    with pytest.raises(ConfigError) as info:
        wb.run(config, db=db, progress=False)
    assert str(info.value).startswith(f"learners[0].model: '{name}'")
    assert expected in str(info.value)


def test_the_kind_is_checked_before_the_class_is_called(db):
    """A real River class of the wrong kind (a metric as a drift detector) is never constructed."""
    config = agrawal_config(n=50, drift={"detector": "river.metrics.Accuracy", "params": {"cm": "not a matrix"}})
    with pytest.raises(ConfigError, match=r"^drift.detector: 'river.metrics.Accuracy' is not a River drift detector"):
        wb.run(config, db=db, progress=False)


def test_allowed_names_still_resolve(db):
    config = agrawal_config(
        n=300,
        drift={"detector": "river.drift.binary.DDM"},
        baselines=[
            {
                "name": "b",
                "model": "sklearn.linear_model.LogisticRegression",
                "preprocessing": ["sklearn.preprocessing.StandardScaler"],
                "fit_on_first": 100,
            }
        ],
        metrics=["accuracy", "river.metrics.BalancedAccuracy"],
    )
    config["learners"][0]["params"] = {"optimizer": {"model": "river.optim.SGD", "params": {"lr": 0.01}}}
    run = wb.run(config, db=db, progress=False)
    assert run.status == "finished"
    assert set(run.summary().learner) == {"lr", "tree", "b"}
