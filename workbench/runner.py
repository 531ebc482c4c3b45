"""The one loop: for every learner, predict each question, score and learn each answer.

It yields ``StepBatch``es and does no I/O. Everything that varies between learners (proba or
label or number, which metrics) is settled once, when an ``Arm`` is made — never inside the loop.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice, repeat
from math import log
from operator import eq, neg, sub
from time import perf_counter, perf_counter_ns

import numpy as np
from river import base, compose, metrics

from workbench.columns import Columns
from workbench.errors import ConfigError
from workbench.evaluation.metrics import make as make_metric
from workbench.events import Event, StepBatch, event_time, event_y
from workbench.learners.narwhals_boundary import takes_narwhals, takes_narwhals_labels, wrap_series
from workbench.learners.narwhals_boundary import wrap as wrap_frame
from workbench.learners.river import gives_proba
from workbench.replay.labels import Delay, questions_and_answers
from workbench.versioning import Checkpoint, snapshot

#: rows an arm buffers before its steps are handed on
FLUSH_ROWS = 8192
#: ... and the longest a step waits before it is handed on (and progress is shown), in seconds
FLUSH_SECONDS = 1.0
#: how often (in events) the clock is read for FLUSH_SECONDS, minus one (a bit mask)
_CLOCK_MASK = 255
#: events an arm predicts and learns one by one before it scores and logs them together
BLOCK = 1024
_EPS = 1e-15
_MAX_LOSS = -log(_EPS)  # River's metrics clip probabilities at 1e-15 too


def _drain(iterator) -> None:
    """Run an iterator (of metric updates) to its end, in C."""
    deque(iterator, maxlen=0)


def _only_confusion_matrix(metric: metrics.base.Metric) -> bool:
    """Whether the metric is its confusion matrix and nothing else (accuracy, F1, kappa...)."""
    plain_update = type(metric).update is metrics.base.ClassificationMetric.update
    return plain_update and type(metric.cm) is metrics.ConfusionMatrix


def _feed_pairs(cm: metrics.ConfusionMatrix, pairs: list[tuple[tuple, int]], n: int) -> None:
    """Each distinct (label, prediction) pair of a block of ``n`` once, weighted by its count."""
    for (y, p), count in pairs:
        cm.update(y, p, float(count))
    cm.n_samples += n - len(pairs)


def _updater(metric: metrics.base.Metric) -> Callable[[list, list], None]:
    """``update(ys, preds)``: feed a block of (label, prediction) pairs to a River metric.

    A metric that is only its confusion matrix (accuracy, balanced accuracy, macro/micro F1,
    kappa...) is fed each distinct pair once, weighted by its count: the same counts (sums of
    1.0, exact), the same classes in the same order. Any other metric sees every pair in turn.
    """
    if _only_confusion_matrix(metric):
        cm = metric.cm
        return lambda ys, preds: _feed_pairs(cm, list(Counter(zip(ys, preds, strict=True)).items()), len(ys))
    update = metric.update
    return lambda ys, preds: _drain(map(update, ys, preds))


class Scored:
    """A block of probabilities as ``_log_matrix`` scored it, for the metrics numpy can update
    from it: the labels, the classes (the matrix's columns), the matrix, each row's argmax
    (``best``), the column of each label (``where``, -1 for a label that is no class), the
    predicted labels and the clipped loss of each row."""

    __slots__ = ("ys", "classes", "values", "best", "where", "y_pred", "loss", "_pairs")

    def __init__(self, ys, classes, values, best, where, y_pred, loss):
        self.ys, self.classes, self.values, self.best, self.where = ys, classes, values, best, where
        self.y_pred, self.loss, self._pairs = y_pred, loss, None

    def pairs(self) -> list[tuple[tuple, int]]:
        """``Counter(zip(ys, y_pred)).items()``, the same pairs in the same order (the first time
        each is seen), counted in numpy from the class codes when every label is a class."""
        if self._pairs is None:
            if len(self.where) and self.where.min() >= 0:
                codes = self.where * len(self.classes) + self.best
                _, first, counts = np.unique(codes, return_index=True, return_counts=True)
                order = np.argsort(first)
                self._pairs = [
                    ((self.ys[i], self.y_pred[i]), c)
                    for i, c in zip(first[order].tolist(), counts[order].tolist(), strict=True)
                ]
            else:
                self._pairs = list(Counter(zip(self.ys, self.y_pred, strict=True)).items())
        return self._pairs


def _matrix_updater(metric: metrics.base.Metric) -> Callable[[Scored], None] | None:
    """``update(scored)`` for a metric numpy can compute from a scored block exactly as River
    does, else None: a metric that is only its confusion matrix (fed each distinct pair once,
    as ``_updater``), and LogLoss: River's clamp, ``-log(p)`` or ``-log(1 - p)`` with math.log,
    then its running mean, in order."""
    if _only_confusion_matrix(metric):
        cm = metric.cm
        return lambda scored: _feed_pairs(cm, scored.pairs(), len(scored.ys))
    if type(metric) is not metrics.LogLoss:
        return None
    mean = metric._mean

    def update(scored: Scored) -> None:
        ys, values = scored.ys, scored.values
        index = {c: i for i, c in enumerate(scored.classes)}
        j = index.get(True)  # y_pred.get(True, 0.0)
        losses = _binary_losses(scored, index.get(False), j)
        if losses is None:
            p = values[:, j] if j is not None else np.zeros(len(ys))
            p = np.maximum(np.minimum(p, 1 - 1e-15), 1e-15)
            p = np.where(np.fromiter(map(bool, ys), bool, len(ys)), p, 1 - p)
            losses = list(map(neg, map(log, p.tolist())))
        # stats.Mean.update(x) with w = 1, in order: n += 1; m += (1 / n) * (x - m). The counts
        # and their reciprocals in numpy (whole numbers, one correctly rounded division: the same
        # floats), the running mean in Python, the one step that depends on the one before.
        n, m = mean.n, mean._mean
        shares = (1.0 / (np.arange(len(ys), dtype=np.float64) + (n + 1.0))).tolist()
        for x, share in zip(losses, shares, strict=True):
            m += share * (x - m)
        mean.n, mean._mean = n + len(ys), m

    return update


def _binary_losses(scored: Scored, false: int | None, true: int | None) -> list | None:
    """The block's loss column as LogLoss's terms, where they are the same numbers: labels all
    False or True, p(False) exactly 1 - p(True) (as a binary model gives them) and no clamping
    (then -log(p_true) is River's -log(p) or -log(1 - p)); else None."""
    if false is None or true is None or len(scored.classes) != 2 or scored.where.min(initial=0) < 0:
        return None
    p_false, p_true = scored.values[:, false], scored.values[:, true]
    if not (
        np.array_equal(p_false, 1 - p_true)
        and (p_true > _EPS).all()
        and (p_true < 1 - _EPS).all()
        and (p_false > _EPS).all()
    ):
        return None
    return scored.loss.tolist()


class Arm:
    """One learner in the loop: predicts, scores the stored prediction, learns, buffers steps.

    Subclasses say how a prediction is scored: ``_record`` appends one tuple per step,
    ``_log_block`` a block of steps as columns (numpy and C, the same values).
    """

    def __init__(self, name: str, model: base.Estimator, task: str, metrics: list[str], labels: str | None = None):
        self.name = name
        self.model = model
        self.task = task
        self.metrics = {m: make_metric(m, task, labels=labels) for m in metrics}
        self.version = 0
        self._pending: dict[int, tuple] = {}
        self._predict = getattr(model, self.predict_method)
        self._learn = model.learn_one
        self.take()

    def metric_values(self) -> dict[str, float | None]:
        return {name: (None if m.get() is None else float(m.get())) for name, m in self.metrics.items()}

    def checkpoint(self, seq: int, reason: str) -> Checkpoint:
        """Snapshot the model; predictions from now on are made by the next version."""
        self.version += 1
        return snapshot(self.name, self.model, self.version, seq, self.metric_values(), reason)

    #: watches each step after it is recorded (drift, checkpoints, guard); set once, before the
    #: replay, only on arms that configure any of it — the others emit straight into the batch
    supervisor = None
    #: the model method that predicts, as this kind of arm calls it
    predict_method = "predict_one"

    def set_model(self, model: base.Estimator) -> None:
        """Serve another model from the next event on (reset, rollback, background learner)."""
        self.model = model
        self._predict = getattr(model, self.predict_method)
        self._learn = model.learn_one

    def take(self) -> StepBatch:
        """Hand over the buffered steps and start a new batch."""
        batch = getattr(self, "batch", None)
        self.batch = StepBatch(self.name)
        self._emit = self.batch.rows.append
        if self.supervisor is not None:
            self._emit = self.supervisor.wrap(self.batch)
        return batch if batch is not None else self.batch

    #: whether the runner may hand this arm whole blocks of events (``step_block``, and
    #: ``step_many`` logging columns); arms with a supervisor always see each step
    blockwise = True

    @property
    def by_block(self) -> bool:
        return self.blockwise and self.supervisor is None

    def step_block(self, seq: int, evs: list[Event]) -> None:
        """``step`` each event of a block, then score and log them all at once: the same
        predictions, learning and steps, with the per-event work done in C or numpy.

        Two clock readings an event instead of three: each predict time runs from the previous
        reading to the end of the predict, each learn time from there to the end of the learn.
        If interrupted, the events both predicted and learned so far are still logged. A
        prediction is read after the block is learned: models answer with a new dict each time
        (River's all do), not one they keep updating."""
        predict, learn, clock = self._predict, self._learn, perf_counter_ns
        preds: list = []
        ticks = [clock()]
        add, tick = preds.append, ticks.append
        try:
            for ev in evs:
                x = ev[0]
                add(predict(x))
                tick(clock())
                learn(x, ev[1])
                tick(clock())
        finally:
            n = (len(ticks) - 1) // 2  # events both predicted and learned
            if n:
                del preds[n:]
                spans = np.diff(np.array(ticks[: 2 * n + 1], dtype=np.int64))
                block = evs if n == len(evs) else evs[:n]
                ys, times = list(map(event_y, block)), list(map(event_time, block))
                self._log_block(seq, ys, times, preds, spans[0::2], spans[1::2])
            self.reached = seq + n

    #: events this arm has stepped through in blocks (where an interrupted block stopped)
    reached = 0

    def _log_block(self, seq, ys, times, preds, predict_ns, learn_ns) -> None:
        """Score and log a block of predictions: each arm's ``_record``, vectorised where it can."""
        for i, (y, time, pred) in enumerate(zip(ys, times, preds, strict=True)):
            self._record(seq + i, time, y, pred, int(predict_ns[i]), int(learn_ns[i]), self.version)

    def _columns(self, seq, ys, times, y_pred, y_proba, correct, loss, predict_ns, learn_ns) -> None:
        n = len(ys)
        self.batch.add(
            {
                "seq": np.arange(seq, seq + n, dtype=np.int64),
                "event_time": times,
                "y_true": ys,
                "y_pred": y_pred,
                "y_proba": y_proba,
                "correct": correct,
                "loss": loss,
                "predict_ns": predict_ns,
                "learn_ns": learn_ns,
                "model_version": np.full(n, self.version, dtype=np.int32),
            }
        )

    def step(self, seq: int, ev: Event) -> None:
        """Predict then learn at once (no label delay)."""
        x = ev.x
        t0 = perf_counter_ns()
        pred = self._predict(x)
        t1 = perf_counter_ns()
        self._learn(x, ev.y)
        t2 = perf_counter_ns()
        self._record(seq, ev.time, ev.y, pred, t1 - t0, t2 - t1, self.version)

    def ask(self, seq: int, ev: Event) -> None:
        t0 = perf_counter_ns()
        pred = self._predict(ev.x)
        t1 = perf_counter_ns()
        self._pending[seq] = (pred, t1 - t0, self.version, ev.time)

    def answer(self, seq: int, ev: Event, y) -> None:
        pred, predict_ns, version, _ = self._pending.pop(seq)
        t0 = perf_counter_ns()
        self._learn(ev.x, y)
        t1 = perf_counter_ns()
        self._record(seq, ev.time, y, pred, predict_ns, t1 - t0, version)

    def flush_unanswered(self) -> int:
        """Log every prediction whose label never came, with no label; how many there were."""
        pending, self._pending = self._pending, {}
        for seq, (pred, predict_ns, version, time) in sorted(pending.items()):
            y_pred, y_proba = self._unanswered(pred)
            self._emit((seq, time, None, y_pred, y_proba, None, None, predict_ns, None, version))
        return len(pending)

    def _unanswered(self, pred) -> tuple:
        """(y_pred, y_proba) of a prediction that was never scored."""
        return pred, None

    #: (model, whether its *_many take a narwhals frame, whether its learn_many takes narwhals
    #: labels), for the model it was settled for
    _wrap_many: tuple | None = None

    @property
    def batched(self) -> bool:
        """Whether the model learns and predicts a mini-batch at once (River's *_many)."""
        return takes_batches(self.model, self.predict_many_name)

    @property
    def predict_many_name(self) -> str:
        return self.predict_method.replace("_one", "_many")

    def step_many(self, seq: int, batch: Columns) -> None:
        """Predict a mini-batch, then learn it; each event's timings are the batch's shares.

        The batch is scored and logged as columns (numpy and C), or step by step for an arm
        with a supervisor, which looks at every step."""
        X, ys = batch.frame(), batch.ys
        if self._wrap_many is None or self._wrap_many[0] is not self.model:
            model = self.model
            self._wrap_many = (model, takes_narwhals(model, self.predict_many_name), takes_narwhals_labels(model))
        t0 = perf_counter_ns()
        if self._wrap_many[1]:  # once for the predict and the learn (learners/narwhals_boundary.py)
            X = wrap_frame(X)
        preds = getattr(self.model, self.predict_many_name)(X)
        t1 = perf_counter_ns()
        y = batch.labels()
        self.model.learn_many(X, wrap_series(y) if self._wrap_many[2] else y)
        t2 = perf_counter_ns()
        n = len(ys)
        predict_ns = np.full(n, (t1 - t0) // n, dtype=np.int64)
        learn_ns = np.full(n, (t2 - t1) // n, dtype=np.int64)
        if self.by_block:
            self._log_many(seq, ys, batch.times, preds, predict_ns, learn_ns)
        else:
            Arm._log_block(self, seq, ys, batch.times, self._many_rows(preds), predict_ns, learn_ns)

    def _many_rows(self, preds) -> list:
        """A *_many answer as the *_one answers it stands for."""
        return preds.tolist()

    def _log_many(self, seq, ys, times, preds, predict_ns, learn_ns) -> None:
        self._log_block(seq, ys, times, self._many_rows(preds), predict_ns, learn_ns)

    def _record(self, seq, time, y, pred, predict_ns, learn_ns, version) -> None:
        raise NotImplementedError


class ProbaClassifierArm(Arm):
    """A classifier with probabilities: one ``predict_proba_one`` gives the label and the loss."""

    predict_method = "predict_proba_one"

    def __init__(self, name, model, task, metrics, labels=None):
        super().__init__(name, model, task, metrics, labels)
        self._updates = [(m.update, not m.requires_labels) for m in self.metrics.values()]
        self._block_updates = [(_updater(m), not m.requires_labels) for m in self.metrics.values()]
        self._matrix_updates = [_matrix_updater(m) for m in self.metrics.values()]

    def _log_block(self, seq, ys, times, probas, predict_ns, learn_ns) -> None:
        # Probabilities of the same classes in the same order (as a model gives them) make a
        # matrix; anything else (an abstention, a class appearing) is scored row by row.
        classes = tuple(probas[0]) if probas[0] else ()
        if classes and all(probas) and all(map(classes.__eq__, map(tuple, probas))):
            values = np.fromiter(chain.from_iterable(map(dict.values, probas)), np.float64, len(probas) * len(classes))
            if self._log_matrix(seq, ys, times, classes, values.reshape(len(probas), -1), probas, predict_ns, learn_ns):
                return
        super()._log_block(seq, ys, times, probas, predict_ns, learn_ns)

    def _log_matrix(self, seq, ys, times, classes, values, probas, predict_ns, learn_ns) -> bool:
        """Score a block of probabilities (rows of ``values``, columns ``classes``) in numpy:
        the argmax (numpy's first largest, as max(proba, key=proba.get)), the probability of
        the label, the clipped loss. False if a NaN makes the order of comparisons matter."""
        if np.isnan(values).any():
            return False
        rows = np.arange(len(ys))
        best = values.argmax(axis=1)
        y_pred = list(map(classes.__getitem__, best.tolist()))
        where = np.fromiter(map({c: i for i, c in enumerate(classes)}.get, ys, repeat(-1)), np.intp, len(ys))
        p_true = np.where(where >= 0, values[rows, where], 0.0)
        # -log(p_true) clipped as in _record, with math.log (numpy's may differ in the last bit)
        loss = -np.fromiter(map(log, np.where(p_true > _EPS, p_true, _EPS).tolist()), np.float64, len(ys))
        scored = Scored(ys, classes, values, best, where, y_pred, loss)
        for (update, wants_proba), matrix_update in zip(self._block_updates, self._matrix_updates, strict=True):
            if matrix_update is not None:
                matrix_update(scored)
                continue
            if wants_proba and probas is None:
                probas = list(map(dict, map(zip, repeat(classes), values.tolist())))
            update(ys, probas if wants_proba else y_pred)
        # y_pred == y exactly where the label is the predicted class's key (a dict finds the
        # key equal to the label: True for a label of 1, as Python's == says)
        correct = best == where
        self._columns(seq, ys, times, y_pred, values[rows, best], correct, loss, predict_ns, learn_ns)
        return True

    def _unanswered(self, proba) -> tuple:
        if not proba:
            return None, None
        y_pred = max(proba, key=proba.get)
        return y_pred, proba[y_pred]

    def _many_rows(self, probas) -> list[dict]:
        # a dict per event, built in C (DataFrame.to_dict costs more than the learning)
        return list(map(dict, map(zip, repeat(list(probas.columns)), probas.to_numpy().tolist())))

    def _log_many(self, seq, ys, times, frame, predict_ns, learn_ns) -> None:
        values = frame.to_numpy(dtype=np.float64)
        classes = tuple(frame.columns)
        if not classes or not self._log_matrix(seq, ys, times, classes, values, None, predict_ns, learn_ns):
            self._log_block(seq, ys, times, self._many_rows(frame), predict_ns, learn_ns)

    def _record(self, seq, time, y, proba, predict_ns, learn_ns, version):
        if not proba:  # River's metrics skip an abstention; so do we
            self._emit((seq, time, y, None, None, None, None, predict_ns, learn_ns, version))
            return
        # River's predict_one is exactly this argmax of predict_proba_one.
        y_pred = max(proba, key=proba.get)
        p_true = proba.get(y, 0.0)
        for update, wants_proba in self._updates:
            update(y, proba if wants_proba else y_pred)
        # Python's == as River's metrics use it (a model may answer True to a label of 1).
        self._emit(
            (
                seq,
                time,
                y,
                y_pred,
                proba[y_pred],
                y_pred == y,
                -log(p_true) if p_true > _EPS else _MAX_LOSS,
                predict_ns,
                learn_ns,
                version,
            )
        )


class LabelClassifierArm(Arm):
    """A classifier that gives labels only: no probability, no loss."""

    def __init__(self, name, model, task, metrics, labels=None):
        super().__init__(name, model, task, metrics, labels)
        needs_proba = [m for m, metric in self.metrics.items() if not metric.requires_labels]
        if needs_proba:
            raise ConfigError(
                "metrics", f"{', '.join(needs_proba)} need probabilities, but learner {name!r} only predicts labels"
            )
        self._updates = [m.update for m in self.metrics.values()]
        self._block_updates = [_updater(m) for m in self.metrics.values()]

    def _log_block(self, seq, ys, times, y_pred, predict_ns, learn_ns) -> None:
        if None in y_pred:
            return super()._log_block(seq, ys, times, y_pred, predict_ns, learn_ns)
        for update in self._block_updates:
            update(ys, y_pred)
        n = len(ys)
        self._columns(seq, ys, times, y_pred, [None] * n, list(map(eq, y_pred, ys)), [None] * n, predict_ns, learn_ns)

    def _record(self, seq, time, y, y_pred, predict_ns, learn_ns, version):
        if y_pred is None:
            self._emit((seq, time, y, None, None, None, None, predict_ns, learn_ns, version))
            return
        for update in self._updates:
            update(y, y_pred)
        self._emit((seq, time, y, y_pred, None, y_pred == y, None, predict_ns, learn_ns, version))


class RegressorArm(Arm):
    """A regressor: the loss is the squared error."""

    def __init__(self, name, model, task, metrics, labels=None):
        super().__init__(name, model, task, metrics, labels)
        self._updates = [m.update for m in self.metrics.values()]

    def _log_block(self, seq, ys, times, y_pred, predict_ns, learn_ns) -> None:
        if None in y_pred:
            return super()._log_block(seq, ys, times, y_pred, predict_ns, learn_ns)
        for update in self._updates:
            _drain(map(update, ys, y_pred))
        n = len(ys)
        self._columns(
            seq,
            ys,
            times,
            y_pred,
            [None] * n,
            [None] * n,
            list(map(pow, map(sub, ys, y_pred), repeat(2))),
            predict_ns,
            learn_ns,
        )

    def _record(self, seq, time, y, y_pred, predict_ns, learn_ns, version):
        if y_pred is None:
            self._emit((seq, time, y, None, None, None, None, predict_ns, learn_ns, version))
            return
        for update in self._updates:
            update(y, y_pred)
        self._emit((seq, time, y, y_pred, None, None, (y - y_pred) ** 2, predict_ns, learn_ns, version))


def takes_batches(model: base.Estimator, predict_many: str) -> bool:
    """Whether ``model`` learns (``learn_many``) and predicts (``predict_many``) mini-batches.

    A River pipeline or union has the methods whatever its steps: it does only if every
    transformer in it learns and transforms mini-batches and its model learns and predicts them
    (a scaler before a Hoeffding tree, which has no ``*_many``, is stepped one event at a time)."""
    if isinstance(model, compose.TransformerUnion):
        return all(takes_batches(t, "transform_many") for t in model.transformers.values())
    if isinstance(model, compose.Pipeline):
        *transformers, last = model.steps.values()
        return all(takes_batches(t, "transform_many") for t in transformers) and takes_batches(last, predict_many)
    return hasattr(model, "learn_many") and hasattr(model, predict_many)


def make_arm(name: str, model: base.Estimator, task: str, metrics: list[str], labels: str | None = None) -> Arm:
    """The arm for ``model``; ``labels`` is the target's type when known (metrics.make)."""
    if task == "regression":
        return RegressorArm(name, model, task, metrics, labels)
    if gives_proba(model):
        return ProbaClassifierArm(name, model, task, metrics, labels)
    return LabelClassifierArm(name, model, task, metrics, labels)


class Runner:
    """Drives every arm over the same events, in the same order. Counts what it saw."""

    def __init__(
        self,
        arms: list[Arm],
        delay: Delay,
        has_time: bool,
        qa: Callable[[Iterable[Event]], Iterator[tuple]] | None = None,
        batch_size: int = 1,
        block: int = BLOCK,
    ):
        self.arms = arms
        self.delay = delay
        self.has_time = has_time
        #: turns events into (seq, event, y) questions and answers, e.g. a label join
        self.qa = qa
        self.batch_size = batch_size
        #: events handed to arms at once without label delays (1 for live or paced streams,
        #: whose events must not wait for the next ones)
        self.block = block
        self.n_events = 0
        self.n_unlabelled = 0

    def run(self, events: Iterable[Event]) -> Iterator[list[StepBatch]]:
        """Yield the arms' steps every FLUSH_ROWS rows or FLUSH_SECONDS, and at the end.

        If the loop is interrupted, ``take()`` still hands over every step completed so far.
        """
        if self.batch_size > 1:
            yield from self._batched(events)
        else:
            yield from self._loop(events)
        self.n_unlabelled = max((arm.flush_unanswered() for arm in self.arms), default=0)
        yield self.take()

    def take(self) -> list[StepBatch]:
        return [arm.take() for arm in self.arms]

    def pending(self) -> int:
        """Predictions still waiting for their label."""
        return max((len(arm._pending) for arm in self.arms), default=0)

    def _loop(self, events: Iterable[Event]) -> Iterator[list[StepBatch]]:
        # Locals and one comparison per event: this loop runs millions of times.
        arms = self.arms
        deadline = perf_counter() + FLUSH_SECONDS
        next_flush = FLUSH_ROWS
        n = 0
        try:
            if self.delay.immediate and self.qa is None and self.block > 1 and any(a.by_block for a in arms):
                it, size = iter(events), self.block
                while True:
                    block: list[Event] = []
                    try:
                        block.extend(islice(it, size))
                    finally:  # what was read before an interrupt is still replayed and logged
                        self._step_block(n, block)
                        n += len(block)
                    if not block:
                        return
                    if n >= next_flush or perf_counter() > deadline:
                        self.n_events = n
                        yield self.take()
                        deadline, next_flush = perf_counter() + FLUSH_SECONDS, n + FLUSH_ROWS
            if self.delay.immediate and self.qa is None:
                for n, ev in enumerate(events, start=1):
                    for arm in arms:
                        arm.step(n - 1, ev)
                    if n == next_flush or (not n & _CLOCK_MASK and perf_counter() > deadline):
                        self.n_events = n
                        yield self.take()
                        deadline, next_flush = perf_counter() + FLUSH_SECONDS, n + FLUSH_ROWS
                return
            qa = self.qa(events) if self.qa else questions_and_answers(events, self.delay, self.has_time)
            for seq, ev, y in qa:
                if y is None:
                    for arm in arms:
                        arm.ask(seq, ev)
                    n += 1
                    if n == next_flush or (not n & _CLOCK_MASK and perf_counter() > deadline):
                        self.n_events = n
                        yield self.take()
                        deadline, next_flush = perf_counter() + FLUSH_SECONDS, n + FLUSH_ROWS
                else:
                    for arm in arms:
                        arm.answer(seq, ev, y)
        finally:  # an interrupted block counts the events its arms got through
            self.n_events = max([n, *(arm.reached for arm in arms)])

    def _step_block(self, n: int, block: list[Event]) -> None:
        for arm in self.arms:
            if arm.by_block:
                arm.step_block(n, block)
            else:
                for seq, ev in enumerate(block, n):
                    arm.step(seq, ev)

    def _batched(self, batches: Iterable[list[Event] | Columns]) -> Iterator[list[StepBatch]]:
        """Mini-batches (labels known at once): *_many where a learner has them, else one by
        one. A batch is a list of events or, from a columnar source, ``Columns``, whose events
        are made only for an arm that steps through them."""
        arms, n = self.arms, 0
        try:
            for batch in batches:
                if not isinstance(batch, Columns):
                    batch = Columns.of(batch)
                for arm in arms:
                    if arm.batched:
                        arm.step_many(n, batch)
                    elif arm.by_block:
                        arm.step_block(n, batch.events)
                    else:
                        for i, ev in enumerate(batch.events):
                            arm.step(n + i, ev)
                n += len(batch)
                self.n_events = n
                if len(arms[0].batch) >= FLUSH_ROWS:
                    yield self.take()
        finally:
            self.n_events = n


class _Batched:
    """Mixed into an arm of a batch baseline (learners.batch.BatchLearner): questions are
    answered many at a time — exactly what one at a time would give, because the model only
    changes at a fit and every question asked before a fit is answered before it. The predict
    time of a step is its share of the batch. Each fit is logged in ``refits`` and starts a
    new version."""

    blockwise = False  # its step() already answers questions many at a time

    def _setup(self) -> None:
        self._predict_many = getattr(self.model, self.predict_many_name)
        self._questions: list[tuple] = []  # (seq, event) not yet predicted
        # (seq, event, learn_ns) learned at once, not yet recorded
        self._immediate: list[tuple] = []

    def _resolve(self) -> None:
        """Predict every open question with the current model."""
        if self._questions:
            t0 = perf_counter_ns()
            preds = self._predict_many([ev.x for _, ev in self._questions])
            share = (perf_counter_ns() - t0) // len(preds)
            for (seq, ev), pred in zip(self._questions, preds, strict=True):
                self._pending[seq] = (pred, share, self.version, ev.time)
            self._questions = []
        for seq, ev, learn_ns in self._immediate:
            pred, predict_ns, version, _ = self._pending.pop(seq)
            self._record(seq, ev.time, ev.y, pred, predict_ns, learn_ns, version)
        self._immediate = []

    def _learn_logged(self, seq: int, ev: Event, y) -> int:
        if self.model.fits_next():
            self._resolve()
        t0 = perf_counter_ns()
        self.model.learn_one(ev.x, y)
        learn_ns = perf_counter_ns() - t0
        if len(self.model.fits) > self.version:
            n_samples, fit_ms = self.model.fits[-1]
            self.batch.refits.append((seq, n_samples, fit_ms))
            self.version = len(self.model.fits)
        return learn_ns

    def step(self, seq: int, ev: Event) -> None:
        self._questions.append((seq, ev))
        learn_ns = self._learn_logged(seq, ev, ev.y)  # may answer the open questions first
        self._immediate.append((seq, ev, learn_ns))

    def ask(self, seq: int, ev: Event) -> None:
        self._questions.append((seq, ev))

    def answer(self, seq: int, ev: Event, y) -> None:
        if seq not in self._pending:
            self._resolve()
        learn_ns = self._learn_logged(seq, ev, y)
        pred, predict_ns, version, _ = self._pending.pop(seq)
        self._record(seq, ev.time, y, pred, predict_ns, learn_ns, version)

    def take(self) -> StepBatch:
        if hasattr(self, "_questions"):
            self._resolve()
        return super().take()

    def flush_unanswered(self) -> int:
        self._resolve()  # questions still open get their predictions first
        return super().flush_unanswered()


def make_batch_arm(name: str, learner, task: str, metrics: list[str], labels: str | None = None) -> Arm:
    """The arm of a batch baseline: the arm its predictions call for, answering in batches."""
    kind = type(make_arm(name, learner, task, metrics, labels))
    arm = type(f"Batch{kind.__name__}", (_Batched, kind), {})(name, learner, task, metrics, labels)
    arm._setup()
    return arm
