"""Bundles: what export writes, what load refuses, and verify-bundle's parity proof."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from serving import AT, N, run_with_mid_checkpoint

import workbench as wb
from workbench.config import load as load_config
from workbench.export import BundleError, load, verify
from workbench.export.service import Refusal, Service
from workbench.export.signing import sign_bundle

WORKBENCH = str(Path(sys.executable).parent / "workbench")


@pytest.fixture(scope="module")
def run_id(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("export")
    db = folder / "runs.duckdb"
    return db, run_with_mid_checkpoint(db, folder / "prefix.duckdb")


def test_bundle_holds_config_state_settings_and_a_manifest(run_id, tmp_path):
    db, rid = run_id
    out = wb.export(rid, "lr", tmp_path / "b", db=db)
    names = {p.name for p in out.iterdir()}
    assert names == {"config.yaml", "model.pkl", "settings.yaml", "manifest.json", "SHA256SUMS", "SIGNATURE"}
    sums = dict(
        reversed(line.split("  ")) for line in (out / "SHA256SUMS").read_text().splitlines()
    )
    for name in names - {"SHA256SUMS", "SIGNATURE"}:
        assert sums[name] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["version"] == 2
        and manifest["seq"] == N
        and manifest["checkpoint_reason"] == "final"
    )
    assert set(manifest["versions"]) == {"python", "river", "scikit-learn", "workbench"}
    features = {f["name"]: f["type"] for f in manifest["schema"]["features"]}
    assert features == {
        name: "number"
        for name in (
            "salary",
            "commission",
            "age",
            "elevel",
            "car",
            "zipcode",
            "hvalue",
            "hyears",
            "loan",
        )
    }
    assert manifest["metrics"] == wb.connect(db).checkpoint_state(rid, "lr")["metrics"]
    assert 0.5 < manifest["metrics"]["accuracy"] <= 1
    assert (
        yaml.safe_load((out / "settings.yaml").read_text())["drift"]["detector"]
        == "river.drift.ADWIN"
    )
    # The config is re-runnable and holds only this learner.
    config = load_config(out / "config.yaml")
    assert [lr.name for lr in config.learners] == ["lr"]
    again = wb.run(out / "config.yaml", db=tmp_path / "again.duckdb", progress=False)
    assert again.summary().accuracy.iloc[0] == manifest["metrics"]["accuracy"]


def test_export_a_chosen_version_and_refuse_a_missing_one(run_id, tmp_path):
    db, rid = run_id
    bundle = load(wb.export(rid, "tree", tmp_path / "b", db=db, version=1))
    assert (bundle.version, bundle.manifest["seq"], bundle.manifest["checkpoint_reason"]) == (
        1,
        AT,
        "scheduled",
    )
    with pytest.raises(
        wb.WorkbenchError,
        match=r"no checkpoint of learner 'tree' version 7; checkpoints: lr v1, lr v2",
    ):
        wb.export(rid, "tree", tmp_path / "c", db=db, version=7)


class Trap:
    """Unpickling this creates a file: proof that a refused bundle was never unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_tampered_bundle_is_refused_before_unpickling(run_id, tmp_path):
    db, rid = run_id
    out = wb.export(rid, "lr", tmp_path / "b", db=db)
    marker = tmp_path / "unpickled"
    (out / "model.pkl").write_bytes(pickle.dumps(Trap(marker)))
    with pytest.raises(
        BundleError, match=r"model.pkl does not match its SHA-256 in SHA256SUMS .*refusing"
    ):
        load(out)
    assert not marker.exists()
    result = subprocess.run(
        [WORKBENCH, "verify-bundle", str(out), "--run", rid, "--db", str(db)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "model.pkl does not match its SHA-256" in result.stderr
    # Re-hashing the model in SHA256SUMS breaks the signature; and were the bundle unsigned
    # (and trusted), the manifest would still disagree.
    sums = (out / "SHA256SUMS").read_text().splitlines()
    digest = hashlib.sha256((out / "model.pkl").read_bytes()).hexdigest()
    (out / "SHA256SUMS").write_text(
        "\n".join(f"{digest}  model.pkl" if line.endswith("  model.pkl") else line for line in sums)
        + "\n"
    )
    with pytest.raises(BundleError, match="signature of .* does not match: it was altered"):
        load(out, trust_unsigned=True)
    (out / "SIGNATURE").unlink()
    with pytest.raises(BundleError, match="manifest.json and SHA256SUMS disagree"):
        load(out, trust_unsigned=True)
    assert not marker.exists()


def test_a_bundle_from_another_river_version_is_refused(run_id, tmp_path):
    db, rid = run_id
    out = wb.export(rid, "lr", tmp_path / "b", db=db)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["versions"]["river"] = "0.19.0"
    data = json.dumps(manifest).encode()
    (out / "manifest.json").write_bytes(data)
    sums = [
        line
        if not line.endswith("  manifest.json")
        else f"{hashlib.sha256(data).hexdigest()}  manifest.json"
        for line in (out / "SHA256SUMS").read_text().splitlines()
    ]
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    sign_bundle(out)  # as the exporter would have
    with pytest.raises(
        BundleError,
        match=r"made with River 0.19.0, this environment has River .*install river==0.19.0",
    ):
        load(out)


def test_verify_bundle_final_checkpoint(run_id, tmp_path):
    db, rid = run_id
    out = wb.export(rid, "lr", tmp_path / "b", db=db)
    result = subprocess.run(
        [WORKBENCH, "verify-bundle", str(out), "--run", rid], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"OK  bundle lr v2 against run {rid}: {N:,} logged predictions compared "
        "(0 made by the bundle's model)" in result.stdout
    )
    assert f"model state checked on {N:,} events: all identical" in result.stdout


@pytest.mark.parametrize("learner", ["lr", "tree"])
def test_verify_bundle_hands_over_to_the_bundle_mid_run(run_id, tmp_path, learner):
    db, rid = run_id
    result = verify(wb.export(rid, learner, tmp_path / "b", db=db, version=1), rid, db=db)
    assert result.ok, str(result)
    assert (result.n_compared, result.n_from_bundle, result.n_state_checked) == (N, N - AT, 0)


def test_verify_bundle_catches_a_model_that_predicts_differently(run_id, tmp_path):
    """The lr state at AT exported as if it had been taken 100 events later: parity must fail."""
    db, rid = run_id
    store = wb.connect(db)
    store.sql(
        "UPDATE checkpoints SET seq = seq + 100 WHERE run_id = ? AND learner = 'lr' "
        "AND version = 1",
        [rid],
    )
    try:
        result = verify(wb.export(rid, "lr", tmp_path / "b", db=db, version=1), rid, db=db)
    finally:
        store.sql(
            "UPDATE checkpoints SET seq = seq - 100 WHERE run_id = ? AND learner = 'lr' "
            "AND version = 1",
            [rid],
        )
    assert not result.ok and result.n_mismatches > 0
    assert str(result).startswith("FAILED") and "seq " in str(result)


def test_verify_bundle_against_another_run_is_refused(run_id, tmp_path):
    db, rid = run_id
    out = wb.export(rid, "lr", tmp_path / "b", db=db)
    with pytest.raises(BundleError, match=f"exported from run {rid}, not other"):
        verify(out, "other", db=db)


def test_a_regressor_with_integer_feature_names_and_delayed_labels(tmp_path):
    """Friedman names its features 0..9: JSON sends "0".."9", the service turns them back."""
    config = {
        "name": "friedman",
        "seed": 2,
        "source": {"kind": "synthetic", "generator": "friedman", "n": 600},
        "replay": {"label_delay": 25},
        "learners": [
            {
                "name": "lin",
                "model": "river.linear_model.LinearRegression",
                "preprocessing": ["river.preprocessing.StandardScaler"],
            }
        ],
        "metrics": ["mae"],
    }
    db = tmp_path / "runs.duckdb"
    run = wb.run(config, db=db, progress=False)
    out = wb.export(run, "lin", tmp_path / "b")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["name"] for f in manifest["schema"]["features"]] == [str(i) for i in range(10)]
    assert {f["name_type"] for f in manifest["schema"]["features"]} == {"int"}
    assert manifest["schema"]["target"]["type"] == "number"
    result = wb.verify(out, run.id, db=db)
    assert result.ok and result.n_state_checked == 600, str(result)

    service = Service(out, tmp_path / "state")
    try:
        x = {i: 0.5 for i in range(10)}
        answer = service.predict(json.loads(json.dumps({"features": x})))
        assert answer == {"prediction": load(out).model.predict_one(x), "version": 1}
        assert (
            service.learn({"features": {str(i): 0.1 for i in range(10)}, "label": 3.0})[0][
                "n_updates"
            ]
            == 1
        )
        with pytest.raises(Refusal) as refused:
            service.learn({"features": {str(i): 0.1 for i in range(10)}, "label": "3"})
        assert refused.value.status == 422 and refused.value.detail[0]["loc"] == ["body", "label"]
    finally:
        service.close()


def test_drift_and_guard_settings_come_from_the_run(run_id, tmp_path):
    """A run configured with a detector and a guard hands both to the bundle and the service."""
    db, rid = run_id
    store = wb.connect(db)
    config = store.run(rid)["config"]
    drift = {
        "detector": "river.drift.PageHinkley",
        "params": {"threshold": 20},
        "on": "error",
        "action": "none",
    }
    guard = {"metric": "accuracy", "window": 500, "drop": 0.05}
    store.sql(
        "UPDATE runs SET config = ? WHERE run_id = ?",
        [json.dumps({**config, "drift": drift, "guard": guard}), rid],
    )
    try:
        out = wb.export(rid, "lr", tmp_path / "b", db=db)
    finally:
        store.sql("UPDATE runs SET config = ? WHERE run_id = ?", [json.dumps(config), rid])
    settings = yaml.safe_load((out / "settings.yaml").read_text())
    assert settings == {"drift": drift, "drift_from": "run", "guard": guard}
    service = Service(out, tmp_path / "state")
    try:
        assert type(service.detector).__name__ == "PageHinkley" and service.detector.threshold == 20
    finally:
        service.close()


@pytest.mark.parametrize("delay", [0, 40])
def test_a_scheduled_checkpoint_exports_and_verifies(tmp_path, delay):
    """Checkpoints the replay took itself (checkpoints.every) export and prove parity too."""
    from serving import config

    db = tmp_path / "runs.duckdb"
    run = wb.run({**config(), "checkpoints": {"every": 300, "keep": 10},
                  "replay": {"label_delay": delay}}, db=db, progress=False)
    kept = wb.connect(db).checkpoints(run.id)
    lr = kept[(kept.learner == "lr") & (kept.reason == "scheduled")]
    assert len(lr) >= 2
    version = int(lr.version.iloc[1])
    result = verify(wb.export(run.id, "lr", tmp_path / "b", db=db, version=version), run.id, db=db)
    assert result.ok, str(result)
    assert result.n_from_bundle > 0


def test_a_kafka_dump_run_verifies_through_its_own_replay_stage(tmp_path):
    """Event-time order, label joins and unlabelled events are replayed as the run saw them."""
    from conftest import ROOT

    db = tmp_path / "runs.duckdb"
    run = wb.run(ROOT / "experiments" / "kafka_loans.yaml", db=db, progress=False)
    assert run.info["n_unlabelled"] > 0
    result = verify(wb.export(run.id, "tree", tmp_path / "b", db=db), run.id, db=db)
    assert result.ok, str(result)
    assert result.n_compared == run.info["n_events"]


def test_the_detector_that_watched_the_learner_goes_into_the_bundle(tmp_path):
    """A real run's drift section (a list, entries per learner) becomes the service's detector."""
    from serving import config

    db = tmp_path / "runs.duckdb"
    drift = [
        {"detector": "river.drift.PageHinkley", "on": "loss", "learners": ["tree"]},
        {"features": {"window": 200}},
        {"detector": "river.drift.ADWIN", "params": {"delta": 0.01}, "on": "error"},
    ]
    run = wb.run({**config(), "drift": drift}, db=db, progress=False)
    for learner, detector in [("lr", "river.drift.ADWIN"), ("tree", "river.drift.PageHinkley")]:
        out = wb.export(run.id, learner, tmp_path / learner, db=db)
        settings = yaml.safe_load((out / "settings.yaml").read_text())
        assert settings["drift"]["detector"] == detector and settings["drift_from"] == "run"
        service = Service(out, tmp_path / f"state-{learner}")
        assert service.detector_name == detector
