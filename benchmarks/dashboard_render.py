"""How long the dashboard of a run of 1,000,000 steps per learner takes to draw (target < 2 s).

The steps are written straight into DuckDB (replaying 3M updates would take minutes and is not
what is measured). Three timings, each the best of a few tries after one warm-up:
  panels   - every panel's DuckDB aggregation and Plotly figure (what a refresh does)
  dashboard - wb.dashboard(db): pickers, FigureWidgets and all panels drawn
  report   - wb.report(...): the standalone HTML file written
and, when Chromium and Playwright are installed, the report opened in headless Chromium until
every panel has drawn. Run: .venv/bin/python benchmarks/dashboard_render.py [--steps N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import duckdb

import workbench as wb
from workbench.dashboards.panels import View, build
from workbench.store import schema

LEARNERS = ["logreg", "hat", "naive_bayes"]
TARGET_S = 2.0


def make_run(path: Path, n: int) -> str:
    """A finished 3-learner run of ``n`` events with drifts and checkpoints, written in SQL."""
    run_id = "bench-1m"
    config = {
        "name": "bench",
        "learners": [{"name": name} for name in LEARNERS],
        "rolling_window": 1000,
    }
    con = duckdb.connect(str(path))
    schema.create(con)
    con.execute(
        "INSERT INTO runs (run_id, name, status, config, created_at, n_events, task) "
        "VALUES (?, 'render-benchmark', 'finished', ?, now(), ?, 'binary')",
        [run_id, json.dumps(config), n],
    )
    for i, learner in enumerate(LEARNERS):
        # Accuracy falls after each drift and recovers; versions change every 100,000 events.
        con.execute(
            f"""
            INSERT INTO steps
            SELECT $run, $learner, s, TIMESTAMPTZ '2026-01-01' + to_seconds(s), y::VARCHAR,
                   (CASE WHEN c THEN y ELSE 1 - y END)::VARCHAR, p, c,
                   CASE WHEN c THEN -ln(p) ELSE -ln(1 - p) END,
                   2 + 40 * random() ^ 4, 5 + 80 * random() ^ 4, (s // 100000)::INTEGER
            FROM (SELECT range AS s, (random() < 0.5)::INTEGER AS y,
                         random() < 0.6 + {0.1 * i}
                                     + 0.25 * least(1, (range % 250000) / 50000.0) AS c,
                         0.5 + 0.49 * random() AS p
                  FROM range({n}))
        """,
            {"run": run_id, "learner": learner},
        )
        con.execute(
            "INSERT INTO learners VALUES (?, ?, 'online', 'river.x', '{}', ?, ?, '{}', 5, 10)",
            [run_id, learner, n, n],
        )
        con.execute(
            "INSERT INTO checkpoints SELECT ?, ?, v, v * 100000, now(), 'scheduled', '{}', '', "
            "''::BLOB FROM range(1, ?) t(v)",
            [run_id, learner, n // 100000],
        )
    con.executemany(
        "INSERT INTO true_drifts VALUES (?, ?, 1)", [[run_id, s] for s in range(250000, n, 250000)]
    )
    con.close()
    return run_id


def best(fn, tries: int = 3) -> float:
    fn()  # warm-up: imports, DuckDB's first open of the file
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def browser_seconds(report: Path) -> float | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    chromium = next(
        (p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if Path(p).exists()), None
    )
    if chromium is None:
        return None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page()
        started = time.perf_counter()
        page.goto(report.as_uri())
        page.wait_for_function(
            "document.querySelectorAll('.js-plotly-plot .main-svg').length >= "
            "document.querySelectorAll('.panel').length",
            timeout=60_000,
        )
        elapsed = time.perf_counter() - started
        browser.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="steps per learner")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        started = time.perf_counter()
        run_id = make_run(db, args.steps)
        print(
            f"wrote {len(LEARNERS)} x {args.steps:,} steps in {time.perf_counter() - started:.1f} s"
        )
        store = wb.connect(str(db))
        view = View.of(store, run_id)
        figures = build(store, view)
        points = max(
            len(trace.x)
            for fig in figures.values()
            for trace in fig.data
            if getattr(trace, "x", None) is not None
        )
        panels = best(lambda: build(store, View.of(store, run_id)))

        def dashboard():
            wb.dashboard(str(db), live=False).close()

        shown = best(dashboard)
        report = Path(tmp) / "report.html"
        written = best(lambda: wb.report(str(db), output=report))
        in_browser = browser_seconds(report)
        print(f"most points in one trace: {points:,}")
        print(
            f"panels:    {panels:.2f} s  ({panels / TARGET_S:.2f} of the {TARGET_S:.0f} s target)"
        )
        print(f"dashboard: {shown:.2f} s  ({shown / TARGET_S:.2f} of the {TARGET_S:.0f} s target)")
        print(
            f"report:    {written:.2f} s  ({written / TARGET_S:.2f} of the {TARGET_S:.0f} s "
            f"target), {report.stat().st_size / 1e6:.1f} MB"
        )
        if in_browser is not None:
            print(f"report drawn in Chromium: {in_browser:.2f} s")


if __name__ == "__main__":
    main()
