"""What watches a learner while it learns: drift detectors, adaptation, checkpoints, the guard.

A ``Supervisor`` is attached (once, before the replay) only to arms whose config asks for any
of this; it sees each step right after the arm records it. Arms without one emit straight into
their batch, so runs that configure nothing pay nothing.

Adaptation on a drift, per learner (``drift.action``):
- ``none``: log it;
- ``reset``: serve a fresh, untrained copy of the model;
- ``background``: at a warning, start training a fresh copy beside the model; at the drift,
  serve it (a fresh copy if the detector gives no warnings, as ADWIN does not);
- ``rollback``: serve the latest kept checkpoint again.
Every model change starts a new version; after one, the learner's detectors and guard window
start over, since they were measuring the model that was replaced. Baselines are watched but
not adapted: they retrain on their own schedule.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from workbench.config import Config, DriftConfig
from workbench.drift import detectors
from workbench.errors import ConfigError
from workbench.events import StepBatch
from workbench.runner import Arm, ProbaClassifierArm
from workbench.versioning import Checkpoint, restore

#: what the guard averages for each metric; all lower-is-better (accuracy as the error rate)
_GUARD = {
    "accuracy": detectors.error,
    "log_loss": detectors.loss,
    "mse": detectors.loss,
    "mae": detectors.abs_error,
}


class Watch:
    """One detector on one learner."""

    def __init__(self, cfg: DriftConfig, name: str, detector, value: Callable, action: str):
        self.cfg = cfg
        self.name = name
        self.detector = detector
        self.fresh = detector.clone()
        self.value = value
        self.action = action
        self.warned = False
        self.has_warning = hasattr(detector, "warning_detected")


class Supervisor:
    def __init__(
        self,
        arm: Arm,
        watches: list[Watch],
        checkpoint_every: int | None = None,
        checkpoint_at: list[int] | None = None,
        keep: int = 10,
        guard: tuple[str, int, float] | None = None,
    ):
        self.arm = arm
        self.watches = watches
        self.every = checkpoint_every
        self.at = set(checkpoint_at or [])
        # [checkpoint, its rolling guard value (None: not measured, or already rolled back to)]
        self.kept: deque[list] = deque(maxlen=keep)
        # an untrained twin to reset to (River's clone); only learners that adapt need one
        self.fresh_model = arm.model.clone() if any(w.action != "none" for w in watches) else None
        self.background = None
        self.updates = 0
        self.guard = guard
        if guard is not None:
            metric, window, drop = guard
            self._guard_value = _GUARD[metric]
            self._window: deque = deque(maxlen=window)
            self._sum = 0.0  # of the window, kept up to date: summing it per event costs O(window)
            self._best: list | None = None  # the kept entry the guard compares against
            self._drop = drop
        hooks: list[Callable[[tuple], None]] = [self._watch] if watches else []
        if checkpoint_every or self.at:
            hooks.append(self._count)
        if guard is not None:
            hooks.append(self._guard)
        self.hooks = hooks
        self.batch: StepBatch | None = None

    def wrap(self, batch: StepBatch) -> Callable[[tuple], None]:
        """The arm's emit for this batch: record the step, then look at it."""
        self.batch = batch
        append = batch.rows.append
        hooks = self.hooks

        def emit(row: tuple) -> None:
            append(row)
            for hook in hooks:
                hook(row)

        return emit

    # -- drift --------------------------------------------------------------------------------
    def _watch(self, row: tuple) -> None:
        for w in self.watches:
            value = w.value(row)
            if value is None:
                continue
            det = w.detector
            det.update(value)
            if det.drift_detected:
                w.warned = False
                self._on_drift(w, row[0])
            elif w.has_warning and not w.warned and det.warning_detected:
                # Warnings flicker on and off: log the first of each episode, up to its drift.
                w.warned = True
                self._on_warning(w, row[0])

    def _log(self, w: Watch, seq: int, kind: str, action: str, reason: str) -> None:
        self.batch.drift_events.append(
            (
                seq,
                w.name,
                kind,
                action,
                detectors.statistic(w.detector),
                f"{w.name} on the {w.cfg.on} of {self.arm.name}: {reason}",
            )
        )

    def _on_warning(self, w: Watch, seq: int) -> None:
        if w.action == "background" and self.background is None:
            self.background = bg = self.fresh_model.clone()
            learn, learn_bg = self.arm.model.learn_one, bg.learn_one

            def both(x, y):
                learn(x, y)
                learn_bg(x, y)

            self.arm._learn = both
            self._log(
                w, seq, "warning", "background", "warning; a background learner starts training"
            )
        else:
            self._log(w, seq, "warning", "none", "warning")

    def _on_drift(self, w: Watch, seq: int) -> None:
        arm, before = self.arm, self.arm.version
        if w.action == "none":
            self._log(w, seq, "drift", "none", "drift")
            return
        if w.action == "rollback" and self.kept:
            cp = self.kept[-1][0]
            self._rollback(cp, seq, "drift")
            self._log(
                w,
                seq,
                "drift",
                "rollback",
                f"drift; rolled back to version {cp.version} (served as version {arm.version})",
            )
        elif w.action == "background" and self.background is not None:
            arm.set_model(self.background)
            self.background = None
            self._checkpoint(seq, "background")
            self._log(
                w,
                seq,
                "drift",
                "background",
                f"drift; the background learner replaces version {before} as version {arm.version}",
            )
        else:
            arm.set_model(self.fresh_model.clone())
            arm.version += 1
            self.background = None
            self._log(
                w,
                seq,
                "drift",
                "reset" if w.action != "rollback" else "rollback",
                f"drift; version {before} replaced by an untrained model (version {arm.version})"
                + ("; no checkpoint to roll back to yet" if w.action == "rollback" else ""),
            )
        self._restart()

    def _restart(self) -> None:
        """The model changed: what watched the old one starts over."""
        for w in self.watches:
            w.detector = w.fresh.clone()
            w.warned = False
        if self.guard is not None:
            self._window.clear()
            self._sum = 0.0

    # -- versions -----------------------------------------------------------------------------
    def _count(self, row: tuple) -> None:
        self.updates += 1
        if self.every and not self.updates % self.every:
            self._checkpoint(row[0], "scheduled")
        elif row[0] in self.at:
            self._checkpoint(row[0], "on demand")

    def _rolling(self) -> float | None:
        if self.guard is None or len(self._window) < self._window.maxlen:
            return None
        return self._sum / len(self._window)

    def _checkpoint(self, seq: int, reason: str) -> Checkpoint:
        cp = self.arm.checkpoint(seq + 1, reason)
        rolling = self._rolling()
        if rolling is not None:
            cp.metrics[f"rolling_{self.guard[0]}"] = (
                1 - rolling if self.guard[0] == "accuracy" else rolling
            )
        self.batch.checkpoints.append(cp)
        self.kept.append([cp, rolling])
        if self.guard is not None:
            self._choose_best()
        return cp

    def _rollback(self, cp: Checkpoint, seq: int, reason: str) -> None:
        before = self.arm.version
        self.arm.set_model(restore(cp.state, cp.sha256))
        new = self._checkpoint(seq, "rollback")
        self.kept[-1][1] = None  # how the restored model does now is measured afresh
        if self.guard is not None:
            self._choose_best()
        self.batch.rollbacks.append((seq, before, cp.version, reason, new.version))

    def _guard(self, row: tuple) -> None:
        value = self._guard_value(row)
        if value is None:
            return
        window = self._window
        if len(window) == window.maxlen:
            self._sum -= window[0]
        window.append(value)
        self._sum += value
        best = self._best
        if best is None or len(window) < window.maxlen:
            return
        if self._sum / len(window) > best[1] + self._drop:
            # A checkpoint is a reference once: if the restored model cannot reach its level
            # either, the stream changed (a drift, not a bad update) and rolling back again
            # would only undo learning.
            best[1] = None
            self._rollback(best[0], row[0], "guard")
            self._restart()

    def _choose_best(self) -> None:
        """The kept checkpoint with the lowest rolling error (or loss), once they change."""
        scored = [entry for entry in self.kept if entry[1] is not None]
        self._best = min(scored, key=lambda entry: entry[1]) if scored else None


def attach(arms: list[Arm], online: set[str], cfg: Config, task: str) -> None:
    """Give every arm that needs one its Supervisor (left as None otherwise)."""
    for arm in arms:
        is_online = arm.name in online
        watches = []
        for i, d in enumerate(cfg.drift):
            key = f"drift[{i}]" if len(cfg.drift) > 1 else "drift"
            if d.detector is None or (d.learners is not None and arm.name not in d.learners):
                continue
            detector = detectors.build(d, key)
            value = detectors.value_of(
                d, detector, task, isinstance(arm, ProbaClassifierArm), key, arm.name
            )
            name = d.name or type(detector).__name__
            if any(w.name == name for w in watches):
                raise ConfigError(
                    f"{key}.name",
                    f"two detectors on {arm.name!r} are both called {name!r}: name them",
                )
            watches.append(Watch(d, name, detector, value, d.action if is_online else "none"))
        cp, guard = cfg.checkpoints, cfg.guard
        every = cp.every if cp is not None and is_online else None
        at = cp.at if cp is not None and is_online else []
        guard_spec = (
            (guard.metric, guard.window, guard.drop) if guard is not None and is_online else None
        )
        if guard_spec is not None:
            if guard.metric == "accuracy" and task == "regression":
                raise ConfigError(
                    "guard.metric",
                    "accuracy is for classifiers; a regressor's guard uses mse or mae",
                )
            if guard.metric in ("mse", "mae") and task != "regression":
                raise ConfigError(
                    "guard.metric", f"{guard.metric} is for regressors; use accuracy or log_loss"
                )
            if guard.metric == "log_loss" and not isinstance(arm, ProbaClassifierArm):
                raise ConfigError(
                    "guard.metric", f"learner {arm.name!r} gives no probabilities: use accuracy"
                )
        if watches or every or at or guard_spec:
            arm.supervisor = Supervisor(arm, watches, every, at, cp.keep if cp else 10, guard_spec)
            arm.take()  # start a batch that the supervisor sees
