"""Figures are functions of tidy DataFrames: each panel from frames shaped as the store's."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.dashboards import figures


def rolling_frame() -> pd.DataFrame:
    seq = list(range(0, 3000, 10))
    return pd.DataFrame(
        {
            "learner": ["lr"] * len(seq) + ["tree"] * len(seq),
            "seq": seq * 2,
            "value": [0.9 if s < 1500 else 0.6 for s in seq] + [0.8] * len(seq),
        }
    )


def texts(fig) -> str:
    return " ".join(a.text for a in fig.layout.annotations)


def test_rolling_metric_marks_true_drifts_detections_checkpoints_and_rollbacks():
    drifts = pd.DataFrame(
        {
            "learner": ["lr", "lr", "tree", ""],
            "seq": [1480, 1601, 2000, 1500],
            "detector": ["ADWIN", "ADWIN", "ADWIN", "psi"],
            "kind": ["warning", "drift", "drift", "drift"],
            "action": ["none"] * 4,
            "statistic": [0.1] * 4,
            "reason": [""] * 4,
        }
    )
    checkpoints = pd.DataFrame(
        {
            "learner": ["lr", "tree"],
            "version": [1, 1],
            "seq": [1000, 1000],
            "reason": ["scheduled", "scheduled"],
        }
    )
    rollbacks = pd.DataFrame(
        {
            "learner": ["lr"],
            "seq": [1700],
            "from_version": [2],
            "to_version": [1],
            "reason": ["guard"],
        }
    )
    fig = figures.rolling_metric(
        rolling_frame(),
        "accuracy",
        500,
        true_drifts=pd.DataFrame({"seq": [1500], "width": [1]}),
        drift_events=drifts,
        checkpoints=checkpoints,
        rollbacks=rollbacks,
    )
    by_name = {t.name: t for t in fig.data}
    assert len(by_name["lr"].x) == 300 and len(by_name["tree"].x) == 300
    assert [s.x0 for s in fig.layout.shapes] == [1500]
    assert "true drift" in by_name
    # Each mark sits on its own learner's curve, at the nearest sampled point.
    assert list(by_name["warning detected"].x) == [1480] and list(
        by_name["warning detected"].y
    ) == [0.9]
    assert list(by_name["drift detected"].y) == [0.6, 0.8]  # lr after the drift, then tree
    assert list(by_name["checkpoint"].x) == [1000, 1000]
    assert list(by_name["rollback"].y) == [0.6]
    assert fig.layout.title.text == "Rolling accuracy over the last 500 scored events"
    # A feature (data) drift alarm has no learner: it is not put on any curve.
    assert 1500 not in list(by_name["drift detected"].x)


def test_version_timeline_has_one_bar_per_version():
    versions = pd.DataFrame(
        {
            "learner": ["lr", "lr", "tree"],
            "version": [0, 1, 0],
            "first_seq": [0, 1000, 0],
            "last_seq": [999, 2999, 2999],
            "n": [1000, 2000, 3000],
        }
    )
    fig = figures.version_timeline(versions)
    lr = fig.data[0]
    assert list(lr.base) == [0, 1000] and list(lr.x) == [1000, 2000]
    assert list(lr.text) == ["v0", "v1"]
    assert list(fig.data[1].y) == ["tree"]


def test_latency_shows_the_quantiles_of_each_phase():
    histogram = pd.DataFrame(
        {
            "learner": ["lr"] * 4,
            "phase": ["predict", "predict", "learn", "learn"],
            "us": [3.0, 5.0, 10.0, 20.0],
            "count": [10, 30, 20, 20],
        }
    )
    quantiles = pd.DataFrame(
        {
            "learner": ["lr", "lr"],
            "phase": ["predict", "learn"],
            "p50": [4.0, 12.0],
            "p95": [5.5, 19.0],
            "p99": [6.0, 21.5],
        }
    )
    fig = figures.latency(histogram, quantiles)
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert names == [
        "lr predict: p50 4.0 · p95 5.5 · p99 6.0 µs",
        "lr learn: p50 12.0 · p95 19.0 · p99 21.5 µs",
    ]
    assert list(fig.data[0].y) == [0.25, 0.75]  # shares of the predict histogram
    assert list(fig.data[1].x) == [4.0, 5.5, 6.0] and list(fig.data[1].text) == [
        "p50",
        "p95",
        "p99",
    ]
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"


def test_calibration_draws_the_reliability_curve_and_ece_per_window():
    curve = pd.DataFrame(
        {
            "learner": ["lr"] * 2,
            "window_start": [0, 0],
            "window_end": [999, 999],
            "bin": [5, 9],
            "confidence": [0.55, 0.95],
            "frequency": [0.5, 0.9],
            "count": [400, 600],
        }
    )
    summary = pd.DataFrame(
        {
            "learner": ["lr", "lr"],
            "window_start": [0, 500],
            "window_end": [499, 999],
            "ece": [0.08, 0.04],
            "brier": [0.2, 0.15],
            "n": [500, 500],
        }
    )
    fig = figures.calibration(curve, summary)
    names = [t.name for t in fig.data]
    assert names == ["perfectly calibrated", "lr", "lr ECE"]
    assert list(fig.data[1].x) == [0.55, 0.95] and list(fig.data[2].y) == [0.08, 0.04]


def test_feature_drift_heatmap_is_features_by_windows():
    drift = pd.DataFrame(
        {
            "feature": ["age", "age", "salary", "salary"],
            "seq": [999, 1999, 999, 1999],
            "window": [1000] * 4,
            "psi": [0.01, 0.4, 0.02, 0.03],
            "ks": [0.1, 0.5, 0.1, 0.1],
            "ks_pvalue": [0.9, 0.001, 0.8, 0.7],
        }
    )
    heat = figures.feature_drift(drift).data[0]
    assert list(heat.y) == ["age", "salary"] and list(heat.x) == [999, 1999]
    assert heat.z.tolist() == [[0.01, 0.4], [0.02, 0.03]]
    assert figures.feature_drift(drift, "ks").data[0].z.tolist() == [[0.1, 0.5], [0.1, 0.1]]


def test_ab_table_shows_difference_interval_and_test():
    ab = pd.DataFrame(
        [
            {
                "a": "lr",
                "b": "tree",
                "metric": "accuracy",
                "n": 3000,
                "a_value": 0.81,
                "b_value": 0.78,
                "diff": 0.03,
                "ci_low": 0.01,
                "ci_high": 0.05,
                "mcnemar_statistic": 9.1,
                "mcnemar_pvalue": 0.0026,
                "verdict": "lr is better than tree",
            }
        ]
    )
    cells = figures.ab_table(ab).data[0].cells.values
    assert cells[0] == ["lr vs tree"]
    assert cells[5] == ["+0.0300 [+0.0100, +0.0500]"]
    assert cells[6] == ["0.0026"] and cells[7] == ["lr is better than tree"]


def test_data_quality_lists_every_count():
    runs = pd.DataFrame(
        [
            {
                "run_id": "r1",
                "name": "loans",
                "n_events": 1000,
                "n_dead_letters": 3,
                "n_duplicates": 2,
                "n_late": 1,
                "n_unlabelled": 0,
                "n_orphan_labels": 4,
            }
        ]
    )
    table = figures.data_quality(runs).data[0]
    assert [h.removeprefix("<b>").removesuffix("</b>") for h in table.header.values] == [
        "run",
        "events",
        "dead letters",
        "duplicates",
        "late",
        "unlabelled",
        "orphan labels",
    ]
    assert [col[0] for col in table.cells.values] == [
        "r1 (loans)",
        "1,000",
        "3",
        "2",
        "1",
        "0",
        "4",
    ]


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda e: figures.rolling_metric(e), "no scored steps yet"),
        (lambda e: figures.version_timeline(e), "no steps logged yet"),
        (lambda e: figures.latency(e, e), "no timed steps yet"),
        (lambda e: figures.calibration(e, e), "needs a classifier with predict_proba_one"),
        (lambda e: figures.feature_drift(e), "no feature drift computed in this run"),
        (lambda e: figures.ab_table(e), "needs two learners"),
        (lambda e: figures.data_quality(e), "no runs"),
    ],
)
def test_an_empty_frame_gives_a_panel_that_says_why(make, needle):
    fig = make(pd.DataFrame())
    assert needle in texts(fig)
    assert not fig.data
