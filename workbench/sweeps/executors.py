"""Where the runs of a sweep execute: local processes, or a Ray cluster.

Both take tasks and yield ``(task, error)`` as runs end (error None when the worker returned);
what the run recorded is in its shard. A worker that dies takes only its own run with it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import wait

from workbench.sweeps.worker import Task, run_task

Started = Callable[[Task, int | None], None]


class LocalProcesses:
    """One process per run, at most ``workers`` at a time. Processes fork from a forkserver that
    has imported the workbench (and the ``preload`` modules, e.g. the sweep's learners) once, so
    a run starts in milliseconds, and a killed process is one failed run rather than a broken
    pool (as a ProcessPoolExecutor would become). As with any multiprocessing start method but
    fork, a script that starts a sweep needs an ``if __name__ == "__main__":`` guard."""

    name = "processes"

    def __init__(self, workers: int | None = None, preload: list[str] | None = None):
        self.workers = workers or os.cpu_count() or 1
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(["workbench.experiment", "workbench.sweeps.worker", *(preload or [])])

    def run(self, tasks: Iterable[Task], started: Started) -> Iterator[tuple[Task, str | None]]:
        pending = list(tasks)[::-1]
        active: dict[int, tuple[mp.Process, Task]] = {}
        try:
            while pending or active:
                while pending and len(active) < self.workers:
                    task = pending.pop()
                    proc = self.ctx.Process(target=run_task, args=(task,), name=f"workbench-sweep-{task.key}")
                    proc.start()
                    active[proc.sentinel] = (proc, task)
                    started(task, proc.pid)
                for sentinel in wait(list(active)):
                    proc, task = active.pop(sentinel)
                    proc.join()
                    yield task, None if proc.exitcode == 0 else _exit_reason(proc.pid, proc.exitcode)
        finally:
            for proc, _ in active.values():  # interrupted: the runs still going stop too
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
                    proc.join()

    def close(self) -> None:
        pass


def _exit_reason(pid: int | None, code: int | None) -> str:
    if code is not None and code < 0:
        return f"worker {pid} was killed by {signal.Signals(-code).name}"
    return f"worker {pid} exited with code {code}"


class RayCluster:
    """Runs as Ray tasks (one CPU each, no retries: a crashed run is reported, not rerun).

    ``address=None`` starts a local cluster of ``workers`` CPUs (default: all cores) and shuts it
    down after; an address joins a running cluster, whose nodes must see the record folder (a
    shared file system), as every run writes its shard there."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        try:
            import ray
        except ImportError:
            from workbench.errors import WorkbenchError

            raise WorkbenchError(
                "--ray needs Ray: pip install 'online-learning-workbench[ray]' (or pip install ray)"
            ) from None
        self.ray = ray
        self.owned = not ray.is_initialized()
        if self.owned:
            if address is None:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        self.remote = ray.remote(num_cpus=1, max_retries=0)(run_task)

    def run(self, tasks: Iterable[Task], started: Started) -> Iterator[tuple[Task, str | None]]:
        refs = {}
        for task in tasks:
            refs[self.remote.remote(task)] = task
            started(task, None)
        try:
            while refs:
                done, _ = self.ray.wait(list(refs), num_returns=1)
                task = refs.pop(done[0])
                try:
                    self.ray.get(done[0])
                    yield task, None
                except self.ray.exceptions.RayError as exc:
                    yield task, _ray_reason(exc)
        finally:
            for ref in refs:
                self.ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()


def _ray_reason(exc: Exception) -> str:
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}"
