"""preprocessing: auto (numbers scaled, text one-hot encoded, from the stream's feature schema)
and the up-front refusal of text under a numeric-only step."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import workbench as wb
from workbench.export import verify

WORKBENCH = str(Path(sys.executable).parent / "workbench")
LR = "river.linear_model.LogisticRegression"


@pytest.fixture
def loans(tmp_path) -> Path:
    """Approval depends on a text feature (region) and a number (amount)."""
    rng = random.Random(3)
    rows = []
    for _ in range(3000):
        region, amount = rng.choice(["north", "south", "west"]), rng.uniform(0, 100)
        rows.append({"region": region, "amount": amount, "approved": region != "west" and amount < 80})
    path = tmp_path / "loans.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def config(path: Path, preprocessing) -> dict:
    return {
        "name": "loans",
        "source": {"kind": "file", "path": str(path), "target": "approved"},
        "learners": [{"name": "lr", "model": LR, "preprocessing": preprocessing}],
    }


def test_a_text_feature_replays_with_preprocessing_auto_and_its_bundle_verifies(loans, tmp_path):
    db = tmp_path / "runs.duckdb"
    run = wb.run(config(loans, "auto"), db=db, progress=False)
    assert run.status == "finished"
    # Only a model that sees region one-hot encoded can learn "not west".
    assert run.summary().set_index("learner").accuracy["lr"] > 0.9
    schema = run.store.feature_schema(run.id).set_index("name")
    assert schema.type["region"] == "string" and schema.type["amount"] == "number"
    bundle = wb.export(run.id, "lr", tmp_path / "bundle", db=db)
    assert verify(bundle, run.id, db=db).ok


def test_auto_reads_a_one_shot_iterator_ahead_and_replays_all_of_it(tmp_path):
    rng = random.Random(1)
    pairs = (({"colour": rng.choice("rgb"), "size": rng.random()}, i % 3 == 0) for i in range(1000))
    cfg = {"name": "gen", "source": {"kind": "python", "task": "binary"},
           "learners": [{"name": "lr", "model": LR, "preprocessing": "auto"}]}
    run = wb.run(cfg, db=tmp_path / "runs.duckdb", progress=False, stream=pairs)
    assert run.status == "finished" and len(run.steps()) == 1000


def test_text_under_a_scaler_is_refused_before_the_run_naming_the_feature_and_the_fix(loans, tmp_path):
    db = tmp_path / "runs.duckdb"
    with pytest.raises(wb.ConfigError) as info:
        wb.run(config(loans, ["river.preprocessing.StandardScaler"]), db=db, progress=False)
    message = str(info.value)
    assert message.startswith("learners[0].preprocessing[0]: feature 'region' is text")
    assert "river.preprocessing.StandardScaler takes numbers only" in message and "preprocessing: auto" in message
    assert not db.exists(), "nothing is written for a refused config"


def test_auto_refuses_a_feature_of_mixed_types_and_baselines_refuse_auto(tmp_path):
    rows = [{"a": 1.0 if i % 2 else "x", "y": i % 2 == 0} for i in range(300)]
    with pytest.raises(wb.ConfigError, match="feature 'a' has values of several types"):
        wb.run({"name": "mixed", "learners": [{"name": "lr", "model": LR, "preprocessing": "auto"}]},
               db=tmp_path / "db.duckdb", progress=False, stream=[(dict(r), r.pop("y")) for r in rows])
    with pytest.raises(wb.ConfigError, match=r"baselines\[0\].preprocessing: 'auto' is for online"):
        wb.run({"name": "b", "source": {"kind": "synthetic", "generator": "agrawal", "n": 10},
                "learners": [{"name": "lr", "model": LR}],
                "baselines": [{"name": "n", "model": "sklearn.linear_model.LogisticRegression",
                               "preprocessing": "auto"}]}, db=tmp_path / "db.duckdb", progress=False)


def test_a_run_that_fails_says_which_run_and_where_to_look(tmp_path):
    config_file = tmp_path / "fails.yaml"
    # One labelled event is one class: scikit-learn's first fit raises in the middle of the run.
    config_file.write_text(
        "name: fails\nsource: {kind: synthetic, generator: agrawal, n: 500}\n"
        f"learners: [{{name: lr, model: {LR}, preprocessing: auto}}]\n"
        "baselines: [{name: nightly, model: sklearn.linear_model.LogisticRegression, fit_on_first: 1}]\n"
    )
    db = tmp_path / "runs.duckdb"
    result = subprocess.run([WORKBENCH, "run", str(config_file), "--db", str(db), "--no-progress"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    run_id = wb.connect(db).runs().run_id.iloc[0]
    assert result.stderr.startswith(f"run {run_id} failed: ValueError: ")
    assert "Traceback" not in result.stderr and f"workbench runs --db {db}" in result.stderr
    listed = subprocess.run([WORKBENCH, "runs", "--db", str(db)], capture_output=True, text=True).stdout
    assert "failed" in listed and "ValueError" in listed
