"""Training/serving parity, proved: replay a run's stream through a bundle and compare every
prediction with the one the workbench logged.

The replay starts from the learner's untrained model built from the bundle's config (so the
config is proved re-runnable too) and hands over to the bundle's model at the event where its
checkpoint was taken: every logged prediction from there on must come out of the bundle,
identical. A checkpoint taken at the end of the run (the 'final' one) made no logged prediction,
so its model is compared with the replayed one on every event of the stream instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import config as config_mod
from workbench.events import Event, StepBatch
from workbench.experiment import wire
from workbench.export.bundle import Bundle, BundleError, load
from workbench.learners.river import build, gives_proba
from workbench.runner import make_arm
from workbench.sources import open_source
from workbench.store import DEFAULT_DB, Store
from workbench.store.writer import steps_table

_SHOWN = 5


@dataclass
class Verification:
    """What verify-bundle found; ``ok`` only when nothing differed."""

    run_id: str
    learner: str
    version: int
    n_compared: int = 0  # logged predictions compared
    n_from_bundle: int = 0  # ... of which the bundle's model made
    n_state_checked: int = 0  # events on which the bundle's model and the replay agreed
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    n_mismatches: int = 0

    @property
    def ok(self) -> bool:
        return self.n_mismatches == 0 and self.n_compared > 0

    def __str__(self) -> str:
        head = (
            f"bundle {self.learner} v{self.version} against run {self.run_id}: "
            f"{self.n_compared:,} logged predictions compared ({self.n_from_bundle:,} made by the "
            f"bundle's model), model state checked on {self.n_state_checked:,} events"
        )
        if self.ok:
            return f"OK  {head}: all identical"
        lines = [f"FAILED  {head}: {self.n_mismatches:,} differ"]
        lines += [
            f"  seq {m['seq']}: logged {m['logged']!r}, bundle {m['bundle']!r}"
            for m in self.mismatches
        ]
        return "\n".join(lines)


def verify(
    bundle: str | Path | Bundle, run_id: str, db: str | Path | None = None, trust_unsigned: bool = False
) -> Verification:
    """Replay run ``run_id`` through ``bundle`` and compare with the logged predictions (an
    unsigned bundle is refused before it is unpickled, unless ``trust_unsigned``)."""
    if not isinstance(bundle, Bundle):
        bundle = load(bundle, trust_unsigned)
    if run_id != bundle.manifest["run_id"]:
        raise BundleError(
            f"the bundle was exported from run {bundle.manifest['run_id']}, not {run_id}: "
            "verify it against the run it came from"
        )
    store = Store(db or bundle.manifest.get("db") or DEFAULT_DB)
    info = store.run(run_id)
    cfg = config_mod.load(info["config"])
    if cfg.source.kind == "python":
        raise BundleError(
            f"run {run_id} replayed a Python stream passed to workbench.run(stream=...): "
            "its stream cannot be re-opened from the config, so it cannot be replayed"
        )
    spec = next(lc for lc in config_mod.load(bundle.config).learners if lc.name == bundle.learner)
    source = open_source(cfg.source, cfg.seed)
    fields = store.feature_schema(run_id).to_dict("records")  # what preprocessing: auto was made from
    arm = make_arm(bundle.learner, build(spec, info["task"], "learners[0]", fields), info["task"], [])
    arm.blockwise = False  # the hand-over below needs each step as a row
    # The run's own replay stage (event-time order, label joins, mini-batches), unpaced: the same
    # questions and answers in the same order as the run saw them.
    cfg.replay.speed = None
    xs: list[dict] = []
    _, runner, events = wire(cfg, source, [arm], lambda _dead: None, lambda evs: _collecting(evs, xs))
    handover = bundle.manifest["seq"]
    rows: list[tuple] = []
    _hand_over_after(arm, handover - 1, bundle.model)
    for batches in runner.run(events):
        rows.extend(batches[0].rows)

    result = Verification(run_id, bundle.learner, bundle.version)
    _compare_logged(result, rows, store.steps(run_id, bundle.learner), handover)
    if handover >= runner.n_events:  # the bundle made no logged prediction: compare the models
        _compare_models(result, arm.model, bundle.model, xs)
    return result


def _hand_over_after(arm, last_seq: int, model) -> None:
    """Serve ``model`` from the moment the checkpoint was taken: right after the arm learned the
    label of event ``last_seq`` (with label delays, questions asked before that moment were
    answered by the old model, as they were in the run)."""
    if last_seq < 0:
        arm.set_model(model)
        return
    step, answer = arm.step, arm.answer

    def step_then(seq, ev):
        step(seq, ev)
        if seq == last_seq:
            arm.set_model(model)

    def answer_then(seq, ev, y):
        answer(seq, ev, y)
        if seq == last_seq:
            arm.set_model(model)

    arm.step, arm.answer = step_then, answer_then


def _collecting(events: Iterable[Event], xs: list[dict]) -> Iterator[Event]:
    for ev in events:
        xs.append(ev.x)
        yield ev


def _compare_logged(result: Verification, rows: list[tuple], logged, handover: int) -> None:
    replayed = steps_table(StepBatch(result.learner, rows)).to_pandas().set_index("seq").sort_index()
    logged = logged.set_index("seq")
    if len(replayed) != len(logged) or not replayed.index.equals(logged.index):
        raise BundleError(
            f"the replay gave {len(replayed):,} steps but the run logged {len(logged):,} "
            f"for {result.learner}: the run's source no longer yields the same stream"
        )
    same_pred = (replayed.y_pred == logged.y_pred) | (replayed.y_pred.isna() & logged.y_pred.isna())
    same_proba = (replayed.y_proba == logged.y_proba) | (
        replayed.y_proba.isna() & logged.y_proba.isna()
    )
    differ = ~(same_pred & same_proba)
    result.n_compared = len(logged)
    result.n_from_bundle = int((logged.index >= handover).sum())
    result.n_mismatches += int(differ.sum())
    for seq in logged.index[differ][:_SHOWN]:
        result.mismatches.append(
            {
                "seq": int(seq),
                "logged": (logged.y_pred[seq], logged.y_proba[seq]),
                "bundle": (replayed.y_pred[seq], replayed.y_proba[seq]),
            }
        )


def _compare_models(result: Verification, replayed, bundled, xs: list[dict]) -> None:
    """The bundle's model and the replay's final model must answer alike on every input seen."""
    method = "predict_proba_one" if gives_proba(bundled) else "predict_one"
    ours, theirs = getattr(replayed, method), getattr(bundled, method)
    for seq, x in enumerate(xs):
        a, b = ours(x), theirs(x)
        if a != b:
            result.n_mismatches += 1
            if len(result.mismatches) < _SHOWN:
                result.mismatches.append({"seq": seq, "logged": a, "bundle": b})
        result.n_state_checked += 1
