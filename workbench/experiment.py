"""One experiment end to end: config → source → replay → runner → store, and its Run."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import secrets
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from river import base as river_base
from river import compose as river_compose

from workbench import __version__
from workbench import config as config_mod
from workbench.columns import Columns
from workbench.drift.features import FeatureDrift
from workbench.errors import ConfigError
from workbench.evaluation.metrics import names_for
from workbench.events import Event
from workbench.learners.batch import build as build_baseline
from workbench.learners.river import build
from workbench.replay.batching import mini_batches
from workbench.replay.join import LabelJoin
from workbench.replay.labels import parse_delay, with_field_delay
from workbench.replay.ordering import EventTimeOrder, merge_partitions
from workbench.replay.pacing import paced
from workbench.replay.schema import SAMPLE as SCHEMA_SAMPLE
from workbench.replay.schema import infer as infer_schema
from workbench.replay.schema import target_type
from workbench.runner import BLOCK, Runner, make_arm, make_batch_arm
from workbench.sources import open_source
from workbench.sources.base import DeadLetterSink
from workbench.store import DEFAULT_DB, RunWriter, Store
from workbench.supervision import attach

#: allocations between collections of the garbage collector's youngest generation during a
#: replay (Python's default: 700); see _heap_frozen
GC_YOUNG = 50_000


@dataclasses.dataclass
class Run:
    """A replayed experiment, as recorded in its DuckDB file."""

    id: str
    store: Store
    status: str = "finished"

    def summary(self) -> pd.DataFrame:
        """One row per learner: events, labelled, cumulative metrics, µs per predict/learn, events/s."""
        return self.store.summary(self.id)

    def steps(self, learner: str | None = None) -> pd.DataFrame:
        return self.store.steps(self.id, learner)

    def rolling(self, metric: str = "accuracy", window: int | None = None) -> pd.DataFrame:
        """The rolling ``metric`` of every learner (columns learner, seq, value); the window
        defaults to the config's ``rolling_window``."""
        return self.store.rolling(self.id, metric, window or self.info["config"].get("rolling_window", 1000))

    # -- drift, versions, A/B and calibration: the Store's readers for this run --------------
    def drift_events(self) -> pd.DataFrame:
        return self.store.drift_events(self.id)

    def drift_scores(self, max_delay: int | None = None) -> pd.DataFrame:
        return self.store.drift_scores(self.id, max_delay)

    def checkpoints(self) -> pd.DataFrame:
        return self.store.checkpoints(self.id)

    def rollback(self, learner: str, to_version: int | None = None) -> pd.DataFrame:
        return self.store.rollback(self.id, learner, to_version)

    def ab(self, a: str, b: str, metric: str = "accuracy", window: int = 1000) -> pd.DataFrame:
        return self.store.ab(self.id, a, b, metric, window)

    def online_vs_batch(self, metric: str = "accuracy") -> pd.DataFrame:
        return self.store.online_vs_batch(self.id, metric)

    def calibration_summary(self, window: int | None = None) -> pd.DataFrame:
        return self.store.calibration_summary(self.id, window)

    @property
    def info(self) -> dict[str, Any]:
        return self.store.run(self.id)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, status={self.status!r}, db={self.store.path!r})"


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class _Progress:
    """A tqdm bar (the notebook flavour inside Jupyter), moved each time the runner hands over
    steps — never per event, which would cost more than the logging."""

    def __init__(self, total: int | None, name: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=name, unit=" events", unit_scale=True,
                            smoothing=0.3, mininterval=0.5, file=sys.stderr)
        self.shown = 0

    def show(self, n: int) -> None:
        if self.bar is not None and n > self.shown:
            self.bar.update(n - self.shown)
            self.shown = n

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(config: str | Path | dict | config_mod.Config, db: str | Path | None = None,
        overrides: list[str] | None = None, progress: bool = True, stream: Iterable | None = None) -> Run:
    """Replay one experiment and log every update to ``db`` (default ``runs/workbench.duckdb``).

    ``stream`` replays any iterable of ``(x, y)`` pairs (a River dataset, a list) instead of
    the config's source; the config then needs no ``source`` (or ``source: {kind: python}``).
    The config is validated before any event is read. Ctrl-C keeps every step logged so far:
    the run is marked ``interrupted`` and returned.
    """
    if stream is not None and isinstance(config, dict) and "source" not in config:
        config = {**config, "source": {"kind": "python"}}
    cfg = config_mod.load(config, overrides)
    fields, stream, sample = first_schema(cfg, stream)
    source = open_source(cfg.source, cfg.seed, stream)
    task = source.task
    labels = target_type(fields)
    metrics = names_for(cfg.metrics, task, labels)
    parse_delay(cfg.replay.label_delay, cfg.source.time is not None)  # checked before anything is written
    arms = [
        make_arm(lc.name, build(lc, task, f"learners[{i}]", fields), task, metrics, labels)
        for i, lc in enumerate(cfg.learners)
    ]
    if cfg.replay.batch_size > 1:
        for i, arm in enumerate(arms):
            check_many(arm, sample, cfg.replay.batch_size, f"learners[{i}].model", cfg.learners[i].model)
    arms += [make_batch_arm(bc.name, build_baseline(bc, task, f"baselines[{i}]"), task, metrics, labels)
             for i, bc in enumerate(cfg.baselines)]
    attach(arms, {lc.name for lc in cfg.learners}, cfg, task)
    feature_cfg = next((d.features for d in cfg.drift if d.features is not None), None)
    feature_drift = FeatureDrift(feature_cfg) if feature_cfg is not None else None

    db_path = Path(db or DEFAULT_DB)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    writer = RunWriter(str(db_path), run_id)
    writer.begin(cfg.name, cfg.to_dict(), task, cfg.seed, __version__)
    writer.true_drifts(source.true_drifts())
    writer.keep = cfg.checkpoints.keep if cfg.checkpoints is not None else None

    def watch(events: Iterable[Event]) -> Iterable[Event]:
        fields, events = infer_schema(events)
        writer.feature_schema(fields)
        return feature_drift.watch(events) if feature_drift is not None else events

    replay, runner, events = wire(cfg, source, arms, writer.dead_letter, watch)
    bar = _Progress(source.length, cfg.name, progress)
    started = time.perf_counter()
    status, error = "finished", None
    try:
        with _terminate_as_interrupt(), _heap_frozen():
            for batches in runner.run(events):
                writer.write(batches)
                if feature_drift is not None:
                    writer.feature_drift(*feature_drift.take())
                bar.show(runner.n_events)
    except KeyboardInterrupt:
        status = "interrupted"
        writer.write(runner.take())
    except BaseException as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        if writer.broken is None:
            writer.write(runner.take())
        raise
    finally:
        bar.close()
        elapsed = time.perf_counter() - started
        try:
            if feature_drift is not None:
                writer.feature_drift(*feature_drift.take())
            if status != "failed":  # a failed model may be half-updated: do not offer it for export
                for arm in arms:
                    writer.checkpoint(arm.checkpoint(runner.n_events, "final"))
            writer.late_events(replay.replayed_late())
        except Exception as exc:  # the writer broke (a full disk): the run failed, and says why
            status, error = "failed", error or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            counts = {"n_events": runner.n_events, "n_dead_letters": writer.n_dead_letters,
                      "n_unlabelled": runner.n_unlabelled, **replay.counts()}
            writer.finish(status, counts, [_learner_row(arm, cfg) for arm in arms], elapsed, error)
    if status == "interrupted":
        warnings.warn(
            f"replay interrupted after {runner.n_events:,} events: run {run_id} keeps the "
            f"{writer.n_steps:,} steps logged so far in {db_path} and is marked 'interrupted'"
            + (f"; {runner.pending():,} predictions still awaiting labels were dropped" if runner.pending() else ""),
            stacklevel=2,
        )
    return Run(run_id, Store(db_path), status)


def first_schema(
    cfg: config_mod.Config, stream: Iterable | None
) -> tuple[list[dict] | None, Iterable | None, list[Event]]:
    """``(fields, stream, sample)``: the feature schema of the stream's first events, read before
    the run from a second opening of the source (the same events the run's replay starts with; a
    one-shot iterator is read ahead and handed back chained), so that ``preprocessing: auto``,
    the preprocessing check and the label check know the features and the target before any
    learner is built; ``sample``, those first events. None and no events for a live topic
    (reading it would consume it)."""
    if cfg.source.kind == "kafka":
        return None, stream, []
    head = stream
    if stream is not None and iter(stream) is stream:
        head = list(itertools.islice(stream, SCHEMA_SAMPLE))
        stream = itertools.chain(head, stream)
    peek = dataclasses.replace(cfg, replay=dataclasses.replace(cfg.replay, speed=None))
    fields, events = infer_schema(Replay(peek, open_source(cfg.source, cfg.seed, head), lambda _dead: None).events())
    return fields, stream, list(itertools.islice(events, SCHEMA_SAMPLE))


def _failing_step(exc: BaseException) -> str | None:
    """``Class.method`` of the innermost River estimator (not a pipeline) the error came through."""
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        step = frame.f_locals.get("self")
        if isinstance(step, river_base.Estimator) and not isinstance(step, river_compose.Pipeline):
            return f"{type(step).__name__}.{frame.f_code.co_name}"
    return None


def check_many(arm, sample: list[Event], batch_size: int, key: str, name: str) -> None:
    """Refuse, before the run, a learner whose mini-batch methods fail on this stream: a copy of
    it predicts, learns and predicts again the first events as one batch. River's StandardScaler,
    for one, fails in transform_many on features named by integers (River's synthetic streams)."""
    batch = [ev for ev in sample[:batch_size] if ev.y is not None]
    if not batch or not arm.batched:
        return
    model, columns = arm.model.clone(), Columns.of(batch)
    predict = getattr(model, arm.predict_many_name)
    try:
        predict(columns.frame())
        model.learn_many(columns.frame(), columns.labels())
        predict(columns.frame())
    except Exception as exc:
        named_by_int = any(type(k) is int for ev in batch for k in ev.x)
        raise ConfigError(
            key,
            f"{_failing_step(exc) or name} fails on a mini-batch of this stream's first events "
            f"(replay.batch_size: {batch_size}): {type(exc).__name__}: {exc}"
            + ("; the stream names its features by integers, which River's *_many methods may not take"
               if named_by_int else "")
            + "; replay.batch_size: 1 replays it one event at a time",
        ) from exc


@contextlib.contextmanager
def _heap_frozen() -> Iterator[None]:
    """Leave the objects that exist before the replay (a notebook's data, a stream held in a
    list) out of the garbage collector's passes while it runs: the blocks of events and steps it
    keeps trigger full passes, which cost ~0.1 s over a heap of a few million objects. Collected
    as usual afterwards; a process that froze its heap for good (a server) is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    # The youngest generation is collected every GC_YOUNG allocations instead of 700: the
    # blocks of predictions the runner keeps (River's own loop keeps none) otherwise go through
    # ~2 collections per block and on into the older generations. Cycles are still collected.
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], GC_YOUNG), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a supervisor stopping the replay, `kill PID`) ends it as Ctrl-C does: the run is
    marked interrupted and keeps its final checkpoint. Only where nothing else handles it."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def wire(cfg: config_mod.Config, source, arms: list, dead_letter: DeadLetterSink,
         watch: Callable[[Iterable[Event]], Iterable[Event]] | None = None):
    """The replay stage wired to a runner over ``arms``: ``(replay, runner, events)``, where
    ``runner.run(events)`` replays the stream in the order a live system saw it. ``watch`` sees
    each event before mini-batching (only the first ones when the batches come as columns:
    ``_columnar``). ``run`` and ``workbench verify-bundle`` both replay this way."""
    has_time = cfg.source.time is not None
    delay = parse_delay(cfg.replay.label_delay, has_time)
    replay = Replay(cfg, source, dead_letter)
    # A live or paced stream's events are stepped as they come, never held for a block.
    live = cfg.source.kind == "kafka" or cfg.replay.speed is not None
    runner = Runner(arms, delay, has_time, qa=replay.qa, batch_size=cfg.replay.batch_size,
                    block=1 if live else BLOCK)
    if _columnar(cfg, source, arms):
        return replay, runner, _columnar_batches(source.mini_batches(dead_letter, cfg.replay.batch_size), watch)
    events: Iterable[Event] = replay.events()
    if delay.kind == "field":
        events = with_field_delay(events, delay.value, has_time)
    if watch is not None:
        events = watch(events)
    events = _schema_to_learners(events, arms)
    if cfg.replay.batch_size > 1:
        events = mini_batches(events, cfg.replay.batch_size, cfg.replay.batch_timeout)
    return replay, runner, events


def _columnar(cfg: config_mod.Config, source, arms: list) -> bool:
    """Whether the mini-batches come straight from the source's columns (a file's Arrow
    batches): fixed-size batches (no timeout, no pacing), and nothing that reads every event
    before the runner (feature drift) or the schema before the first (a CapyMOA learner)."""
    replay = cfg.replay
    return (
        replay.batch_size > 1
        and replay.batch_timeout is None
        and replay.speed is None
        and hasattr(source, "mini_batches")
        and not any(d.features is not None for d in cfg.drift)
        and not any(hasattr(arm.model, "use_schema") for arm in arms)
    )


def _columnar_batches(batches: Iterator, watch: Callable[[Iterable[Event]], Iterable[Event]] | None) -> Iterator:
    """The batches, after ``watch`` has seen the events of the first ones: without feature
    drift it reads the schema from the first events and passes the rest on unchanged, so the
    other batches keep their columns and never make their events."""
    if watch is None:
        return batches
    seen: list = []

    def events() -> Iterator[Event]:
        for batch in batches:
            seen.append(batch)
            yield from batch if isinstance(batch, list) else batch.events

    watch(events())
    return itertools.chain(seen, batches)


def _schema_to_learners(events: Iterable[Event], arms: list) -> Iterable[Event]:
    """Learners that read rows in a fixed feature order (CapyMOA's) take it from the replay's
    schema, read from the first events before the first one reaches them."""
    takers = [arm.model.use_schema for arm in arms if hasattr(arm.model, "use_schema")]
    if not takers:
        return events

    def taken() -> Iterator[Event]:
        fields, evs = infer_schema(events)
        for use in takers:
            use(fields)
        yield from evs

    return taken()


class Replay:
    """The replay stage between source and runner: event-time order, lateness, label join,
    pacing — for sources that hand over partition streams (Kafka dumps and topics)."""

    def __init__(self, cfg: config_mod.Config, source, dead_letter: DeadLetterSink):
        self.cfg, self.source, self.dead_letter = cfg, source, dead_letter
        self.orders: list[EventTimeOrder] = []
        self.join: LabelJoin | None = None
        self.qa = None
        if hasattr(source, "streams") and cfg.source.labels is not None:
            self.join = LabelJoin()
            labels = self._ordered(source.label_streams(dead_letter))
            self.qa = lambda events: self.join(events, labels)

    def _ordered(self, streams: list) -> Iterable[Event]:
        replay = self.cfg.replay
        order = EventTimeOrder(config_mod.lateness(replay), replay.late, self.dead_letter)
        self.orders.append(order)
        return order(merge_partitions(streams))

    def events(self) -> Iterable[Event]:
        cfg = self.cfg
        if hasattr(self.source, "streams"):
            events = self._ordered(self.source.streams(self.dead_letter))
            if cfg.source.n is not None:
                events = itertools.islice(events, cfg.source.n)
        else:
            events = self.source.events(self.dead_letter)
        if cfg.replay.speed is not None:
            events = paced(events, cfg.replay.speed)
        return events

    def counts(self) -> dict[str, int]:
        return {
            "n_duplicates": getattr(self.source, "n_duplicates", 0),
            "n_late": sum(order.n_late for order in self.orders),
            "n_orphan_labels": self.join.n_orphan_labels if self.join else 0,
        }

    def replayed_late(self) -> list[tuple]:
        return [row for order in self.orders for row in order.replayed_late]


def _learner_row(arm, cfg: config_mod.Config) -> dict[str, Any]:
    configs = [*cfg.learners, *cfg.baselines]
    spec = next(dataclasses.asdict(lc) for lc in configs if lc.name == arm.name)
    return {
        "learner": arm.name,
        "kind": "batch" if "fit_on_first" in spec else "online",
        "model": spec["model"],
        "spec": spec,
        "metrics": arm.metric_values(),
    }
