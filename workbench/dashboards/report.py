"""One standalone HTML file with the dashboard's panels for each run, readable offline:
plotly.js is inlined once, nothing is fetched from a CDN."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

from plotly.offline import get_plotlyjs

from workbench import __version__
from workbench.dashboards import overview
from workbench.dashboards.panels import PANELS, View, build, open_store
from workbench.store import Store

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; }
h1 { font-size: 22px; }
h2 { font-size: 18px; margin-top: 36px; border-top: 1px solid #ddd; padding-top: 16px; }
.meta { color: #666; font-size: 13px; } .panel { margin: 12px 0; }
h3 { font-size: 14px; margin: 16px 0 6px; }
table.summary, table.config { border-collapse: collapse; font-size: 13px; }
table.summary td, table.summary th {
    padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; overflow-wrap: anywhere; }
table.summary th { white-space: nowrap; }
table.summary td:first-child, table.summary th:first-child, table.reasons td, table.reasons th { text-align: left; }
table.reasons td:nth-child(2) { text-align: right; }
table.config th { text-align: left; padding: 2px 12px 2px 0; color: #555; font-weight: 600;
    white-space: nowrap; vertical-align: top; }
table.config td { padding: 2px 0; overflow-wrap: anywhere; }
"""


def report(
    db_or_run=None,
    runs: list[str] | None = None,
    output: str | Path = "report.html",
    metric: str | None = None,
    window: int | None = None,
) -> Path:
    """Write the panels of ``runs`` (default: every run in the database; a Run alone: that run)
    to ``output`` as one HTML file that works offline. Returns the path written."""
    opened, runs = open_store(db_or_run, runs)
    with opened.session() as store:
        sections = [
            _section(store, i, run_id, metric, window)
            for i, run_id in enumerate(runs or store.runs().run_id.tolist())
        ]
    if not sections:
        sections.append(f"<p>No runs in {html.escape(store.path)} yet.</p>")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Workbench report</title>"
        f"<style>{_STYLE}</style><script type='text/javascript'>{get_plotlyjs()}</script>"
        f"</head><body>"
        f"<h1>Online Learning Workbench report</h1><p class=meta>{html.escape(store.path)} · "
        f"generated {generated} · workbench {__version__}</p>{''.join(sections)}</body></html>"
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    return output


def _section(store: Store, i: int, run_id: str, metric: str | None, window: int | None) -> str:
    """One run's heading, summary table and panels."""
    info = store.run(run_id)
    view = View.of(store, run_id, metric=metric, window=window)
    figures = build(store, view)
    divs = "\n".join(
        f'<div class="panel" data-panel="{name}">'
        + figures[name].to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"run{i}-{name}",
            config={"displaylogo": False, "responsive": True},
        )
        + "</div>"
        for name in PANELS
    )
    return (
        f'<section class="run" data-run="{html.escape(run_id)}">'
        f"<h2>{html.escape(info['name'])} <span class=meta>run {html.escape(run_id)} · "
        f"{info['status']} · {info['task']} · {info['n_events']:,} events</span></h2>"
        f"{overview.head(store, run_id, info['config'])}\n{divs}</section>"
    )
