"""What a new reader of the report sees first: the run's config, drift scores, dead letters;
numbers formatted one way; curves that coincide still visible; loss axes not set by the warm-up."""

from __future__ import annotations

import pandas as pd
from conftest import ROOT, agrawal_config

import workbench as wb
from workbench.dashboards import figures, overview
from workbench.evaluation.ab import pvalue_text


def test_each_run_starts_with_its_config_drift_scores_and_dead_letter_reasons(tmp_path):
    db = tmp_path / "runs.duckdb"
    drifting = wb.run(agrawal_config(n=3000, drift={"detector": "river.drift.ADWIN"}), db=db, progress=False)
    kafka = wb.run(ROOT / "experiments" / "kafka_loans.yaml", db=db, progress=False)
    page = wb.report(str(db), output=tmp_path / "report.html").read_text()
    section = page[page.index(f'data-run="{drifting.id}"'):page.index(f'data-run="{kafka.id}"')]
    head = section[: section.index('data-panel="rolling"')]
    assert "synthetic agrawal, 3,000 events; drifts at 1,500 (width 1)" in head
    assert "river.drift.ADWIN() on error of every learner; action none" in head
    assert "river.linear_model.LogisticRegression() after river.preprocessing.StandardScaler()" in head
    assert "Drift detectors against the true drifts" in head and "A negative delay" in head
    head = page[page.index(f'data-run="{kafka.id}"'):]
    head = head[: head.index('data-panel="rolling"')]
    assert "allowed lateness 60s" in head and "preprocessing: auto" in head
    reasons = overview.dead_letter_reasons(kafka.store, kafka.id)
    # Reasons alike but for their numbers count as one: the late events are one line, not five.
    assert len(reasons) == overview.TOP_REASONS and reasons.records.is_monotonic_decreasing
    assert reasons.reason.str.startswith("late: ").sum() == 1
    assert "Top 5 dead-letter reasons" in head and "first origin" in head


def test_p_values_below_a_double_read_as_such_and_tables_grow_with_their_text():
    assert pvalue_text(0.0) == "< 1e-300" and pvalue_text(0.01234) == "0.0123" and pvalue_text(None) == "–"
    short = pd.DataFrame({"a": ["x"], "b": ["y"]})
    long = pd.DataFrame({"a": ["x"], "b": ["a verdict that goes on " * 12]})
    assert figures._table("t", long).layout.height > figures._table("t", short).layout.height + 40


def test_coinciding_curves_are_dashed_apart_and_the_loss_axis_ignores_the_warm_up():
    seq = list(range(0, 5000, 10))
    same = [9.0 if s < 500 else 0.3 for s in seq]  # a warm-up far above the rest
    rolling = pd.DataFrame({"learner": ["tree"] * len(seq) + ["hat"] * len(seq), "seq": seq * 2, "value": same * 2})
    fig = figures.rolling_metric(rolling, "log_loss", window=1000, palette=figures.colors(["tree", "hat"]))
    dashes = [t.line.dash for t in fig.data if t.name in ("tree", "hat")]
    assert len(set(dashes)) == 2
    assert fig.layout.yaxis.range[1] < 1
    accuracy = figures.rolling_metric(rolling, "accuracy", window=1000)
    assert accuracy.layout.yaxis.range is None
