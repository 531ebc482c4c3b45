"""The dashboard and report over real runs in real DuckDB files."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, agrawal_config

import workbench as wb
from workbench.dashboards import data
from workbench.dashboards.panels import PANELS

WORKBENCH = str(Path(sys.executable).parent / "workbench")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    db = tmp_path_factory.mktemp("dash") / "runs.duckdb"
    first = wb.run(agrawal_config(n=4000), db=db, progress=False)
    second = wb.run(
        agrawal_config(n=3000, name="second", rolling_window=300, metrics=["accuracy", "roc_auc"]),
        db=db,
        progress=False,
    )
    return db, first, second


def lines(dash, panel="rolling"):
    return {
        t.name: t for t in dash.figures[panel].data if t.mode == "lines" and t.name != "true drift"
    }


def test_latency_quantiles_and_histogram_match_the_steps(two_runs):
    db, run, _ = two_runs
    histogram, quantiles = data.latency(wb.connect(str(db)), run.id)
    steps = run.steps()
    for row in quantiles.itertuples():
        us = steps[steps.learner == row.learner][f"{row.phase}_us"].to_numpy(dtype=float)
        assert [row.p50, row.p95, row.p99] == pytest.approx(
            np.percentile(us, [50, 95, 99]), rel=1e-6
        )
        hist = histogram[(histogram.learner == row.learner) & (histogram.phase == row.phase)]
        assert hist["count"].sum() == len(us) == 4000
        assert len(hist) < 100  # log bins: a few dozen points, however long the run


@pytest.mark.parametrize("window", [None, 700])
def test_calibration_aggregated_in_duckdb_equals_the_stores(two_runs, window):
    db, run, _ = two_runs
    store = wb.connect(str(db))
    curve, summary = data.calibration(store, run.id, window=window)
    expected_curve = store.calibration(run.id, window=None)
    expected_summary = store.calibration_summary(run.id, window=window)
    assert len(expected_curve) > 10 and len(expected_summary) >= 2
    for got, expected in ((curve, expected_curve), (summary, expected_summary)):
        assert list(got.columns) == list(expected.columns)
        assert got.learner.tolist() == expected.learner.tolist()
        numbers = [c for c in got.columns if c != "learner"]
        assert got[numbers].to_numpy(float) == pytest.approx(
            expected[numbers].to_numpy(float), rel=1e-9
        )


def test_ab_panel_equals_the_stores_comparison(two_runs):
    db, run, _ = two_runs
    store = wb.connect(str(db))
    got = data.ab(store, run.id, ["lr", "tree"], "accuracy")
    expected = store.ab(run.id, "lr", "tree", metric="accuracy")
    assert got.to_dict("records") == expected.to_dict("records")
    assert data.ab(store, run.id, ["lr"], "accuracy").empty  # one learner: no pair


def test_version_timeline_covers_the_stream(two_runs):
    db, run, _ = two_runs
    versions = data.versions(wb.connect(str(db)), run.id)
    # No scheduled checkpoints: version 0 made every prediction (the final checkpoint comes after).
    assert versions.to_dict("records") == [
        {"learner": name, "version": 0, "first_seq": 0, "last_seq": 3999, "n": 4000}
        for name in ("lr", "tree")
    ]


def test_dashboard_shows_every_panel_and_follows_the_pickers(two_runs):
    db, first, second = two_runs
    dash = wb.dashboard(str(db), live=False)
    try:
        assert dash.run_picker.value == second.id  # the newest run
        assert [v for _, v in dash.run_picker.options] == [second.id, first.id]
        assert dash.window_picker.value == 300  # the config's rolling_window
        assert set(dash.figures) == set(PANELS)
        for name in ("rolling", "versions", "latency", "calibration", "ab", "data_quality"):
            assert dash.figures[name].data, f"panel {name} is empty"
        # No feature drift watched in this config: the panel says so rather than stay blank.
        assert (
            "no feature drift computed" in dash.figures["feature_drift"].layout.annotations[0].text
        )
        assert set(lines(dash)) == {"lr", "tree"}
        assert max(lines(dash)["lr"].x) == 2999
        # The run's own metrics are offered too; River rolls those over the logged steps.
        assert dash.metric_picker.options == ("accuracy", "error_rate", "log_loss", "roc_auc")
        dash.metric_picker.value = "roc_auc"
        auc = second.store.rolling(second.id, "roc_auc", 300)
        tree_auc = auc[auc.learner == "tree"].value.tolist()
        assert list(lines(dash)["tree"].y) == pytest.approx(tree_auc)

        dash.run_picker.value = first.id
        assert max(lines(dash)["lr"].x) == 3999
        assert dash.window_picker.value == 1000
        accuracy = list(lines(dash)["lr"].y)

        dash.metric_picker.value = "log_loss"
        assert dash.figures["rolling"].layout.yaxis.title.text == "log loss"
        assert list(lines(dash)["lr"].y) != accuracy
        rolled = first.rolling("log_loss", window=1000)
        assert list(lines(dash)["lr"].y) == pytest.approx(
            rolled[rolled.learner == "lr"].value.tolist()
        )

        dash.learner_picker.value = ("tree",)
        assert set(lines(dash)) == {"tree"}
        assert {t.name for t in dash.figures["versions"].data} == {"tree"}

        dash.window_picker.value = 200
        assert "last 200 scored" in dash.figures["rolling"].layout.title.text
        assert "finished" in dash.status.value
    finally:
        dash.close()


def test_dashboard_of_one_run_shows_only_that_run(two_runs):
    _, first, _ = two_runs
    dash = wb.dashboard(first, live=False)
    try:
        assert [v for _, v in dash.run_picker.options] == [first.id]
        truths = [s.x0 for s in dash.figures["rolling"].layout.shapes]
        assert truths == [2000]  # the true drift of agrawal_config(n=4000)
    finally:
        dash.close()


def test_drift_checkpoints_rollbacks_baselines_and_feature_drift_are_drawn(tmp_path):
    db = tmp_path / "tour.duckdb"
    run = wb.run(
        ROOT / "experiments" / "dashboard_tour.yaml",
        db=db,
        progress=False,
        overrides=["source.n=6000", "source.drifts.1.at=5000", "source.drifts.1.width=500"],
    )
    store = wb.connect(str(db))
    store.rollback(run.id, "hat")  # a manual rollback, logged in the rollbacks table
    dash = wb.dashboard(run, live=False)
    try:
        assert dash.learner_picker.options == (
            "logreg",
            "hat",
            "nightly",
        )  # online arms, then baselines
        traces = {t.name: t for t in dash.figures["rolling"].data}
        events = store.drift_events(run.id)
        drifts = events[(events.kind == "drift") & (events.learner != "")]
        assert sorted(traces["drift detected"].x) == sorted(drifts.seq)
        scheduled = store.checkpoints(run.id).query("reason != 'final'")
        assert sorted(traces["checkpoint"].x) == sorted(scheduled.seq)
        assert list(traces["rollback"].x) == store.rollbacks(run.id).seq.tolist()
        heat = dash.figures["feature_drift"].data[0]
        assert set(heat.y) == set(store.feature_drift(run.id).feature) and len(heat.x) == 5
        timeline = {t.name: t for t in dash.figures["versions"].data}
        logged = (
            store.sql(
                "SELECT learner, count(DISTINCT model_version) AS n FROM steps "
                "WHERE run_id = ? GROUP BY learner",
                [run.id],
            )
            .set_index("learner")
            .n
        )
        assert {name: len(t.x) for name, t in timeline.items()} == logged.to_dict()
        ab = dash.figures["ab"].data[0].cells.values
        assert ab[0] == ["logreg vs hat", "logreg vs nightly"]
    finally:
        dash.close()


class Watched:
    """A stream that pauses twice until the open dashboard has redrawn, noting what it showed."""

    task = "Binary classification"

    def __init__(self, n, dash_holder):
        self.n, self.holder, self.seen = n, dash_holder, []

    def __iter__(self):
        from river.datasets import synth

        for i, pair in enumerate(synth.Agrawal(seed=3)):
            if i == self.n:
                return
            if i in (self.n // 2, self.n - 1000):
                # the steps handed over reach the file within a second (the writer waits that long
                # for a whole row group): wait for a redraw showing more than the last pause did
                dash, last = self.holder[0], self.seen[-1][2] if self.seen else 0
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    before = dash.refreshes
                    while dash.refreshes == before and time.monotonic() < deadline:
                        time.sleep(0.05)
                    shown = lines(dash).get("lr")
                    if shown and max(shown.x) > last:
                        break
                self.seen.append(
                    (
                        i,
                        dash.run_picker.value,
                        max(shown.x) if shown else None,
                        re.sub("<[^>]+>", "", dash.status.value),
                    )
                )
            yield pair


def test_live_dashboard_redraws_while_the_same_process_replays(db):
    wb.run(agrawal_config(n=1000), db=db, progress=False)
    dash = wb.dashboard(str(db), interval=0.3)
    try:
        stream = Watched(40_000, [dash])
        run = wb.run(
            {"name": "live", "learners": agrawal_config()["learners"]},
            db=db,
            progress=False,
            stream=stream,
        )
        (i1, run1, last1, status1), (i2, run2, last2, status2) = stream.seen
        assert run1 == run2 == run.id  # it switched to the new run by itself
        assert "running" in status1 and "running" in status2
        # What it showed grew with the replay, and was never ahead of it.
        assert 0 < last1 < i1 and last1 < last2 < i2
        deadline = time.monotonic() + 10
        while "finished" not in dash.status.value and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "finished" in dash.status.value
        assert max(lines(dash)["lr"].x) == 39_999
    finally:
        dash.close()
    assert not dash._thread.is_alive()


def test_report_is_one_offline_file_with_every_panel_of_every_run(two_runs, tmp_path):
    db, first, second = two_runs
    path = wb.report(str(db), output=tmp_path / "out" / "report.html")
    page = path.read_text()
    assert page.count('<section class="run"') == 2
    for run in (first, second):
        assert f'data-run="{run.id}"' in page
    for name in PANELS:
        assert page.count(f'data-panel="{name}"') == 2
    # plotly.js inlined once; nothing is loaded from elsewhere.
    assert page.count("plotly.js v") >= 1 and len(page) > 3_000_000
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']https?://", page)


def test_report_command_writes_the_chosen_runs(two_runs, tmp_path):
    db, first, second = two_runs
    out = tmp_path / "one.html"
    result = subprocess.run(
        [
            WORKBENCH,
            "report",
            "--db",
            str(db),
            "--run",
            first.id,
            "-o",
            str(out),
            "--metric",
            "log_loss",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    page = out.read_text()
    assert f'data-run="{first.id}"' in page and f'data-run="{second.id}"' not in page
    assert "Rolling log loss" in page


def test_report_of_an_unknown_run_is_explained(two_runs, tmp_path):
    db, _, _ = two_runs
    result = subprocess.run(
        [WORKBENCH, "report", "--db", str(db), "--run", "nope", "-o", str(tmp_path / "x.html")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: no run 'nope' in")
