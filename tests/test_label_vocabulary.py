"""Labels keep the stream's own type end to end: in steps (y_true and y_pred in one text form),
in the manifest (type and classes), in the service's /predict answers and /learn bodies."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import ROOT
from serving import TOKEN, Server, call

import workbench as wb

LR = {"name": "lr", "model": "river.linear_model.LogisticRegression"}  # answers True/False whatever the labels
TREE = {"name": "tree", "model": "river.tree.HoeffdingTreeClassifier", "params": {"grace_period": 50}}
NB = {"name": "nb", "model": "river.naive_bayes.GaussianNB"}


def _int_stream(tmp: Path) -> dict:
    return {"kind": "synthetic", "generator": "agrawal", "n": 1500}


def _bool_stream(tmp: Path) -> dict:
    """The demo's Kafka dump, whose labels (booleans) arrive later on another topic."""
    data = ROOT / "datasets" / "kafka_sample"
    return {
        "kind": "kafka_dump",
        "path": str(data / "applications.kcat.jsonl"),
        "id": "application_id",
        "time": "kafka",
        "labels": {"path": str(data / "decisions.kcat.jsonl"), "id": "application_id", "target": "approved"},
    }


def _string_stream(tmp: Path) -> dict:
    rng = random.Random(3)
    path = tmp / "loans.jsonl"
    with path.open("w") as f:
        for _ in range(1500):
            a, b = rng.random(), rng.random()
            f.write(json.dumps({"a": a, "b": b, "decision": "approve" if a + b > 1 else "deny"}) + "\n")
    return {"kind": "file", "path": str(path), "target": "decision"}


STREAMS = {
    # name: (source, learners (the first is exported), JSON type of a label, the classes, labels
    # of another type, an unknown class)
    "int": (_int_stream, [LR, TREE], int, [0, 1], [True, "1", 0.5], 2),
    "bool": (_bool_stream, [LR, TREE], bool, [False, True], [1, "true"], None),
    "string": (_string_stream, [TREE, NB], str, ["approve", "deny"], [1, True], "maybe"),
}


@pytest.fixture(scope="module", params=list(STREAMS))
def served(request, tmp_path_factory):
    name = request.param
    tmp = tmp_path_factory.mktemp(f"labels-{name}")
    source, learners, kind, classes, wrong_types, unknown = STREAMS[name]
    config = {"name": f"labels-{name}", "source": source(tmp), "learners": learners, "metrics": ["accuracy"]}
    if name == "bool":
        config["replay"] = {"allowed_lateness": "60s"}
        config["learners"] = [{**lr, "preprocessing": "auto"} for lr in learners]
    db = tmp / "runs.duckdb"
    run = wb.run(config, db=db, progress=False)
    bundle = wb.export(run.id, learners[0]["name"], tmp / "bundle", db=db)
    server = Server(bundle, "--state-dir", str(tmp / "state"))
    yield {
        "name": name,
        "db": db,
        "run": run,
        "bundle": bundle,
        "server": server,
        "kind": kind,
        "classes": classes,
        "wrong": wrong_types,
        "unknown": unknown,
    }
    server.stop()


def test_steps_hold_labels_and_predictions_in_one_vocabulary(served):
    steps = wb.connect(served["db"]).sql(
        "SELECT learner, y_true, y_pred, correct FROM steps WHERE run_id = ? AND y_pred IS NOT NULL",
        [served["run"].id],
    )
    labelled = steps.dropna(subset=["y_true"])
    assert len(labelled) > 500
    texts = {json.dumps(c).strip('"') for c in served["classes"]}
    assert set(labelled.y_true) == texts
    for learner, group in steps.groupby("learner"):
        assert set(group.y_pred) <= texts, f"{learner} predicts in another vocabulary"
    labelled = labelled.dropna(subset=["correct"])
    assert ((labelled.y_true == labelled.y_pred) == labelled.correct.astype(bool)).all()


def test_the_manifest_knows_the_target_type_and_classes(served):
    target = json.loads((served["bundle"] / "manifest.json").read_text())["schema"]["target"]
    kind = {int: "number", bool: "boolean", str: "string"}[served["kind"]]
    assert target == {"type": kind, "nullable": False, "classes": served["classes"]}


def _features(served) -> dict:
    features = json.loads((served["bundle"] / "manifest.json").read_text())["schema"]["features"]
    sample = {"number": 0.5, "string": "north", "boolean": True}
    return {f["name"]: sample[f["type"]] for f in features if f["type"] in sample}


def test_predict_answers_and_learn_takes_the_streams_own_labels(served):
    url, x = served["server"].url, _features(served)
    status, answer = call(url + "/predict", {"features": x})
    assert status == 200
    assert type(answer["prediction"]) is served["kind"] and answer["prediction"] in served["classes"]
    assert sorted(answer["proba"]) == sorted(json.dumps(c).strip('"') for c in served["classes"])
    status, batch = call(url + "/predict", {"instances": [x, x]})
    assert [type(p) for p in batch["predictions"]] == [served["kind"]] * 2
    for label in served["classes"]:
        status, learned = call(url + "/learn", {"features": x, "label": label}, token=TOKEN)
        assert status == 200 and learned["learned"] == 1


def test_labels_of_another_type_or_class_are_refused_naming_them(served):
    url, x = served["server"].url, _features(served)
    before = call(url + "/health")[1]["n_updates"]
    for label in served["wrong"]:
        status, answer = call(url + "/learn", {"features": x, "label": label}, token=TOKEN)
        assert status == 422 and answer["detail"][0]["loc"] == ["body", "label"]
        assert json.dumps(label) in answer["detail"][0]["msg"]
    if served["unknown"] is not None:
        status, answer = call(url + "/learn", {"features": x, "label": served["unknown"]}, token=TOKEN)
        message = answer["detail"][0]["msg"]
        assert status == 422 and answer["detail"][0]["type"] == "label_unknown"
        assert message.startswith(f"unknown label {json.dumps(served['unknown'])}: the model was trained on ")
        assert all(json.dumps(c) in message for c in served["classes"])
    assert call(url + "/health")[1]["n_updates"] == before
    assert call(url + "/predict", {"features": x})[0] == 200


def _text_binary(n: int = 1500) -> list[tuple[dict, str]]:
    rng = random.Random(5)
    rows = []
    for _ in range(n):
        a, b = rng.random(), rng.random()
        rows.append(({"a": a, "b": b}, "yes" if a + 0.3 * rng.random() > 0.6 else "no"))
    return rows


def test_text_labels_of_two_classes_are_refused_by_rivers_true_false_models_and_metrics(tmp_path):
    """River's LogisticRegression learns True/False: on 'yes'/'no' it fails mid-run (int('yes')),
    and LogLoss or F1 read True as the positive class (LogLoss at its maximum, F1 0). Both are
    refused before the run, naming the key and a way out."""
    from workbench.errors import ConfigError

    rows = _text_binary()
    with pytest.raises(ConfigError, match=r"learners\[0\]\.model: .*labels are text.*OneVsRestClassifier"):
        wb.run({"name": "t", "learners": [LR]}, db=tmp_path / "a.duckdb", stream=rows, progress=False)
    with pytest.raises(ConfigError, match=r"metrics\[1\]: f1 counts True .* labels are text"):
        wb.run({"name": "t", "learners": [TREE], "metrics": ["accuracy", "f1"]},
               db=tmp_path / "a.duckdb", stream=rows, progress=False)


def test_log_loss_of_text_labels_is_rivers_cross_entropy(tmp_path):
    """The suggested wrap runs, and log_loss over 'yes'/'no' is River's CrossEntropy (for two
    classes the same log loss), not LogLoss's maximum."""
    from river import evaluate, metrics, multiclass, tree
    from river import linear_model as lm

    rows = _text_binary()
    ovr = {"name": "ovr", "model": "river.multiclass.OneVsRestClassifier",
           "params": {"classifier": {"model": "river.linear_model.LogisticRegression"}}}
    run = wb.run({"name": "t", "learners": [ovr, TREE]}, db=tmp_path / "b.duckdb", stream=rows, progress=False)
    got = dict(zip(run.summary().learner, run.summary().log_loss, strict=True))
    for name, model in [("ovr", multiclass.OneVsRestClassifier(lm.LogisticRegression())),
                        ("tree", tree.HoeffdingTreeClassifier(grace_period=50))]:
        river = evaluate.progressive_val_score(rows, model, metrics.CrossEntropy()).get()
        assert got[name] == pytest.approx(river, rel=1e-12) and got[name] < 1.0, (name, got)
