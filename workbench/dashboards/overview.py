"""What a run was, and what went wrong, at a glance: the head of each run in the report.

Its config in words (source, delays, learners, detectors), its summary, how its drift detectors
did against the true drifts, and the commonest reasons records were set aside: HTML tables that
wrap rather than clip, numbers formatted one way.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from workbench.drift.scoring import DELAYS_NOTE
from workbench.store import Store

#: dead-letter reasons listed per run
TOP_REASONS = 5



def _spec(spec: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in (spec.get("params") or {}).items())
    return f"{spec.get('model', '?')}({params})"


def _prep(prep: Any) -> str:
    if prep == "auto":
        return " after preprocessing: auto (numbers scaled, text one-hot encoded)"
    return "".join(f" after {p if isinstance(p, str) else _spec(p)}" for p in prep or [])


def config_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The config as (what, how) pairs a person reads top to bottom."""
    source = config.get("source") or {}
    what = source.get("generator") or source.get("name") or source.get("path") or source.get("topics") or ""
    where = f"{source.get('kind')} {what}".strip()
    if source.get("n"):
        where += f", {source['n']:,} events"
    if source.get("drifts"):
        where += "; drifts at " + ", ".join(f"{d['at']:,} (width {d.get('width', 1):,})" for d in source["drifts"])
    if (source.get("labels") or {}).get("path") or (source.get("labels") or {}).get("topic"):
        labels = source["labels"]
        where += f"; labels from {labels.get('path') or labels.get('topic')} joined on {labels.get('id')}"
    replay = config.get("replay") or {}
    timing = [f"label delay {replay.get('label_delay', 0)}"]
    if source.get("kind") in ("kafka_dump", "kafka"):  # event-time order only matters there
        timing.append(f"allowed lateness {replay['allowed_lateness']} (later events: {replay.get('late')})")
    if (replay.get("batch_size") or 1) > 1:
        timing.append(f"mini-batches of {replay['batch_size']:,}")
    rows = [("source", where), ("replay", "; ".join(timing))]
    for lc in config.get("learners") or []:
        rows.append((f"learner {lc.get('name')}", _spec(lc) + _prep(lc.get("preprocessing"))))
    for bc in config.get("baselines") or []:
        refit = ""
        if bc.get("refit_every"):
            window = f"{bc['window']:,}" if bc.get("window") else "all"
            refit = f", refit every {bc['refit_every']:,} on the last {window}"
        rows.append(
            (f"baseline {bc.get('name')}", f"{_spec(bc)}{_prep(bc.get('preprocessing'))}, "
             f"fit on the first {bc.get('fit_on_first', 1000):,} labels{refit}")
        )
    for d in config.get("drift") or []:
        if d.get("detector"):
            who = ", ".join(d["learners"]) if d.get("learners") else "every learner"
            rows.append(("drift detector", f"{_spec({'model': d['detector'], 'params': d.get('params')})} "
                                           f"on {d.get('on', 'error')} of {who}; action {d.get('action', 'none')}"))
        if d.get("features"):
            rows.append(("feature drift", f"PSI and KS per {d['features'].get('window', 1000):,} events"))
    if config.get("checkpoints"):
        cp = config["checkpoints"]
        rows.append(("checkpoints", f"every {cp.get('every') or '–'} updates, keep {cp.get('keep')}"))
    if config.get("guard"):
        g = config["guard"]
        rows.append(("guard", f"roll back when rolling {g['metric']} over {g['window']:,} drops {g['drop']}"))
    return rows


def dead_letter_reasons(store: Store, run_id: str, top: int = TOP_REASONS) -> pd.DataFrame:
    """The commonest reasons records were set aside (reasons alike but for their numbers, such as
    times and offsets, count as one): an example reason, how many records, the first origin."""
    return store.sql(
        "SELECT first(reason ORDER BY rowid) AS reason, count(*) AS records, "
        "first(origin ORDER BY rowid) AS \"first origin\" FROM dead_letters WHERE run_id = ? "
        "GROUP BY regexp_replace(reason, '[0-9]+', '#', 'g') ORDER BY records DESC, reason LIMIT ?",
        [run_id, top],
    )


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return html.escape(str(value))


def table(frame: pd.DataFrame, css: str = "summary") -> str:
    """An HTML table that wraps long text instead of clipping it; numbers with thousands separators."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v.item() if hasattr(v, 'item') else v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table class={css}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The run's summary with latencies in µs to one decimal and metrics to four."""
    out = summary.copy()
    for col in out.columns:
        if col in ("predict_us", "learn_us"):
            out[col] = out[col].map(lambda v: "–" if pd.isna(v) else f"{v:,.1f}")
        elif col not in ("events", "labelled", "events_per_s") and out[col].dtype.kind == "f":
            out[col] = out[col].map(lambda v: "–" if pd.isna(v) else f"{v:.4f}")
    return out


def head(store: Store, run_id: str, config: dict[str, Any]) -> str:
    """The HTML a run's section starts with."""
    parts = ["<h3>Config</h3>", "<table class=config>"]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in config_rows(config)]
    parts.append("</table>")
    parts += ["<h3>Summary</h3>", table(summary_frame(store.summary(run_id)))]
    scores = store.drift_scores(run_id)
    if not scores.empty:
        parts += ["<h3>Drift detectors against the true drifts</h3>", table(scores.drop(columns="delays")),
                  f"<p class=meta>{html.escape(DELAYS_NOTE)}</p>"]
    reasons = dead_letter_reasons(store, run_id)
    if not reasons.empty:
        parts += [f"<h3>Top {len(reasons)} dead-letter reasons</h3>", table(reasons, "summary reasons")]
    return "".join(parts)
