"""Mini-batches straight from a file's columns log exactly what mini-batches of events log.

With ``replay.batch_size`` and a file source, each batch's frame is one float matrix filled from
the Arrow batch and its labels a numpy array: no dicts, no events unless something asks for them
(the schema of the first events, an arm without ``*_many``). The runs compared here differ only
in how the frame was built; their steps, metrics, dead letters and final models are identical.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from conftest import minibatch_config
from river import compose, linear_model, preprocessing
from river.datasets import synth

import workbench as wb
from workbench import experiment
from workbench.columns import Columns, frame
from workbench.config import SourceConfig
from workbench.sources import files
from workbench.sources.files import FileSource

DROP = ["run_id", "predict_us", "learn_us"]
N_FEATURES = 6


def hyperplane_table(n: int, seed: int = 5) -> pa.Table:
    rows = list(itertools.islice(synth.Hyperplane(seed=seed, n_features=N_FEATURES), n))
    columns = {f"x{k}": [x[k] for x, _ in rows] for k in range(N_FEATURES)}
    columns["y"] = [bool(y) for _, y in rows]
    return pa.table(columns)


def write(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=700)
    return path


def config(path: Path, batch_size: int, scaler: bool = True, **extra) -> dict:
    """The mini-batch experiment of test_fast_paths, reading the file ``path``."""
    base = minibatch_config(batch_size, scaler)
    return {
        **base,
        "name": f"columns-{batch_size}",
        "source": {"kind": "file", "path": str(path), "target": "y", **extra.pop("source", {})},
        "learners": [*base["learners"], *extra.pop("learners", [])],
        **extra,
    }


def both_ways(cfg: dict, db: Path, monkeypatch) -> tuple[wb.Run, wb.Run]:
    """The run with batches as columns, and the same run with batches of events."""
    columnar = wb.run(cfg, db=db, progress=False)
    with monkeypatch.context() as m:
        m.setattr(experiment, "_columnar", lambda *args: False)
        events = wb.run(cfg, db=db, progress=False)
    return columnar, events


def assert_same_runs(a: wb.Run, b: wb.Run) -> None:
    pd.testing.assert_frame_equal(a.steps().drop(columns=DROP), b.steps().drop(columns=DROP), check_exact=True)
    names = ["learner", "accuracy", "log_loss", "f1"]
    assert a.summary()[names].equals(b.summary()[names])  # bit for bit
    assert a.store.checkpoint_state(a.id, "lr")["state"] == b.store.checkpoint_state(b.id, "lr")["state"]
    pd.testing.assert_frame_equal(a.store.feature_schema(a.id), b.store.feature_schema(b.id))
    pd.testing.assert_frame_equal(a.store.dead_letters(a.id), b.store.dead_letters(b.id))
    assert {k: a.info[k] for k in ("n_events", "n_dead_letters")} == {
        k: b.info[k] for k in ("n_events", "n_dead_letters")
    }


@pytest.fixture
def small_arrow_batches(monkeypatch):
    """Arrow batches of 700 rows: mini-batches of 200 straddle them."""
    monkeypatch.setattr(files, "BATCH_ROWS", 700)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("scaler", [False, True], ids=["lr", "scaler-lr"])
def test_batches_from_columns_log_what_batches_of_events_log(
    tmp_path, db, monkeypatch, small_arrow_batches, suffix, scaler
):
    path = write(hyperplane_table(2_345), tmp_path / f"h{suffix}")
    columnar, events = both_ways(config(path, 200, scaler), db, monkeypatch)
    assert_same_runs(columnar, events)
    assert columnar.info["n_events"] == 2_345
    assert columnar.store.feature_schema(columnar.id).name.tolist() == [f"x{k}" for k in range(N_FEATURES)] + [""]


def test_the_columns_path_is_taken_and_makes_no_events(tmp_path, db, monkeypatch, small_arrow_batches):
    """Only the schema's first events are made; the other batches never build a dict."""
    path = write(hyperplane_table(3_000), tmp_path / "h.parquet")
    made = []
    real = FileSource._events

    def counted(self, batch, *args):
        made.append(batch.num_rows)
        return real(self, batch, *args)

    monkeypatch.setattr(FileSource, "_events", counted)
    wb.run(config(path, 250), db=db, progress=False)
    # the first Arrow batch for the preprocessing check's schema (a second opening of the file,
    # before the run), then the first mini-batch for the run's recorded schema (200 events)
    assert made == [700, 250]


def test_refused_rows_missing_values_and_times_give_the_same_steps(tmp_path, db, monkeypatch, small_arrow_batches):
    """Arrow batches with an empty target, a NaN, an Infinity or a missing feature go through
    their events (refused rows are dead letters, a missing value an absent key); the clean ones
    as columns, and the cut into mini-batches is the same."""
    table = hyperplane_table(3_100)
    x0 = table.column("x0").to_pylist()
    y = table.column("y").to_pylist()
    x2 = table.column("x2").to_pylist()
    x0[10], x0[1500] = float("nan"), float("inf")
    y[20] = y[2900] = None
    x2[2100] = None
    table = table.set_column(0, "x0", pa.array(x0)).set_column(2, "x2", pa.array(x2))
    table = table.set_column(table.schema.get_field_index("y"), "y", pa.array(y, pa.bool_()))
    start = pd.Timestamp("2024-01-01", tz="UTC")
    table = table.append_column("t", pa.array(pd.date_range(start, periods=len(table), freq="s")))
    path = write(table, tmp_path / "dirty.parquet")
    cfg = config(path, 200, source={"time": "t"})
    columnar, events = both_ways(cfg, db, monkeypatch)
    assert_same_runs(columnar, events)
    assert columnar.info["n_dead_letters"] == 4
    assert columnar.steps("lr").event_time.is_monotonic_increasing


def test_an_arm_without_many_steps_through_the_events_of_column_batches(tmp_path, db, monkeypatch, small_arrow_batches):
    path = write(hyperplane_table(1_900), tmp_path / "h.parquet")
    tree = {"name": "tree", "model": "river.tree.HoeffdingTreeClassifier"}
    cfg = config(path, 300, learners=[tree], source={"n": 1_834})  # the last Arrow batch cut short
    columnar, events = both_ways(cfg, db, monkeypatch)
    assert_same_runs(columnar, events)  # (a tree's pickle differs from run to run: steps only)
    assert len(columnar.steps("tree")) == 1_834


def test_int_features_and_labels_are_framed_as_pandas_frames_their_dicts(tmp_path, db, monkeypatch):
    table = hyperplane_table(900).append_column("k", pa.array(np.arange(900) % 7))
    table = table.set_column(table.schema.get_field_index("y"), "y", pa.array(np.arange(900) % 2))
    path = write(table, tmp_path / "ints.parquet")
    columnar, events = both_ways(config(path, 128), db, monkeypatch)
    assert_same_runs(columnar, events)


def columns_of(table: pa.Table, size: int, tmp_path: Path) -> list[Columns]:
    """The file's mini-batches; their events (made batch by batch, from slices of the Arrow
    batches) are exactly the events the file source yields."""
    path = write(table, tmp_path / "t.parquet")
    source = FileSource(SourceConfig(kind="file", path=str(path), target="y"))
    batches = list(source.mini_batches(lambda dead: None, size))
    assert [ev for batch in batches for ev in batch.events] == list(source.events(lambda dead: None))
    return batches


def test_a_column_frame_is_the_frame_of_the_events_dicts_to_the_last_bit(tmp_path, small_arrow_batches):
    """The same values, dtypes, names and column-major layout; so River's models learn exactly
    the same from both (numpy sums run in the same order)."""
    table = hyperplane_table(1_500)
    batches = columns_of(table, 400, tmp_path)
    assert [len(b) for b in batches] == [400, 400, 400, 300]
    for batch in batches:
        from_arrow, from_dicts = batch.frame(), frame([ev.x for ev in batch.events])
        pd.testing.assert_frame_equal(from_arrow, from_dicts, check_exact=True)
        pd.testing.assert_frame_equal(from_arrow, pd.DataFrame.from_records([ev.x for ev in batch.events]))
        assert (
            from_arrow._mgr.blocks[0].values.flags.c_contiguous == from_dicts._mgr.blocks[0].values.flags.c_contiguous
        )
        assert len(from_arrow._mgr.blocks) == len(from_dicts._mgr.blocks) == 1
        pd.testing.assert_series_equal(batch.labels(), pd.Series([ev.y for ev in batch.events]), check_exact=True)
        assert batch.ys == [ev.y for ev in batch.events]
    models = [compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression()) for _ in range(3)]
    for batch in batches:
        xs = [ev.x for ev in batch.events]
        for model, X in zip(models, [batch.frame(), frame(xs), pd.DataFrame.from_records(xs)], strict=True):
            model.predict_proba_many(X)
            model.learn_many(X, batch.labels())
    weights = [dict(m["LogisticRegression"].weights) for m in models]
    assert weights[0] == weights[1] == weights[2]  # exactly, not approximately
    assert all(not math.isnan(w) for w in weights[0].values())


def test_every_frame_is_a_learners_own(tmp_path, small_arrow_batches):
    batch = columns_of(hyperplane_table(500), 250, tmp_path)[0]
    first = batch.frame()
    first.iloc[:, :] = 0.0
    assert (batch.frame().to_numpy() != 0.0).all()


def test_batch_size_one_from_a_file_is_the_one_at_a_time_replay(tmp_path, db, monkeypatch):
    """``batch_size: 1`` is not a mini-batch path at all (River's *_many on one row differs from
    *_one in the last bits): the steps are exactly those of a replay without ``replay``."""
    path = write(hyperplane_table(1_200), tmp_path / "h.parquet")
    one = wb.run(config(path, 1), db=db, progress=False)
    plain = wb.run({**config(path, 1), "replay": {}}, db=db, progress=False)
    pd.testing.assert_frame_equal(one.steps().drop(columns=DROP), plain.steps().drop(columns=DROP), check_exact=True)
    assert one.summary()[["accuracy", "log_loss", "f1"]].equals(plain.summary()[["accuracy", "log_loss", "f1"]])
    assert plain.steps("lr").y_proba.notna().all()


def test_a_regression_target_from_columns_gives_the_same_steps(tmp_path, db, monkeypatch, small_arrow_batches):
    table = hyperplane_table(1_600)
    target = pa.array(np.asarray(table.column("x0")) * 3.0 - np.asarray(table.column("x1")))
    path = write(table.set_column(table.schema.get_field_index("y"), "y", target), tmp_path / "r.parquet")
    cfg = {
        "name": "regression",
        "source": {"kind": "file", "path": str(path), "target": "y"},
        "learners": [
            {
                "name": "lr",
                "model": "river.linear_model.LinearRegression",
                "preprocessing": ["river.preprocessing.StandardScaler"],
            }
        ],
        "replay": {"batch_size": 150},
        "metrics": ["mae", "rmse"],
    }
    columnar, events = both_ways(cfg, db, monkeypatch)
    pd.testing.assert_frame_equal(
        columnar.steps().drop(columns=DROP), events.steps().drop(columns=DROP), check_exact=True
    )
    assert columnar.summary()[["mae", "rmse"]].equals(events.summary()[["mae", "rmse"]])
    assert (
        columnar.store.checkpoint_state(columnar.id, "lr")["state"]
        == events.store.checkpoint_state(events.id, "lr")["state"]
    )
