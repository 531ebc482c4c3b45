"""The coordinator: expand the sweep, hand its runs to an executor, merge each finished run into
the main record, race if asked. Re-running a sweep skips the runs it already finished (resume)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.store import DEFAULT_DB, Store
from workbench.store.sweeps import SweepRecord, now, read_shard
from workbench.sweeps.config import RunSpec, SweepConfig, load, rungs
from workbench.sweeps.executors import LocalProcesses, RayCluster
from workbench.sweeps.worker import Task


@dataclass
class Sweep:
    """A sweep as recorded in its DuckDB file."""

    id: str
    store: Store
    status: str = "finished"

    def leaderboard(self) -> pd.DataFrame:
        return self.store.leaderboard(self.id)

    def runs(self) -> pd.DataFrame:
        return self.store.sweep_runs(self.id)

    def __repr__(self) -> str:
        return f"Sweep(id={self.id!r}, status={self.status!r}, db={self.store.path!r})"


def plan(cfg: SweepConfig) -> pd.DataFrame:
    """The expanded runs, one row each: what ``--dry-run`` prints."""
    rows = []
    for run in cfg.runs:
        budgets = rungs(cfg.racing, run.config["source"]["n"]) if cfg.racing else [run.config["source"].get("n")]
        rows.append(
            {
                "run": run.index,
                **run.params,
                "events": " → ".join(f"{b:,}" if b else "all" for b in budgets),
                "key": run.key,
            }
        )
    return pd.DataFrame(rows)


def modules(cfg: SweepConfig) -> list[str]:
    """The modules of the sweep's models (already checked to resolve from the allow-list)."""
    names = set()
    for run in cfg.runs:
        specs = [*run.config["learners"], *run.config["baselines"]]
        names |= {s["model"] for s in specs} | {p["model"] for s in specs for p in s["preprocessing"]}
        names |= {d["detector"] for d in run.config["drift"] if d.get("detector")}
    return sorted({name.rsplit(".", 1)[0] for name in names})


def default_record(db: str | Path) -> Path:
    """Shards go beside the database: runs/workbench.duckdb → runs/workbench.sweeps/."""
    db = Path(db)
    return db.parent / f"{db.stem}.sweeps"


def sweep(
    config: str | Path | dict,
    workers: int | None = None,
    ray: bool = False,
    ray_address: str | None = None,
    db: str | Path | None = None,
    record: str | Path | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
) -> Sweep:
    """Run every configuration of a sweep file in parallel (local processes by default, Ray with
    ``ray=True`` or ``ray_address``); each run lands in ``db`` as an ordinary run, listed in
    ``sweep_runs``. Runs already finished by an earlier call are skipped."""
    cfg = load(config, overrides)
    db = Path(db or DEFAULT_DB)
    folder = Path(record) if record else default_record(db)
    folder = folder / cfg.name
    coordinator = _Coordinator(cfg, SweepRecord(db), folder, progress)
    executor = RayCluster(ray_address, workers) if (ray or ray_address) else LocalProcesses(workers, modules(cfg))
    status = "failed"
    try:
        coordinator.record.begin(cfg.name, cfg.raw, cfg.objective, executor.name, len(cfg.runs), str(folder))
        coordinator.run(executor)
        status = "finished" if coordinator.n_failed == 0 else "failed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        executor.close()
        coordinator.close(status)
    return Sweep(cfg.name, Store(db), status)


class _Coordinator:
    def __init__(self, cfg: SweepConfig, record: SweepRecord, folder: Path, progress: bool):
        self.cfg, self.record, self.folder, self.progress = cfg, record, folder, progress
        self.rows: dict[tuple[str, int], dict[str, Any]] = {
            (r["run_key"], int(r["rung"])): r for r in record.rows(cfg.name).to_dict("records")
        }
        self.specs = {run.key: run for run in cfg.runs}
        self.started: set[tuple[str, int]] = set()
        self.n_failed = 0
        self.n_done = 0

    def run(self, executor) -> None:
        if self.cfg.racing is None:
            self._rung(executor, self.cfg.runs, 0, None)
            return
        shortest = min(run.config["source"]["n"] for run in self.cfg.runs)
        budgets = rungs(self.cfg.racing, shortest)
        alive = list(self.cfg.runs)
        for rung, budget in enumerate(budgets):
            final = rung == len(budgets) - 1
            self._rung(executor, alive, rung, None if final else budget)
            if final:
                break
            raced, alive = len(alive), self._survivors(alive, rung)
            self.record.promote(self.cfg.name, rung, [run.key for run in alive])
            self._say(
                f"rung {rung} ({budget:,} events): kept {len(alive)} of {raced}: "
                + ", ".join(run.label for run in alive)
            )

    def _rung(self, executor, runs: list[RunSpec], rung: int, budget: int | None) -> None:
        todo = [run for run in runs if self.rows.get((run.key, rung), {}).get("status") != "finished"]
        skipped = len(runs) - len(todo)
        if skipped:
            self._say(f"{skipped} of {len(runs)} runs already finished{f' at rung {rung}' if rung else ''}: skipped")
        self.total = len(todo)
        self.n_done = 0
        tasks = [self._task(run, rung, budget) for run in todo]
        for task, error in executor.run(tasks, self._started):
            self._ended(task, error, budget)

    def _task(self, run: RunSpec, rung: int, budget: int | None) -> Task:
        config = copy.deepcopy(run.config)
        if budget is not None:
            config["source"]["n"] = budget
        name = f"{run.key}-r{rung}.duckdb" if self.cfg.racing else f"{run.key}.duckdb"
        return Task(key=run.key, rung=rung, config=config, shard=str(self.folder / name))

    def _row(self, task: Task) -> dict[str, Any]:
        spec = self.specs[task.key]
        return {
            "sweep_id": self.cfg.name,
            "run_key": task.key,
            "rung": task.rung,
            "budget": task.config["source"].get("n"),
            "idx": spec.index,
            "label": spec.label,
            "params": spec.params,
            "config": task.config,
            "shard": task.shard,
            "promoted": False,
        }

    def _started(self, task: Task, pid: int | None) -> None:
        row = {**self._row(task), "status": "running" if pid else "queued", "pid": pid, "started_at": now()}
        self.record.put(row)
        self.rows[(task.key, task.rung)] = row
        self.started.add((task.key, task.rung))

    def _ended(self, task: Task, error: str | None, budget: int | None) -> None:
        row = {**self.rows[(task.key, task.rung)], "finished_at": now()}
        run = read_shard(task.shard)
        if run is not None:
            row.update(run_id=run["run_id"], n_events=run["n_events"], elapsed_s=run["elapsed_s"])
        if error is None and run is not None and run["status"] == "finished":
            learner = self.cfg.objective.learner or next(iter(run["learners"]))
            metrics = run["learners"].get(learner, {})
            row.update(status="finished", metrics=metrics, objective=metrics.get(self.cfg.objective.metric), shard=None)
            self.record.put(row, shard=task.shard)
            Path(task.shard).unlink(missing_ok=True)  # its rows are in the main record now
        else:
            row.update(
                status="interrupted" if run is not None and run["status"] == "interrupted" else "failed",
                error=_error_text(task, error, run),
            )
            self.record.put(row)
            self.n_failed += 1
        self.rows[(task.key, task.rung)] = row
        self.n_done += 1
        result = (
            f"{self.cfg.objective.metric} {row['objective']:.4f}"
            if row.get("objective") is not None
            else row["status"] + (f": {row['error']}" if row.get("error") else "")
        )
        self._say(f"[{self.n_done}/{self.total}] {self.specs[task.key].label}: {result}")

    def _survivors(self, alive: list[RunSpec], rung: int) -> list[RunSpec]:
        """The best ceil(n/eta) of the runs that finished the rung (failed runs are out)."""
        scored = [
            (self.rows[(run.key, rung)].get("objective"), run)
            for run in alive
            if self.rows.get((run.key, rung), {}).get("status") == "finished"
        ]
        scored = [(value, run) for value, run in scored if value is not None and not math.isnan(value)]
        scored.sort(key=lambda item: (-item[0] if self.cfg.objective.mode == "max" else item[0], item[1].index))
        keep = max(1, math.ceil(len(alive) / self.cfg.racing.eta))
        return [run for _, run in scored[:keep]]

    def _say(self, line: str) -> None:
        if self.progress:
            print(line, flush=True)

    def close(self, status: str) -> None:
        cut = [where for where in self.started if self.rows[where]["status"] in ("running", "queued")]
        for where in cut:  # runs an interruption cut short
            self.record.put({**self.rows[where], "status": "interrupted"})
        if status == "interrupted":
            done = sum(row.get("status") == "finished" for row in self.rows.values())
            self._say(
                f"sweep {self.cfg.name} interrupted: {done} finished runs kept, {len(cut)} cut short; "
                "run it again to resume"
            )
        self.record.finish(self.cfg.name, status)


def _error_text(task: Task, error: str | None, run: dict | None) -> str:
    if task.error_file.exists():
        return task.error_file.read_text().splitlines()[0]
    if run is not None and run.get("error"):
        return str(run["error"])
    return error or "the run did not finish"
