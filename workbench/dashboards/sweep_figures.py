"""The sweep view's figures: tidy DataFrames in (from ``workbench.dashboards.sweep``), Figures out."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from workbench.dashboards.figures import _layout, message  # the look of every other panel

STATUS_COLORS = {"finished": "#1f77b4", "stopped": "#aab4c0", "failed": "#d62728", "interrupted": "#ff7f0e"}


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if value != value else f"{value:.4g}"
    return "–" if value is None else str(value)


def leaderboard(board: pd.DataFrame, swept: list[str], metric: str, top: int = 50) -> go.Figure:
    """The ``top`` runs best first: rank, status, the objective and every swept parameter."""
    if board.empty:
        return message("Leaderboard", "No runs recorded for this sweep yet.")
    columns = ["rank", "label", "status", "objective", *swept, "n_events", "elapsed_s"]
    shown = board[[c for c in columns if c in board.columns]].head(top)
    header = [metric if c == "objective" else c for c in shown.columns]
    fig = go.Figure(
        go.Table(
            header=dict(values=header, fill_color="#eef1f5", align="left"),
            cells=dict(values=[[_cell(v) for v in shown[c]] for c in shown.columns], align="left"),
        )
    )
    return _layout(fig, f"Leaderboard ({len(board)} runs, best {metric} first)", 80 + 26 * (len(shown) + 1))


def objective_by_parameter(board: pd.DataFrame, swept: list[str], metric: str) -> go.Figure:
    """The objective of every run against each swept parameter (one panel per parameter)."""
    scored = board[board.objective.notna()] if not board.empty else board
    if scored.empty or not swept:
        return message(f"{metric} by parameter", "No scored runs yet (or nothing is swept).")
    fig = make_subplots(rows=1, cols=len(swept), shared_yaxes=True, subplot_titles=swept)
    for i, param in enumerate(swept, start=1):
        values = scored[param]
        # a few values (a grid) read best as categories; many (random draws) on a numeric axis
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        continuous = numeric and values.nunique() > 6
        for status, group in scored.groupby("status", sort=False):
            fig.add_trace(
                go.Scatter(
                    x=group[param] if continuous else group[param].map(_cell),
                    y=group.objective,
                    mode="markers",
                    marker=dict(size=9, color=STATUS_COLORS.get(status, "#555"), opacity=0.8),
                    name=status,
                    legendgroup=status,
                    showlegend=i == 1,
                    text=group.label,
                    hovertemplate="%{text}<br>" + metric + " %{y:.4f}<extra></extra>",
                ),
                row=1,
                col=i,
            )
        if continuous and (values > 0).all() and values.max() / values.min() >= 100:
            fig.update_xaxes(type="log", row=1, col=i)
        elif not continuous:
            order = sorted(values.unique(), key=lambda v: (not numeric, v if numeric else str(v)))
            fig.update_xaxes(
                type="category", categoryorder="array", categoryarray=[_cell(v) for v in order], row=1, col=i
            )
    fig.update_yaxes(title_text=metric, row=1, col=1)
    return _layout(fig, f"{metric} against each swept parameter", 360)


def top_runs_rolling(rolling: pd.DataFrame, metric: str, window: int) -> go.Figure:
    """The rolling ``metric`` of the best runs: columns label, seq, value (best run first)."""
    if rolling.empty:
        return message(f"Rolling {metric} of the top runs", "No finished runs with scored steps yet.")
    fig = go.Figure()
    for i, (label, group) in enumerate(rolling.groupby("label", sort=False)):
        fig.add_trace(
            go.Scatter(
                x=group.seq,
                y=group.value,
                mode="lines",
                name=label,
                line=dict(color=qualitative.Plotly[i % 10], width=2.5 if i == 0 else 1.5),
            )
        )
    fig.update_xaxes(title_text="event (replay order)")
    fig.update_yaxes(title_text=f"{metric} (last {window:,})")
    return _layout(fig, f"Rolling {metric} of the top {rolling.label.nunique()} runs", 380)


def drift_by_setting(scores: pd.DataFrame) -> go.Figure:
    """Drift detection per detector setting, averaged over the runs that share it: columns
    setting, runs, detected, missed, false_alarms, mean_delay."""
    if scores.empty:
        return message(
            "Drift detection per detector setting",
            "No run of this sweep has a drift detector and true drifts (a synthetic stream with drifts:).",
        )
    fig = make_subplots(rows=1, cols=2, subplot_titles=["alarms per run", "mean detection delay (events)"])
    for name, color in (("detected", "#2ca02c"), ("missed", "#ff7f0e"), ("false_alarms", "#d62728")):
        fig.add_trace(go.Bar(x=scores.setting, y=scores[name], name=name.replace("_", " "), marker_color=color), 1, 1)
    fig.add_trace(go.Bar(x=scores.setting, y=scores.mean_delay, name="mean delay", marker_color="#1f77b4"), 1, 2)
    fig.update_layout(barmode="group")
    return _layout(fig, "Drift detection per detector setting", 380)
