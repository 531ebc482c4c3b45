"""Sources: every River generator, drift schedules, bundled datasets, files."""

from __future__ import annotations

import gzip
import itertools
import json
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from river.datasets import synth

import workbench as wb
from workbench.config import DriftSpec, SourceConfig
from workbench.errors import ConfigError, SourceError
from workbench.sources import open_source
from workbench.sources.datasets import bundled
from workbench.sources.synthetic import ScheduledDrift, generators


def events(source, n=None):
    dead = []
    out = list(itertools.islice(source.events(dead.append), n))
    return out, dead


@pytest.mark.parametrize("name", sorted(generators()))
def test_every_river_generator_by_name(name):
    source = open_source(SourceConfig(kind="synthetic", generator=name, n=50), seed=1)
    evs, dead = events(source)
    assert len(evs) == 50 and not dead
    assert source.task in ("binary", "multiclass", "regression")
    assert all(isinstance(e.x, dict) and e.y is not None for e in evs)


def test_abrupt_drift_far_from_the_start_does_not_overflow():
    """River's ConceptDriftStream overflows for width 1 at 20000; the schedule must not."""
    with pytest.raises(OverflowError):
        list(itertools.islice(synth.ConceptDriftStream(position=20000, width=1, seed=1), 3))
    config = SourceConfig(
        kind="synthetic",
        generator="agrawal",
        n=20_100,
        params={"classification_function": 0},
        drifts=[DriftSpec(at=20_000, width=1, params={"classification_function": 4})],
    )
    source = open_source(config, seed=1)
    evs, _ = events(source)
    assert len(evs) == 20_100
    # Before the drift the labels follow function 0, from the drift on function 4: an exact switch.
    f0 = list(itertools.islice(synth.Agrawal(classification_function=0, seed=1), 20_000))
    f4 = list(itertools.islice(synth.Agrawal(classification_function=4, seed=2), 100))
    assert [(e.x, e.y) for e in evs[:20_000]] == f0
    assert [(e.x, e.y) for e in evs[20_000:]] == f4
    assert [(d.seq, d.width) for d in source.true_drifts()] == [(20_000, 1)]


def test_gradual_drift_mixes_concepts_around_its_centre():
    stream = ScheduledDrift(
        stream=synth.SEA(variant=0, seed=1),
        drift_stream=synth.SEA(variant=3, seed=1),
        position=5000,
        width=2000,
        seed=3,
    )
    # Which concept each event came from: SEA variants differ in their threshold on x0 + x1.
    thresholds = {0: 8.0, 3: 9.5}

    def concept(x, y):
        s = x[0] + x[1]
        if thresholds[0] < s <= thresholds[3]:
            return 0 if y else 3  # label = x0 + x1 > threshold
        return None

    mixed = [concept(x, y) for x, y in itertools.islice(stream, 10_000)]
    early = [c for c in mixed[:3000] if c is not None]
    late = [c for c in mixed[7000:] if c is not None]
    middle = [c for c in mixed[4500:5500] if c is not None]
    assert early.count(3) / len(early) < 0.05
    assert late.count(0) / len(late) < 0.05
    assert 0.3 < middle.count(3) / len(middle) < 0.7


def test_recurring_concept_and_seed_in_params_wins():
    config = SourceConfig(
        kind="synthetic",
        generator="sea",
        n=300,
        params={"variant": 0, "seed": 5},
        drifts=[DriftSpec(at=100, params={"variant": 2}), DriftSpec(at=200, params={"variant": 0})],
    )
    a, _ = events(open_source(config, seed=1))
    b, _ = events(open_source(config, seed=99))
    assert [(e.x, e.y) for e in a] == [(e.x, e.y) for e in b]  # the params' seed, not the config's
    assert [(e.x, e.y) for e in a[:100]] == list(itertools.islice(synth.SEA(variant=0, seed=5), 100))


def test_bundled_datasets_load():
    names = bundled()
    for expected in ["Phishing", "Bananas", "ImageSegments", "TrumpApproval", "ChickWeights", "WaterFlow"]:
        assert expected in names
    for name in names:
        source = open_source(SourceConfig(kind="dataset", name=name, n=20), seed=1)
        evs, _ = events(source)
        assert len(evs) == 20, name


def test_a_dataset_that_must_be_downloaded_says_so_at_once():
    started = time.perf_counter()
    with pytest.raises(SourceError) as info:
        open_source(SourceConfig(kind="dataset", name="Elec2"), seed=1)
    assert time.perf_counter() - started < 2
    message = str(info.value)
    assert "must be downloaded from http" in message and "Phishing" in message


def write_table(tmp_path, fmt: str, df: pd.DataFrame):
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    elif fmt == "jsonl":
        path.write_text(
            "".join(
                json.dumps({k: (None if pd.isna(v) else v) for k, v in row.items()}) + "\n"
                for row in df.to_dict("records")
            )
        )
    elif fmt == "csv.gz":
        with gzip.open(path, "wt") as fh:
            df.to_csv(fh, index=False)
    return path


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "csv.gz"])
def test_file_sources(tmp_path, fmt):
    df = pd.DataFrame(
        {
            "ts": ["2024-01-01T00:00:00", "2024-01-01T00:01:00", "2024-01-01T00:02:00", "2024-01-01T00:03:00"],
            "a": [1.0, 2.0, None, 4.0],
            "b": [0.5, 0.25, 0.125, 1.0],
            "y": [True, False, None, True],
            "unused": [1, 2, 3, 4],
        }
    )
    path = write_table(tmp_path, fmt, df)
    source = open_source(SourceConfig(kind="file", path=str(path), target="y", time="ts", features=["a", "b"]), seed=1)
    evs, dead = events(source)
    assert source.task == "binary"
    assert [e.x for e in evs] == [{"a": 1.0, "b": 0.5}, {"a": 2.0, "b": 0.25}, {"a": 4.0, "b": 1.0}]
    assert [e.y for e in evs] == [True, False, True]
    assert [e.time.minute for e in evs] == [0, 1, 3]
    # The row without a target is a dead letter that says where it was and why.
    line = {"csv": 4, "csv.gz": 4, "jsonl": 3, "parquet": 2}[fmt]
    assert [(d.origin, d.reason) for d in dead] == [(f"{path}:{line}", "target column 'y' is empty")]
    assert json.loads(dead[0].raw)["b"] == 0.125


def test_file_defaults_to_every_other_column_and_infers_the_task(tmp_path):
    df = pd.DataFrame({"x1": [0.1, 0.2, 0.3], "x2": [1, 2, 3], "price": [10.5, 11.0, 9.75]})
    source = open_source(SourceConfig(kind="file", path=str(write_table(tmp_path, "csv", df)), target="price"), seed=1)
    evs, _ = events(source)
    assert source.task == "regression"
    assert evs[0].x == {"x1": 0.1, "x2": 1}
    df["kind"] = ["a", "b", "c"]
    source = open_source(
        SourceConfig(kind="file", path=str(write_table(tmp_path, "parquet", df)), target="kind"), seed=1
    )
    assert source.task == "multiclass"


def test_file_errors_name_the_key(tmp_path):
    path = write_table(tmp_path, "csv", pd.DataFrame({"a": [1], "y": [0]}))
    with pytest.raises(ConfigError, match=r"^source.target: no column 'label' in data.csv; columns: a, y"):
        open_source(SourceConfig(kind="file", path=str(path), target="label"), seed=1)
    with pytest.raises(SourceError, match="does not exist"):
        open_source(SourceConfig(kind="file", path=str(tmp_path / "nope.csv"), target="y"), seed=1)
    with pytest.raises(ConfigError, match="cannot tell the format"):
        open_source(SourceConfig(kind="file", path=str(tmp_path / "data.xlsx"), target="y"), seed=1)


def test_file_run_counts_dead_letters(tmp_path, db):
    df = pd.DataFrame({"a": [float(i) for i in range(100)], "y": [i % 2 == 0 if i % 10 else None for i in range(100)]})
    path = write_table(tmp_path, "parquet", df)
    run = wb.run(
        {
            "name": "dl",
            "source": {"kind": "file", "path": str(path), "target": "y"},
            "learners": [{"name": "nb", "model": "river.naive_bayes.GaussianNB"}],
        },
        db=db,
        progress=False,
    )
    assert run.info["n_dead_letters"] == 10 and run.info["n_events"] == 90
    dead = wb.connect(str(db)).dead_letters(run.id)
    assert len(dead) == 10 and dead.origin.iloc[0] == f"{path}:0"
