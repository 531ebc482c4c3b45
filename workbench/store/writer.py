"""The only writer: appends a run's steps to DuckDB in Arrow batches, from a thread of its own.

The thread owns the connection, so converting to Arrow and inserting (DuckDB releases the GIL)
overlap with the replay instead of stalling it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from workbench.events import DeadLetter, StepBatch, TrueDrift
from workbench.store import schema, snapshot
from workbench.versioning import Checkpoint

#: DuckDB memory of the writer's connection (it only appends), in MB
WRITER_MEMORY_MB = 64
#: the write-ahead log size at which the writer checkpoints it into the file (DuckDB's default: 16MB)
CHECKPOINT_BYTES = 4 << 20
#: DuckDB memory while it checkpoints, in MB (its own default: 80% of RAM). A checkpoint rewrites
#: a table's last row group whole and pins it: for ``checkpoints`` that is every model state the
#: file holds, which soon outgrows WRITER_MEMORY_MB (a few runs of a forest), and a checkpoint
#: that fails leaves the database unusable for the rest of the process
CHECKPOINT_MEMORY_MB = max(WRITER_MEMORY_MB, int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8) >> 20)
#: steps handed over wait for a whole row group of the writer's file (schema.ROW_GROUP_SIZE:
#: appended ~2x cheaper a row), but no longer than this, in seconds
STEPS_WAIT = 1.0


_MIXED = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError)


class Labels:
    """Labels and predictions as text in one vocabulary, the stream's own.

    River's binary classifiers answer True/False whatever the labels were (0/1 for most
    streams): such predictions are written as the labels are ('1'/'0'), so ``y_true = y_pred``
    holds in SQL. The label type is learnt from the first labels written and kept for steps
    whose label never came.
    """

    #: what a stream's label type is called in feature_schema
    KINDS = {"bool": "boolean", "int": "number", "float": "number", "double": "number", "string": "string"}

    def __init__(self) -> None:
        self.type: pa.DataType | None = None

    @property
    def kind(self) -> str | None:
        """boolean, number or string (None until a label was seen, or for mixed types)."""
        if self.type is None:
            return None
        name = "int" if pa.types.is_integer(self.type) else str(self.type)
        return self.KINDS.get(name)

    def text(self, y_true: list, y_pred: list) -> tuple[pa.Array, pa.Array]:
        true, pred = _typed(y_true), _typed(y_pred)
        if self.type is None and true is not None and not pa.types.is_null(true.type):
            self.type = true.type
        numeric = self.type is not None and (pa.types.is_integer(self.type) or pa.types.is_floating(self.type))
        if numeric and pred is not None and pa.types.is_boolean(pred.type):
            pred = pred.cast(pa.int64())
        return _text(true, y_true), _text(pred, y_pred)


def _typed(values: list) -> pa.Array | None:
    try:
        return pa.array(values)
    except _MIXED:
        return None


def _text(typed: pa.Array | None, values: list) -> pa.Array:
    """Labels as text: one Arrow cast when the labels share a type, else str() each."""
    try:
        return typed.cast(pa.string())
    except (*_MIXED, AttributeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _times(values: list) -> pa.Array:
    array = pa.array(values)
    if pa.types.is_null(array.type):
        return array.cast(pa.timestamp("us", tz="UTC"))
    if pa.types.is_timestamp(array.type):
        return array.cast(pa.timestamp("us", tz=array.type.tz or "UTC"))
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def steps_table(batch: StepBatch, labels: Labels | None = None) -> pa.Table:
    """The batch as Arrow columns (run_id and learner are added by the INSERT)."""
    cols = batch.columns()
    times = cols["event_time"]
    y_true, y_pred = (labels or Labels()).text(cols["y_true"], cols["y_pred"])
    no_times = times.count(None) == len(times) if isinstance(times, list) else False
    return pa.table(
        {
            "seq": pa.array(cols["seq"], pa.int64()),
            "event_time": pa.nulls(len(times), pa.timestamp("us", tz="UTC")) if no_times else _times(times),
            "y_true": y_true,
            "y_pred": y_pred,
            "y_proba": pa.array(cols["y_proba"], pa.float64()),
            "correct": pa.array(cols["correct"], pa.bool_()),
            "loss": pa.array(cols["loss"], pa.float64()),
            "predict_ns": pa.array(cols["predict_ns"], pa.int64()),
            "learn_ns": pa.array(cols["learn_ns"], pa.int64()),
            "model_version": pa.array(cols["model_version"], pa.int32()),
        }
    )


_INSERT_STEPS = (
    "INSERT INTO steps (run_id, learner, seq, event_time, y_true, y_pred, y_proba, correct, loss, "
    "predict_us, learn_us, model_version) SELECT $run_id, $learner, seq, event_time, y_true, y_pred, "
    "y_proba, correct, loss, predict_ns / 1000.0, learn_ns / 1000.0, model_version FROM arrow_steps"
)


def _idle() -> None:
    """The job of a writer with nothing queued: only the checks that follow every job."""


def now() -> datetime:
    return datetime.now(timezone.utc)


class RunWriter:
    """Writes one run: its row in ``runs``, then steps, dead letters and true drifts."""

    def __init__(self, path: str, run_id: str):
        self.path = path
        self.run_id = run_id
        self.n_steps = 0
        self.n_dead_letters = 0
        self.labels = Labels()
        #: per learner, what its row in ``learners`` sums up: [predictions, labels learned,
        #: predict ns, predict times, learn ns, learn times], counted as the steps are inserted
        self._tally: dict[str, list[int]] = {}
        # per learner, steps converted to Arrow and not yet inserted (the writer thread's own)
        self._steps: dict[str, list[pa.Table]] = {}
        self._steps_since: float | None = None  # when the oldest of them was handed over
        self._dead: list[DeadLetter] = []
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        self._con = None
        self._publisher: snapshot.Publisher | None = None
        # Connecting (~15 ms: DuckDB builds its catalog) happens on the writer's thread while
        # the replay starts. A database that another process holds is reported by the replay's
        # next call here (its first write comes within runner.FLUSH_SECONDS), as
        # DatabaseLockedError.
        self._thread = threading.Thread(target=self._work, name=f"workbench-writer-{run_id}", daemon=True)
        self._thread.start()

    # -- the thread ---------------------------------------------------------------------------
    def _open(self) -> None:
        con = schema.connect_writer(self.path)
        try:
            # One DuckDB thread: the replay needs the other core more than the insert does.
            con.execute("SET threads = 1")
            # Written pages are on disk: a small cache keeps the replay's memory flat however long
            # the stream (by default DuckDB caches them up to 80% of RAM; measured in
            # benchmarks/kafka_replay_memory.py).
            con.execute(f"SET memory_limit = '{WRITER_MEMORY_MB}MB'")
            # The writer checkpoints the log into the file itself as it grows (checkpoint_log), on
            # this thread, rather than most of it at close, where the replay waits (100k steps
            # close in ~1/2 the time, for the same CPU), and with the memory it takes: never DuckDB
            # on its own, within the writer's small memory limit.
            con.execute("SET checkpoint_threshold = '1TB'")
            schema.create(con)
            self._publisher = snapshot.Publisher(self.path, self.checkpoint_log)
        except BaseException:
            con.close()
            schema.release(self.path)
            raise
        self._con = con

    def _work(self) -> None:
        try:
            self._open()
        except BaseException as exc:  # nothing more can be written: the thread ends
            self._error = exc
            return
        while True:
            try:
                job = self._queue.get(timeout=snapshot.EVERY / 4)
            except queue.Empty:  # idle: steps may have waited long enough, a reader for a snapshot
                job = _idle
            if self._error is None:
                try:
                    if job is None:  # the end: every step still waiting goes in
                        self._insert_steps(whole_groups=False)
                        return
                    job()
                    if self._wal_bytes() > CHECKPOINT_BYTES:
                        self.checkpoint_log()
                    due = self._publisher.due()  # readers in other processes (store/snapshot.py)
                    waited = self._steps_since is not None and time.monotonic() - self._steps_since > STEPS_WAIT
                    if due or waited:
                        self._insert_steps(whole_groups=False)
                    if due:
                        self._publisher.publish()
                except BaseException as exc:  # handed to the replay thread at its next call
                    self._error = exc
            if job is None:
                return

    def _wal_bytes(self) -> int:
        try:
            return os.stat(self.path + ".wal").st_size
        except OSError:
            return 0

    def checkpoint_log(self) -> None:
        """Write the log into the file, with room to (CHECKPOINT_MEMORY_MB); the cache shrinks
        back to WRITER_MEMORY_MB after."""
        self._con.execute(f"SET memory_limit = '{CHECKPOINT_MEMORY_MB}MB'")
        try:
            self._con.execute("CHECKPOINT")
        finally:
            self._con.execute(f"SET memory_limit = '{WRITER_MEMORY_MB}MB'")

    def _submit(self, job: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(job)

    # -- what the replay calls ----------------------------------------------------------------
    def begin(
        self, name: str, config: dict[str, Any], task: str, seed: int, version: str, status: str = "running"
    ) -> None:
        row = [
            self.run_id, name, status, json.dumps(config, default=str), now(), task, seed, version,
            os.getpid(), socket.gethostname(),
        ]
        self._submit(
            lambda: self._con.execute(
                "INSERT INTO runs (run_id, name, status, config, created_at, task, seed, workbench_version, "
                "pid, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )

    def true_drifts(self, drifts: list[TrueDrift]) -> None:
        rows = [(d.seq, d.width) for d in drifts]
        if rows:
            self._submit(lambda: self._insert_rows("true_drifts", None, rows))

    def feature_schema(self, fields: list[dict[str, Any]]) -> None:
        rows = [(i, f["role"], f["name"], f["type"], f["nullable"], f["name_type"]) for i, f in enumerate(fields)]
        if rows:  # through Arrow: a record may hold millions of fields
            self._submit(lambda: self._insert_rows("feature_schema", None, rows))

    def checkpoint(self, cp: Checkpoint) -> None:
        row = [
            self.run_id,
            cp.learner,
            cp.version,
            cp.seq,
            now(),
            cp.reason,
            json.dumps(cp.metrics),
            cp.sha256,
            cp.state,
        ]
        self._submit(lambda: self._insert_checkpoint(row))

    def dead_letter(self, record: DeadLetter) -> None:
        self._dead.append(record)
        self.n_dead_letters += 1

    def late_events(self, rows: list[tuple]) -> None:
        """Late events replayed where they arrived: (seq, origin, event_time, behind timedelta)."""
        rows = [(self.run_id, seq, origin, time, behind.total_seconds()) for seq, origin, time, behind in rows]
        if rows:
            self._submit(lambda: self._con.executemany("INSERT INTO late_events VALUES (?, ?, ?, ?, ?)", rows))

    def write(self, batches: list[StepBatch]) -> None:
        """Each arm's steps for the same stretch of the stream, queued in one job: a snapshot
        (published between jobs) never holds one arm's steps without the others'."""
        stepped = [batch for batch in batches if len(batch)]
        if stepped:
            self.n_steps += sum(len(batch) for batch in stepped)
            self._submit(lambda: self._queue_steps(stepped))
        for batch in batches:
            self._write_history(batch)
        if self._dead:
            dead, self._dead = self._dead, []
            self._submit(lambda: self._insert_dead(dead))

    #: checkpoints kept per learner besides its final one (None: all); set from checkpoints.keep
    keep: int | None = None

    def _write_history(self, batch: StepBatch) -> None:
        """Drift events, rollbacks, refits and checkpoints the arm logged since its last batch."""
        for cp in batch.checkpoints:
            self.checkpoint(cp)
        if batch.checkpoints and self.keep is not None:
            self._submit(lambda learner=batch.learner: self._prune(learner))
        for table, rows in (
            ("drift_events", batch.drift_events),
            ("rollbacks", batch.rollbacks),
            ("refits", batch.refits),
        ):
            if rows:
                self._submit(lambda t=table, r=rows, lr=batch.learner: self._insert_rows(t, lr, r))

    @contextlib.contextmanager
    def _room(self, nbytes: int) -> Iterator[None]:
        """Room for an insert of ``nbytes`` of values: a dead letter's raw bytes or a checkpoint's
        state are kept whole, however large (a 50 MB record is no reason to lose it, nor the
        run); the cache shrinks back to its flat size after."""
        if nbytes < (WRITER_MEMORY_MB << 20) // 8:
            yield
            return
        self._con.execute(f"SET memory_limit = '{WRITER_MEMORY_MB + 4 * (nbytes >> 20) + 1}MB'")
        try:
            yield
        finally:
            self._con.execute(f"SET memory_limit = '{WRITER_MEMORY_MB}MB'")

    def _insert_checkpoint(self, row: list) -> None:
        with self._room(len(row[-1] or b"")):
            self._con.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def _insert_rows(self, table: str, learner: str | None, rows: list[tuple]) -> None:
        """Append rows (columns in the table's order after run_id and learner; without learner
        when it is None) through Arrow: DuckDB's executemany costs ~2 ms a row."""
        if table == "rollbacks":  # created_at sits between reason and new_version
            rows = [(*r[:4], now(), r[4]) for r in rows]
        arrow_rows = pa.table(  # noqa: F841 — read by DuckDB's replacement scan
            {f"c{i}": pa.array(column) for i, column in enumerate(zip(*rows, strict=True))}
        )
        head = "$run" if learner is None else "$run, $learner"
        params = {"run": self.run_id} | ({} if learner is None else {"learner": learner})
        self._con.execute(f"INSERT INTO {table} SELECT {head}, * FROM arrow_rows", params)

    def _prune(self, learner: str) -> None:
        """Keep the last ``keep`` checkpoints of a learner (its final one is always kept)."""
        self._con.execute(
            "DELETE FROM checkpoints WHERE run_id = $run AND learner = $learner "
            "AND reason <> 'final' AND version NOT IN (SELECT version FROM checkpoints "
            "WHERE run_id = $run AND learner = $learner AND reason <> 'final' "
            "ORDER BY version DESC LIMIT $keep)",
            {"run": self.run_id, "learner": learner, "keep": self.keep},
        )

    def served(self, rows: list[tuple]) -> None:
        """Served predictions joined with their labels (the ``served`` table's columns after run_id)."""
        if rows:
            self._submit(lambda: self._insert_rows("served", None, rows))

    def feature_drift(self, rows: list[tuple], alarms: list[tuple]) -> None:
        """Feature drift per window (feature, seq, window, psi, ks, ks_pvalue) and its alarms
        (drift_events rows with learner '')."""
        if rows:
            self._submit(lambda: self._insert_rows("feature_drift", None, rows))
        if alarms:
            self._submit(lambda: self._insert_rows("drift_events", "", alarms))

    def _queue_steps(self, batches: list[StepBatch]) -> None:
        """Convert the learners' steps to Arrow now, insert them once whole row groups are in."""
        for batch in batches:
            self._steps.setdefault(batch.learner, []).append(steps_table(batch, self.labels))
        if self._steps_since is None:
            self._steps_since = time.monotonic()
        self._insert_steps(whole_groups=True)

    def _insert_steps(self, whole_groups: bool) -> None:
        """Insert the waiting steps: all of them, or each learner's whole row groups."""
        for learner, tables in self._steps.items():
            n = sum(t.num_rows for t in tables)
            take = n - n % schema.ROW_GROUP_SIZE if whole_groups else n
            if not take:
                continue
            try:
                table = pa.concat_tables(tables)
            except pa.ArrowInvalid:  # event times as text in one batch, timestamps in another
                for t in tables:
                    self._append_steps(learner, t)
                tables.clear()
                continue
            self._append_steps(learner, table.slice(0, take))
            tables[:] = [table.slice(take)] if take < n else []
        waiting = any(self._steps.values())
        if not waiting or not whole_groups:
            self._steps_since = time.monotonic() if waiting else None

    def _append_steps(self, learner: str, arrow_steps: pa.Table) -> None:
        self._con.execute(_INSERT_STEPS, {"run_id": self.run_id, "learner": learner})
        n, tally = arrow_steps.num_rows, self._tally.setdefault(learner, [0] * 6)
        for i, column in enumerate(("y_pred", "y_true")):
            tally[i] += n - arrow_steps[column].null_count
        for i, column in ((2, "predict_ns"), (4, "learn_ns")):
            values = arrow_steps[column]
            tally[i] += pc.sum(values).as_py() or 0
            tally[i + 1] += n - values.null_count

    def _insert_dead(self, dead: list[DeadLetter]) -> None:
        arrow_dead = pa.table(  # noqa: F841 — read by DuckDB's replacement scan
            {
                "run_id": [self.run_id] * len(dead),
                "origin": [d.origin for d in dead],
                "reason": [d.reason for d in dead],
                "raw": pa.array([d.raw for d in dead], pa.binary()),
            }
        )
        with self._room(sum(len(d.raw or b"") for d in dead)):
            self._con.execute("INSERT INTO dead_letters SELECT * FROM arrow_dead")

    @property
    def broken(self) -> BaseException | None:
        """What stopped the writer's thread (a full disk...), if anything did."""
        return self._error

    def _record_end(self, status: str, counts: dict[str, int], elapsed_s: float, error: str | None) -> None:
        """The run's row: how it ended. Tried again on a fresh connection if the first one
        fails (DuckDB rolls a failed commit back, which frees what it took on a full disk)."""
        assignments = ", ".join(f"{k} = ?" for k in counts)
        query = f"UPDATE runs SET status = ?, finished_at = ?, elapsed_s = ?, error = ?, {assignments} WHERE run_id = ?"
        params = [status, now(), elapsed_s, error, *counts.values(), self.run_id]
        try:
            self._con.execute(query, params)
        except Exception:
            self._con.close()
            self._con = schema.connect(self.path)
            try:
                self._con.execute(query, params)
            except Exception as exc:
                print(
                    f"workbench: could not record in {self.path} that run {self.run_id} {status} "
                    f"({error or 'no error'}): {exc}; readers will show it as crashed",
                    file=sys.stderr,
                )

    def finish(
        self,
        status: str,
        counts: dict[str, int],
        learners: list[dict[str, Any]],
        elapsed_s: float,
        error: str | None = None,
    ) -> None:
        """Drain the queue, then record how the run ended. Always closes the connection.

        Per-learner counts and mean latencies are summed up from the steps' columns as they are
        inserted (a query over ``steps`` would scan every run the file holds), not in the replay loop.
        """
        try:
            if self._error is None:
                self.write([])
            if self._thread.is_alive():
                self._queue.put(None)
            self._thread.join()
            if self._con is None:  # it never connected: nothing to record the run in
                raise self._error
            if self._error is not None:
                # The writer broke (a full disk, most often): the run failed, and its row says
                # why. Steps written so far are kept; what was still queued is lost.
                reason = error or f"{type(self._error).__name__}: {self._error}"
                self._record_end("failed", counts, elapsed_s, reason)
                if status != "failed":
                    raise self._error
                return
            con = self._con
            for row in learners:
                n_pred, n_learned, predict_ns, n_predict, learn_ns, n_learn = self._tally.get(row["learner"], [0] * 6)
                predict_us = predict_ns / n_predict / 1000 if n_predict else None
                learn_us = learn_ns / n_learn / 1000 if n_learn else None
                con.execute(
                    "INSERT INTO learners VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        self.run_id,
                        row["learner"],
                        row["kind"],
                        row["model"],
                        json.dumps(row["spec"], default=str),
                        n_pred,
                        n_learned,
                        json.dumps(row["metrics"]),
                        predict_us,
                        learn_us,
                    ],
                )
            if self.labels.kind is not None:  # labels joined from another stream were not in the schema's sample
                con.execute(
                    "UPDATE feature_schema SET type = ? WHERE run_id = ? AND role = 'target' AND type = 'null'",
                    [self.labels.kind, self.run_id],
                )
            self._record_end(status, counts, elapsed_s, error)
        finally:
            if self._con is not None:
                with contextlib.suppress(Exception):  # what is left of the log, with room for it
                    self.checkpoint_log()
                self._con.close()
                schema.release(self.path)
                self._publisher.close()
