"""The sweep view: its figures from a real sweep, the widget, the offline report in a browser."""

from __future__ import annotations

import pytest
from browser import guarded_page, require_browser
from conftest import agrawal_config

import workbench as wb
from workbench import cli
from workbench.dashboards.sweep import SweepView, sweep_figures


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A 2×2 sweep of ADWIN's delta and the seed on a stream with two true drifts."""
    base = agrawal_config(3000, drift={"detector": "river.drift.ADWIN"})
    base["source"]["drifts"] = [
        {"at": 1000, "params": {"classification_function": 4}},
        {"at": 2000, "params": {"classification_function": 0}},
    ]
    raw = {
        "name": "deltas",
        "base": base,
        "grid": {"drift.params.delta": [0.002, 0.2], "seed": [1, 2]},
        "objective": {"metric": "accuracy", "learner": "tree"},
    }
    db = tmp_path_factory.mktemp("sweep") / "w.duckdb"
    return wb.sweep(raw, workers=2, db=str(db), progress=False)


def test_the_figures_show_the_leaderboard_parameters_top_runs_and_drift_settings(swept):
    board = swept.leaderboard()
    figs = sweep_figures(swept.store, swept.id, k=3)
    table = figs["leaderboard"].data[0]
    assert list(table.header["values"][:4]) == ["rank", "label", "status", "accuracy"]
    assert list(table.cells["values"][1]) == board.label.tolist()  # best first
    objective = figs["objective"]
    assert [a.text for a in objective.layout.annotations] == ["drift.params.delta", "seed"]
    assert sum(len(t.y) for t in objective.data) == 2 * len(board)  # every run in each panel
    rolling = figs["top_k"].data
    assert [t.name for t in rolling] == [f"#{r.rank} {r.label}" for r in board.head(3).itertuples()]
    assert all(len(t.x) > 100 for t in rolling)
    detected = next(t for t in figs["drift"].data if t.name == "detected")
    assert sorted(detected.x) == ["delta=0.002", "delta=0.2"]
    alarms = {t.name: dict(zip(t.x, t.y, strict=True)) for t in figs["drift"].data}
    # a larger delta raises alarms more readily: at least as many false alarms
    assert alarms["false alarms"]["delta=0.2"] >= alarms["false alarms"]["delta=0.002"]


def test_the_dashboard_gains_a_sweep_view(swept):
    view = wb.dashboard(swept)
    assert isinstance(view, SweepView) and view.sweep_picker.value == "deltas"
    assert len(view.figures["top_k"].data) == 4 and len(view.figures["leaderboard"].data) == 1
    view.k_picker.value = 2
    assert len(view.figures["top_k"].data) == 2
    assert isinstance(wb.dashboard(swept.store.path, sweep="deltas"), SweepView)


def test_the_sweep_report_renders_offline(swept, tmp_path):
    require_browser()
    out = tmp_path / "sweep.html"
    assert cli.main(["report", "--db", swept.store.path, "--sweep", "deltas", "-o", str(out)]) == 0
    with guarded_page() as page:
        page.goto(out.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4", timeout=60_000)
        panels = page.evaluate("[...document.querySelectorAll('[data-panel]')].map(p => p.dataset.panel)")
        assert panels == ["leaderboard", "objective", "top_k", "drift"]
        assert page.locator("[data-panel=top_k] .scatterlayer .trace").count() == 4
        assert page.errors == [] and page.outside == []
