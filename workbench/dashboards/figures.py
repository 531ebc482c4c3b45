"""Tidy DataFrames in, Plotly figures out: every panel of the dashboard and the report.

Each function takes the DataFrame a Store method (or a SQL query) returns and knows nothing of
widgets or databases, so a figure can be rebuilt in any notebook from the same data. An empty
DataFrame gives a figure that says why it is empty instead of a blank plot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from workbench.evaluation.ab import pvalue_text

PALETTE = qualitative.Plotly
HEIGHT = 340
METRIC_LABELS = {
    "accuracy": "accuracy",
    "error_rate": "error rate",
    "log_loss": "log loss",
    "mse": "MSE",
    "rmse": "RMSE",
    "mae": "MAE",
}


#: line styles, one per learner in turn: curves that coincide (two trees that learned the same
#: thing) stay visible as one dashed over another
DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
#: metrics where lower is better and the first events' values dwarf the rest
LOSSES = {"log_loss", "mse", "rmse", "mae"}


def colors(learners: list[str]) -> dict[str, str]:
    """One colour per learner, the same in every panel."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(learners)}


def _dash(learner: str, palette: dict[str, str]) -> str:
    order = list(palette)
    return DASHES[order.index(learner) % len(DASHES)] if learner in order else "solid"


def _layout(fig: go.Figure, title: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.01, font_size=15),
        height=height,
        template="plotly_white",
        margin=dict(l=60, r=20, t=50, b=40),
        legend=dict(orientation="h", y=-0.18),
    )
    return fig


def _ordered(names: pd.Series, palette: dict[str, str] | None) -> list[str]:
    """The learners present, in the run's order (online arms, then baselines) when the palette
    gives it, else as they come."""
    present = list(dict.fromkeys(names))
    order = list(palette or {})
    return sorted(present, key=lambda n: order.index(n) if n in order else len(order))


def message(title: str, text: str) -> go.Figure:
    """A panel with nothing to plot: says what is missing and how to get it."""
    fig = go.Figure()
    fig.add_annotation(
        text=text,
        showarrow=False,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        font=dict(size=14, color="#666"),
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=160)


def _on_line(rolling: pd.DataFrame, marks: pd.DataFrame) -> pd.DataFrame:
    """Put each mark (learner, seq) on its learner's rolling curve, so it sits where it happened."""
    parts = []
    for learner, group in marks.groupby("learner", sort=False):
        curve = rolling[rolling.learner == learner][["seq", "value"]].sort_values("seq")
        if curve.empty:
            continue
        group = group.sort_values("seq")
        parts.append(pd.merge_asof(group, curve, on="seq", direction="nearest"))
    return pd.concat(parts) if parts else marks.assign(value=pd.Series(dtype=float))


def _add_marks(
    fig: go.Figure,
    rolling: pd.DataFrame,
    marks: pd.DataFrame,
    name: str,
    symbol: str,
    palette: dict[str, str],
) -> None:
    placed = _on_line(rolling, marks)
    fig.add_trace(
        go.Scatter(
            x=placed.seq,
            y=placed.value,
            mode="markers",
            name=name,
            text=placed.learner,
            marker=dict(
                symbol=symbol,
                size=10,
                line=dict(width=1.5),
                color=[palette.get(v, "black") for v in placed.learner],
            ),
            hovertemplate="%{text} at event %{x:,}<extra>" + name + "</extra>",
        )
    )


def rolling_metric(
    rolling: pd.DataFrame,
    metric: str = "accuracy",
    window: int = 1000,
    true_drifts: pd.DataFrame | None = None,
    drift_events: pd.DataFrame | None = None,
    checkpoints: pd.DataFrame | None = None,
    rollbacks: pd.DataFrame | None = None,
    palette: dict[str, str] | None = None,
) -> go.Figure:
    """The rolling ``metric`` of every learner (columns learner, seq, value), with the true
    drifts (seq, width) as dashed lines and detected warnings/drifts, checkpoints and rollbacks
    (learner, seq, ...) as markers on the learner's curve."""
    title = f"Rolling {METRIC_LABELS.get(metric, metric)} over the last {window:,} scored events"
    if rolling.empty:
        return message(title, "no scored steps yet: a learner is scored once a label arrives")
    learners = _ordered(rolling.learner, palette)
    palette = palette or colors(learners)
    fig = go.Figure()
    for learner in learners:
        curve = rolling[rolling.learner == learner]
        fig.add_trace(
            go.Scatter(
                x=curve.seq,
                y=curve.value,
                name=learner,
                mode="lines",
                line=dict(color=palette.get(learner), width=1.8, dash=_dash(learner, palette)),
                legendgroup=learner,
            )
        )
    if metric in LOSSES:
        _clip_warm_up(fig, rolling, window)
    if true_drifts is not None and not true_drifts.empty:
        for drift in true_drifts.itertuples():
            if drift.width > 1:
                fig.add_vrect(
                    x0=drift.seq - drift.width / 2,
                    x1=drift.seq + drift.width / 2,
                    fillcolor="grey",
                    opacity=0.12,
                    line_width=0,
                )
            fig.add_vline(x=drift.seq, line_dash="dash", line_color="grey")
        # A legend entry for the lines (shapes have none).
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                name="true drift",
                line=dict(color="grey", dash="dash"),
            )
        )
    if drift_events is not None and not drift_events.empty:
        for kind, group in drift_events.groupby("kind", sort=False):
            symbol = "triangle-up-open" if kind == "warning" else "x"
            _add_marks(fig, rolling, group, f"{kind} detected", symbol, palette)
    if checkpoints is not None and not checkpoints.empty:
        _add_marks(fig, rolling, checkpoints, "checkpoint", "diamond-open", palette)
    if rollbacks is not None and not rollbacks.empty:
        _add_marks(fig, rolling, rollbacks, "rollback", "circle-x", palette)
    fig.update_xaxes(title_text="event (replay order)")
    fig.update_yaxes(title_text=METRIC_LABELS.get(metric, metric))
    return _layout(fig, title, height=400)


def _clip_warm_up(fig: go.Figure, rolling: pd.DataFrame, window: int) -> None:
    """A loss axis scaled to the run after the warm-up: the first scored events (before a window
    has filled) can be many times larger and would flatten everything else."""
    first = rolling.groupby("learner").seq.transform("min")
    settled = rolling.value[rolling.seq >= first + window].dropna()
    if settled.empty:
        return
    top = float(settled.max())
    if top < float(rolling.value.max()):
        fig.update_yaxes(range=[min(0.0, float(settled.min())), top * 1.08])


def version_timeline(versions: pd.DataFrame, palette: dict[str, str] | None = None) -> go.Figure:
    """Which model version served which part of the stream: columns learner, version,
    first_seq, last_seq, n (steps predicted by that version)."""
    title = (
        "Model versions: which version made the predictions on which events<br><sup>v0 is the model "
        "as built; each checkpoint, reset, swap, rollback or refit starts the next version</sup>"
    )
    if versions.empty:
        return message(title, "no steps logged yet")
    learners = _ordered(versions.learner, palette)
    palette = palette or colors(learners)
    fig = go.Figure()
    for learner in learners:
        rows = versions[versions.learner == learner]
        # Alternate light and dark so neighbouring versions stay apart.
        opacity = [0.95 if v % 2 else 0.55 for v in rows.version]
        fig.add_trace(
            go.Bar(
                y=[learner] * len(rows),
                base=rows.first_seq,
                x=rows.last_seq - rows.first_seq + 1,
                orientation="h",
                name=learner,
                marker=dict(color=palette.get(learner), opacity=opacity),
                text=[f"v{v}" for v in rows.version],
                textposition="inside",
                insidetextanchor="middle",
                customdata=rows[["version", "first_seq", "last_seq", "n"]].to_numpy(),
                hovertemplate="version %{customdata[0]}: events %{customdata[1]:,}–"
                "%{customdata[2]:,} (%{customdata[3]:,} predictions)<extra>%{y}</extra>",
            )
        )
    fig.update_layout(barmode="overlay", showlegend=False)
    fig.update_xaxes(title_text="event (replay order)")
    fig = _layout(fig, title, height=max(200, 90 + 45 * len(learners)))
    fig.update_layout(margin_t=70)
    return fig


def latency(
    histogram: pd.DataFrame, quantiles: pd.DataFrame, palette: dict[str, str] | None = None
) -> go.Figure:
    """Predict and learn time distributions: ``histogram`` has columns learner, phase
    ('predict' | 'learn'), us (bin centre, µs, log-spaced), count; ``quantiles`` has learner,
    phase, p50, p95, p99 — shown in the legend and as markers."""
    title = "Latency per event: predict and learn (µs, log scale)"
    if histogram.empty:
        return message(title, "no timed steps yet")
    learners = _ordered(quantiles.learner, palette)
    palette = palette or colors(learners)
    phases = ["predict", "learn"]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=[f"{p} time" for p in phases], horizontal_spacing=0.08
    )
    for col, phase in enumerate(phases, start=1):
        for learner in learners:
            hist = histogram[(histogram.learner == learner) & (histogram.phase == phase)]
            q = quantiles[(quantiles.learner == learner) & (quantiles.phase == phase)]
            if hist.empty or q.empty:
                continue
            q = q.iloc[0]
            share = hist["count"] / hist["count"].sum()
            label = f"{learner} {phase}: p50 {q.p50:.1f} · p95 {q.p95:.1f} · p99 {q.p99:.1f} µs"
            fig.add_trace(
                go.Scatter(
                    x=hist.us,
                    y=share,
                    mode="lines",
                    line_shape="spline",
                    name=label,
                    line=dict(color=palette.get(learner)),
                    legendgroup=learner,
                ),
                row=1,
                col=col,
            )
            marks = pd.Series({"p50": q.p50, "p95": q.p95, "p99": q.p99})
            fig.add_trace(
                go.Scatter(
                    x=marks.values,
                    y=[share.max() * f for f in (1.04, 0.6, 0.3)],
                    mode="markers+text",
                    text=list(marks.index),
                    textposition="top center",
                    showlegend=False,
                    legendgroup=learner,
                    marker=dict(
                        color=palette.get(learner), symbol="line-ns-open", size=14, line_width=2
                    ),
                    hovertemplate="%{text} %{x:.1f} µs<extra>" + learner + "</extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(type="log", title_text="µs", row=1, col=col)
    fig.update_yaxes(title_text="share of events", row=1, col=1)
    return _layout(fig, title, height=420)


def calibration(
    curve: pd.DataFrame, summary: pd.DataFrame, palette: dict[str, str] | None = None
) -> go.Figure:
    """Reliability curve (``curve``: learner, bin, confidence, frequency, count over the whole
    run) and ECE per window (``summary``: learner, window_start, window_end, ece, brier, n)."""
    title = "Calibration: reliability curve (whole run) and ECE per window"
    if curve.empty and summary.empty:
        return message(
            title, "no probabilities logged: calibration needs a classifier with predict_proba_one"
        )
    learners = _ordered(pd.concat([curve.learner, summary.learner]), palette)
    palette = palette or colors(learners)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=[
            "reliability (confidence vs frequency)",
            "expected calibration error per window",
        ],
        horizontal_spacing=0.1,
    )
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="perfectly calibrated",
            line=dict(color="grey", dash="dot"),
        ),
        row=1,
        col=1,
    )
    for learner in learners:
        c = curve[curve.learner == learner].sort_values("confidence")
        if not c.empty:
            fig.add_trace(
                go.Scatter(
                    x=c.confidence,
                    y=c.frequency,
                    mode="lines+markers",
                    name=learner,
                    legendgroup=learner,
                    line=dict(color=palette.get(learner)),
                    customdata=c["count"],
                    hovertemplate="confidence %{x:.2f}: right "
                    "%{y:.1%} of %{customdata:,}<extra>" + learner + "</extra>",
                ),
                row=1,
                col=1,
            )
        s = summary[summary.learner == learner].sort_values("window_end")
        if not s.empty:
            fig.add_trace(
                go.Scatter(
                    x=s.window_end,
                    y=s.ece,
                    mode="lines+markers",
                    name=f"{learner} ECE",
                    legendgroup=learner,
                    showlegend=c.empty,
                    line=dict(color=palette.get(learner)),
                    customdata=s.brier,
                    hovertemplate="ECE %{y:.3f} (Brier %{customdata:.3f}) up to event "
                    "%{x:,}<extra>" + learner + "</extra>",
                ),
                row=1,
                col=2,
            )
    fig.update_xaxes(title_text="predicted probability", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="observed frequency", range=[0, 1], row=1, col=1)
    fig.update_xaxes(title_text="event (end of window)", row=1, col=2)
    fig.update_yaxes(title_text="ECE", rangemode="tozero", row=1, col=2)
    return _layout(fig, title, height=400)


def feature_drift(drift: pd.DataFrame, statistic: str = "psi") -> go.Figure:
    """A heatmap of a per-feature drift statistic over windows: columns feature, seq (last
    event of the window), window, psi, ks, ks_pvalue."""
    title = f"Feature drift: {statistic.upper()} of each feature per window"
    if drift.empty:
        return message(
            title,
            "no feature drift computed in this run: feature (data) drift is "
            "watched when the config's drift section enables it",
        )
    table = drift.pivot_table(index="feature", columns="seq", values=statistic, aggfunc="last")
    fig = go.Figure(
        go.Heatmap(
            z=table.to_numpy(),
            x=list(table.columns),
            y=list(table.index),
            colorscale="YlOrRd",
            zmin=0,
            # Calm features stay pale: the scale reaches at least the usual alarm levels
            # (PSI 0.2 or more is a shift worth a look; so is a KS statistic of 0.2).
            zmax=max(0.25, float(np.nanmax(table.to_numpy()))),
            colorbar=dict(title=statistic.upper()),
            hovertemplate="%{y} up to event %{x:,}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="event (end of window)")
    return _layout(fig, title, height=max(260, 90 + 22 * len(table.index)))


#: the width (px) a table is drawn at, and the width of one character of its text, for the height
TABLE_PX, CHAR_PX = 1100, 7.0
LINE_PX = 17


def _table_height(frame: pd.DataFrame, widths: list[float] | None) -> int:
    """Tall enough for every row's wrapped text: Plotly grows a row to fit its text but not the
    figure, which would cut the last rows off."""
    shares = widths or [1.0] * len(frame.columns)
    columns_px = [TABLE_PX * w / sum(shares) - 16 for w in shares]
    lines = [
        max(
            1,
            *(
                -(-len(str(v)) * CHAR_PX // px)
                for v, px in zip(row, columns_px, strict=True)
            ),
        )
        for row in frame.itertuples(index=False)
    ]
    header = max(-(-len(str(c)) * CHAR_PX // px) for c, px in zip(frame.columns, columns_px, strict=True))
    return int(70 + 40 + LINE_PX * header + sum(10 + LINE_PX * n for n in lines))


def _table(title: str, frame: pd.DataFrame, widths: list[float] | None = None) -> go.Figure:
    fig = go.Figure(
        go.Table(
            columnwidth=widths,
            header=dict(
                values=[f"<b>{c}</b>" for c in frame.columns], fill_color="#eef", align="left"
            ),
            cells=dict(values=[frame[c].tolist() for c in frame.columns], align="left", height=26),
        )
    )
    return _layout(fig, title, height=_table_height(frame, widths))


def _num(value, fmt: str = "{:.4f}") -> str:
    return "–" if value is None or pd.isna(value) else fmt.format(value)


def ab_table(ab: pd.DataFrame) -> go.Figure:
    """The A/B verdicts, one row per pair: columns a, b, metric, n, a_value, b_value, diff,
    ci_low, ci_high, mcnemar_statistic, mcnemar_pvalue, verdict."""
    title = "A/B: is one learner better than the other?"
    if ab.empty:
        return message(title, "an A/B comparison needs two learners in the run")
    rows = pd.DataFrame(
        {
            "A vs B": ab.a + " vs " + ab.b,
            "metric": ab.metric,
            "n": [_num(v, "{:,.0f}") for v in ab.n],
            "A": [_num(v) for v in ab.a_value],
            "B": [_num(v) for v in ab.b_value],
            "A − B (95% CI)": [
                f"{_num(d, '{:+.4f}')} [{_num(lo, '{:+.4f}')}, {_num(hi, '{:+.4f}')}]"
                for d, lo, hi in zip(ab["diff"], ab.ci_low, ab.ci_high, strict=True)
            ],
            "McNemar p": [pvalue_text(v) for v in ab.mcnemar_pvalue],
            "verdict": ab.verdict,
        }
    )
    return _table(title, rows, widths=[1.4, 0.8, 0.7, 0.7, 0.7, 1.6, 0.8, 3.2])


QUALITY_COUNTS = {
    "n_events": "events",
    "n_dead_letters": "dead letters",
    "n_duplicates": "duplicates",
    "n_late": "late",
    "n_unlabelled": "unlabelled",
    "n_orphan_labels": "orphan labels",
}


def data_quality(runs: pd.DataFrame) -> go.Figure:
    """The replay's data-quality counts, one row per run (columns of the ``runs`` table)."""
    title = "Data quality: what the replay could not use as it was"
    if runs.empty:
        return message(title, "no runs")
    rows = pd.DataFrame({"run": runs.run_id + " (" + runs.name + ")"})
    for col, label in QUALITY_COUNTS.items():
        rows[label] = [_num(v, "{:,.0f}") for v in runs[col]] if col in runs else "–"
    return _table(title, rows, widths=[2.4] + [1] * len(QUALITY_COUNTS))
