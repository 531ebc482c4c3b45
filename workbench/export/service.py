"""The served model: predicts, learns from feedback, checkpoints atomically, rolls back.

Everything that touches the model runs on the event loop's thread, between two awaits, so
concurrent requests are applied one at a time without a lock: learning is safe under
concurrency by construction. Only finished snapshots (bytes) go to a writer thread.

State lives in ``state_dir``: ``vNNNNNN.pkl`` + ``vNNNNNN.json`` per checkpoint (each written to a
temporary file, fsynced, then renamed: a reader never sees half a checkpoint) and ``updates``,
the number of updates applied so far, rewritten in place after every update (one ``pwrite``,
which survives ``kill -9``). On start the newest intact checkpoint is restored, and the gap
between ``updates`` and that checkpoint is the number of updates lost.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import pickle
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.config import ModelSpec
from workbench.export.bundle import Bundle, BundleError, load
from workbench.learners.registry import DRIFT_DETECTOR
from workbench.learners.river import gives_proba, instantiate
from workbench.versioning import dumps

_MISSING = object()
_COUNTER_WIDTH = 20


class Refusal(Exception):
    """A request the service refuses: an HTTP status and a JSON-able detail."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None):
        self.status = status
        self.detail = detail
        self.headers = headers
        super().__init__(str(detail))


def invalid(loc: list, msg: str, kind: str) -> dict[str, Any]:
    """One validation error in FastAPI's own shape, so clients parse one format of 422."""
    return {"loc": loc, "msg": msg, "type": kind}


_CHECKS = {
    "number": (lambda v: type(v) in (int, float), "a number"),
    "string": (lambda v: type(v) is str, "a string"),
    "boolean": (lambda v: type(v) is bool, "true or false"),
    # a feature seen with several types: any JSON scalar, never an object or a list
    "any": (lambda v: type(v) in (int, float, str, bool), "a number, a string or true/false"),
}
#: classes named in full in an error about an unknown label
_SHOWN_CLASSES = 20


def shown(value: Any) -> str:
    """A value as an error shows it: short, and safe however deeply it nests."""
    if type(value) in (dict, list):
        return f"an {'object' if type(value) is dict else 'array'}"
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Schema:
    """The manifest's feature schema as a validator: missing, extra, wrongly typed or
    non-finite values are errors naming the field."""

    def __init__(self, features: list[dict[str, Any]], target: dict[str, Any]):
        self.names = frozenset(f["name"] for f in features)
        self.types = {f["name"]: f["type"] for f in features}
        self.fields = [(f["name"], _CHECKS.get(f["type"]), f["nullable"]) for f in features]
        # features the model knows by an integer name arrive as text: "3" → 3
        self.keys = {f["name"]: int(f["name"]) for f in features if f.get("name_type") == "int"}
        self.target = _CHECKS.get(target["type"])
        # every class the run saw, each mapped to itself: a lookup also finds 1 for 1.0 (and
        # for True, which the type check refuses first), answering in the stream's own type
        self.classes = None if target.get("classes") is None else {c: c for c in target["classes"]}

    def features(self, x: Any, loc: list) -> dict:
        if type(x) is not dict:
            raise Refusal(
                422,
                [invalid(loc, "expected an object mapping feature names to values", "dict_type")],
            )
        errors = [
            invalid(
                [*loc, name], "extra feature: the model was not trained on it", "extra_forbidden"
            )
            for name in x.keys() - self.names
        ]
        for name, check, nullable in self.fields:
            value = x.get(name, _MISSING)
            if value is _MISSING or value is None:
                if not nullable:
                    errors.append(invalid([*loc, name], "missing feature", "missing"))
            elif check is not None and not check[0](value):
                errors.append(
                    invalid([*loc, name], f"expected {check[1]}, got {shown(value)}", "type_error")
                )
            elif type(value) is float and not math.isfinite(value):
                errors.append(
                    invalid([*loc, name], f"must be a finite number, got {value}", "finite_number")
                )
        if errors:
            raise Refusal(422, errors)
        if None in x.values():  # River's convention for a missing value is an absent key
            x = {k: v for k, v in x.items() if v is not None}
        if self.keys:
            x = {self.keys.get(k, k): v for k, v in x.items()}
        return x

    def label(self, y: Any, loc: list) -> Any:
        """The label in the stream's own type, or an error: a label of another type or a class
        the model was never trained on is refused (it could only poison the model)."""
        if y is None:
            raise Refusal(422, [invalid(loc, "missing label", "missing")])
        if self.target is not None and not self.target[0](y):
            raise Refusal(422, [invalid(loc, f"expected {self.target[1]}, got {shown(y)}", "type_error")])
        if type(y) is float and not math.isfinite(y):
            raise Refusal(422, [invalid(loc, f"must be a finite number, got {y}", "finite_number")])
        if self.classes is None:
            return y
        known = self.classes.get(y, _MISSING)
        if known is _MISSING:
            classes = list(self.classes)
            listed = ", ".join(json.dumps(c) for c in classes[:_SHOWN_CLASSES])
            more = f" and {len(classes) - _SHOWN_CLASSES:,} more" if len(classes) > _SHOWN_CLASSES else ""
            raise Refusal(
                422,
                [
                    invalid(
                        loc,
                        f"unknown label {shown(y)}: the model was trained on {listed}{more} "
                        "(a new class needs a new run and export)",
                        "label_unknown",
                    )
                ],
            )
        return known

    def example(self) -> dict:
        """A record of the schema's shape (zeros, empty text, false) for /health to ask the
        model before any request came."""
        blank = {"number": 0.0, "string": "", "boolean": False, "any": 0.0}
        x = {name: blank[check_type] for name, check_type in self.types.items() if check_type in blank}
        return {self.keys.get(k, k): v for k, v in x.items()}

    def answer(self, prediction: Any) -> Any:
        """A prediction (or its probabilities) in the stream's terms: River's binary models
        answer True/False to a stream labelled 0/1."""
        if self.classes is None:
            return prediction
        if type(prediction) is dict:
            return {self.classes.get(k, k): p for k, p in prediction.items()}
        return self.classes.get(prediction, prediction)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Service:
    """A bundle's model, live: ``predict``, ``learn``, ``rollback``, ``checkpoint``."""

    def __init__(
        self,
        bundle: str | Path | Bundle,
        state_dir: str | Path | None = None,
        checkpoint_every: int = 1000,
        trust_unsigned: bool = False,
        keep: int = 10,
        read_only: bool = False,
        lock: bool = True,
    ):
        self.trust_unsigned = trust_unsigned
        # a read-only service (serve --read-only, --workers N) predicts only: it shares the state
        # folder with other read-only ones, never with a learning one, and writes nothing there
        self.read_only = read_only
        self.bundle = bundle if isinstance(bundle, Bundle) else load(bundle, trust_unsigned)
        self.state_dir = Path(state_dir) if state_dir else self.bundle.path / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # one learning server per folder; read-only ones share it (they write nothing there)
        self._lock = _lock(self.state_dir, shared=read_only) if lock else None
        self.checkpoint_every = checkpoint_every
        self.keep = keep  # checkpoints kept in state_dir (the bundle's version is always there)
        self._pruned: list[int] = []  # versions dropped from the list, whose files go next
        self._since: list[tuple[dict, Any]] = []  # records learnt since the newest version
        self._base: bytes | None = None  # the newest version's state (None: the bundle's)
        manifest = self.bundle.manifest
        self.schema = Schema(self.bundle.features, self.bundle.target)
        self.classifier = manifest["task"] != "regression"
        self.model = self.bundle.model
        self.proba = self.classifier and gives_proba(self.model)
        drift = self.bundle.settings.get("drift") or {}
        self.detector_name, self.drift_on = drift.get("detector"), drift.get("on", "error")
        self.detector = self._new_detector()
        self.bundle_sha256 = manifest["files"]["model.pkl"]
        self._counter = os.open(self.state_dir / "updates", os.O_RDWR | os.O_CREAT, 0o644)
        self.versions = [
            {
                "version": self.bundle.version,
                "reason": "bundle",
                "n_updates": 0,
                "created_at": manifest["created_at"],
                "sha256": manifest["files"]["model.pkl"],
            }
        ]
        self.version, self.n_updates, self.lost_updates = self.bundle.version, 0, 0
        self.probe = self.schema.example()  # then the last record seen: what /health asks the model
        self._resume()

    # -- start ----------------------------------------------------------------------------------
    def _new_detector(self) -> Any:
        if not self.detector_name:
            return None
        params = (self.bundle.settings.get("drift") or {}).get("params") or {}
        # the same allow-list as a config: settings.yaml names a River detector class, or nothing runs
        spec = ModelSpec(self.detector_name, params)
        return instantiate(spec, "settings.yaml: drift", DRIFT_DETECTOR, "settings.yaml: drift.detector")

    def _resume(self) -> None:
        """Restore the newest intact checkpoint; count updates applied after it as lost."""
        applied = self._read_counter()
        metas = sorted(
            (json.loads(p.read_text()) for p in self.state_dir.glob("v*.json")),
            key=lambda m: m["version"],
        )
        restored = None
        for meta in metas:
            if meta.get("bundle_sha256") != self.bundle_sha256:
                raise BundleError(
                    f"{self.state_dir} holds checkpoints of another bundle: give this one its own "
                    "--state-dir"
                )
            state = (self.state_dir / f"v{meta['version']:06d}.pkl").read_bytes()
            if hashlib.sha256(state).hexdigest() != meta["sha256"]:
                print(
                    f"workbench serve: checkpoint v{meta['version']} does not match its SHA-256; "
                    "skipped",
                    file=sys.stderr,
                )
                continue
            self.versions.append(meta)
            restored = (meta, state)
        self._prune()
        if restored is None:
            self.lost_updates = applied  # none of the updates since the bundle were checkpointed
            self.message = f"serving {self.bundle.learner} v{self.version} from the bundle"
        else:
            meta, state = restored
            self.model, self.detector = _unpack(state)
            self._base = state
            self.version, self.n_updates = meta["version"], meta["n_updates"]
            self.lost_updates = max(0, applied - meta["n_updates"])
            self.message = f"resumed from checkpoint v{self.version} ({self.n_updates:,} updates)"
        if self.lost_updates:
            self.message += (
                f"; lost {self.lost_updates:,} updates applied after the last checkpoint"
            )
        if not self.read_only:
            self._write_counter()

    def _read_counter(self) -> int:
        raw = os.pread(self._counter, _COUNTER_WIDTH, 0).strip()
        return int(raw) if raw else 0

    def _write_counter(self) -> None:
        os.pwrite(self._counter, b"%020d" % self.n_updates, 0)

    # -- requests -------------------------------------------------------------------------------
    def predict_one(self, x: dict) -> dict[str, Any]:
        self.probe = x
        answer = self.schema.answer
        if self.proba:
            proba = answer(self.model.predict_proba_one(x))
            return {
                "prediction": max(proba, key=proba.get) if proba else None,
                "proba": proba,
                "version": self.version,
            }
        return {"prediction": answer(self.model.predict_one(x)), "version": self.version}

    def predict(self, body: dict) -> dict[str, Any]:
        if "features" in body:
            _only(body, ("features",))
            return self.predict_one(self.schema.features(body["features"], ["body", "features"]))
        instances = self._instances(body, ("instances",))
        xs = [self.schema.features(x, ["body", "instances", i]) for i, x in enumerate(instances)]
        self.probe, answer = xs[-1], self.schema.answer
        if self.proba:
            probas = [answer(self.model.predict_proba_one(x)) for x in xs]
            return {
                "predictions": [max(p, key=p.get) if p else None for p in probas],
                "probas": probas,
                "version": self.version,
            }
        return {"predictions": [answer(self.model.predict_one(x)) for x in xs], "version": self.version}

    def learn(self, body: dict) -> tuple[dict[str, Any], tuple[dict[str, Any], bytes] | None]:
        """Learn labelled records; returns the answer and, when one is due, a checkpoint."""
        if "features" in body:
            _only(body, ("features", "label"))
            pairs = [
                (
                    self.schema.features(body["features"], ["body", "features"]),
                    self.schema.label(body.get("label"), ["body", "label"]),
                )
            ]
        else:
            instances = self._instances(body, ("instances", "labels"))
            labels = body.get("labels")
            if type(labels) is not list or len(labels) != len(instances):
                raise Refusal(
                    422,
                    [
                        invalid(
                            ["body", "labels"],
                            f"expected a list of {len(instances)} labels, one per instance",
                            "list_type",
                        )
                    ],
                )
            pairs = [
                (
                    self.schema.features(x, ["body", "instances", i]),
                    self.schema.label(y, ["body", "labels", i]),
                )
                for i, (x, y) in enumerate(zip(instances, labels, strict=True))
            ]
        drifts = self._apply(pairs)
        self.probe = pairs[-1][0]
        self._write_counter()
        snapshot = None
        if self.unsaved() >= self.checkpoint_every:
            snapshot = self.snapshot()
        return {
            "learned": len(pairs),
            "n_updates": self.n_updates,
            "version": self.version,
            "drift": drifts,
        }, snapshot

    def _apply(self, pairs: list[tuple[dict, Any]]) -> list[dict[str, Any]]:
        """Learn validated pairs, all or none: should the model fail on one, the model and the
        detector are put back as they were before the first (a bad batch changes nothing).

        Copying the model before every request would cost more than learning (~20 ms for a
        grown Hoeffding tree); instead the records learnt since the newest version are kept,
        and only a failure pays: that version is restored and they are learnt again."""
        drifts: list[dict[str, Any]] = []
        for i, (x, y) in enumerate(pairs):
            try:
                if self.detector is not None:
                    drifts += self._watch(x, y)
                self.model.learn_one(x, y)
            except Exception as exc:
                self._restore()
                where = "the record" if len(pairs) == 1 else f"instance {i} of {len(pairs)}"
                raise Refusal(
                    500,
                    f"the model failed to learn {where} ({type(exc).__name__}: {exc}); "
                    "nothing of this request was applied",
                ) from exc
            self.n_updates += 1
        self._since.extend(pairs)
        return drifts

    def _restore(self) -> None:
        """The model and detector as they were after the last request that succeeded."""
        newest = self.versions[-1]
        # the newest state in memory: its file may still be on its way to disk
        self.model, self.detector = _unpack(self._base) if self._base is not None else self._state_of(newest)
        for x, y in self._since:
            if self.detector is not None:
                self._watch(x, y)
            self.model.learn_one(x, y)
        self.n_updates = newest["n_updates"] + len(self._since)

    def health(self) -> dict[str, Any]:
        """Whether the model still answers: it predicts the last record it saw (or a blank
        one). ``status`` is 'ok', or 'failing' with the error."""
        report = {"version": self.version, "n_updates": self.n_updates, "lost_updates": self.lost_updates}
        try:
            self.predict_one(self.probe)
        except Exception as exc:
            return {"status": "failing", "error": f"the model fails to predict: {type(exc).__name__}: {exc}", **report}
        return {"status": "ok", **report}

    def unsaved(self) -> int:
        """Updates learned since the newest version was taken."""
        return self.n_updates - self.versions[-1]["n_updates"]

    def _watch(self, x: dict, y: Any) -> list[dict[str, Any]]:
        """Feed the detector the error (or loss) of the prediction made before learning."""
        if self.proba:
            proba = self.model.predict_proba_one(x)
            if self.drift_on == "loss":
                value = -math.log(max(proba.get(y, 0.0), 1e-15))
            else:
                value = float(not proba or max(proba, key=proba.get) != y)
        else:
            pred = self.model.predict_one(x)
            if pred is None:  # an abstention has no error to watch
                return []
            if self.classifier:
                value = float(pred != y)
            else:
                value = (y - pred) ** 2 if self.drift_on == "loss" else abs(y - pred)
        self.detector.update(value)
        return [
            {
                "n_updates": self.n_updates,
                "detector": self.detector_name,
                "kind": kind,
                "statistic": getattr(self.detector, "estimation", None),
                "at": _now(),
            }
            for kind in ("warning", "drift")
            if getattr(self.detector, f"{kind}_detected", False)
        ]

    @staticmethod
    def _instances(body: dict, allowed: tuple[str, ...]) -> list:
        _only(body, allowed)
        instances = body.get("instances")
        if type(instances) is not list or not instances:
            raise Refusal(
                422,
                [
                    invalid(
                        ["body", "instances"],
                        "expected a non-empty list of feature objects "
                        '(or send one record as {"features": {...}})',
                        "list_type",
                    )
                ],
            )
        return instances

    # -- versions -------------------------------------------------------------------------------
    def snapshot(
        self, reason: str = "scheduled", restored_from: int | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """Start a new version from the current model (and detector); the caller persists it
        with ``persist``, off the event loop."""
        state = dumps({"model": self.model, "detector": self.detector})
        self._since, self._base = [], state  # learnt into this version
        self.version = max(v["version"] for v in self.versions) + 1
        meta = {
            "version": self.version,
            "reason": reason,
            "n_updates": self.n_updates,
            "created_at": _now(),
            "sha256": hashlib.sha256(state).hexdigest(),
            "bundle_sha256": self.bundle_sha256,
        }
        if restored_from is not None:
            meta["restored_from"] = restored_from
        self.versions.append(meta)
        self._prune()
        return meta, state

    def _prune(self) -> None:
        """Keep the newest ``keep`` checkpoints in the list (the bundle's version stays); the
        files of the others are deleted by the next ``persist``, after it wrote its own."""
        saved = [v for v in self.versions if v["reason"] != "bundle"]
        dropped = {v["version"] for v in saved[: max(0, len(saved) - self.keep)]}
        if dropped:
            self.versions = [v for v in self.versions if v["version"] not in dropped]
            self._pruned.extend(sorted(dropped))

    def persist(self, snapshot: tuple[dict[str, Any], bytes]) -> None:
        """Write a snapshot: state first, then its meta (the meta marks it complete)."""
        meta, state = snapshot
        stem = self.state_dir / f"v{meta['version']:06d}"
        _write_atomic(stem.with_suffix(".pkl"), state)
        _write_atomic(stem.with_suffix(".json"), json.dumps(meta).encode())
        fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        while self._pruned:
            old = self.state_dir / f"v{self._pruned.pop(0):06d}"
            old.with_suffix(".json").unlink(missing_ok=True)  # the meta first: it marks a checkpoint whole
            old.with_suffix(".pkl").unlink(missing_ok=True)

    def rollback(self, body: dict) -> tuple[dict[str, Any], tuple[dict[str, Any], bytes]]:
        _only(body, ("version",))
        current = self.version
        target = body.get("version")
        if target is None:
            older = [v["version"] for v in self.versions if v["version"] < current]
            if not older:
                raise Refusal(409, f"version {current} has no earlier version to roll back to")
            target = max(older)
        if type(target) is not int:
            raise Refusal(
                422,
                [
                    invalid(
                        ["body", "version"],
                        f"expected an integer version, got {json.dumps(target)}",
                        "int_type",
                    )
                ],
            )
        meta = next((v for v in self.versions if v["version"] == target), None)
        if meta is None:
            have = ", ".join(str(v["version"]) for v in self.versions)
            raise Refusal(404, f"no version {target}; versions: {have}")
        self.model, self.detector = self._state_of(meta)
        snapshot = self.snapshot("rollback", restored_from=target)
        return {"version": self.version, "restored": target, "previous": current}, snapshot

    def _state_of(self, meta: dict[str, Any]) -> tuple[Any, Any]:
        """The model and detector of a version (the bundle's comes with a fresh detector)."""
        if meta["reason"] == "bundle":
            # loaded and verified again: the bundle may have changed on disk since the start
            return load(self.bundle.path, self.trust_unsigned).model, self._new_detector()
        state = (self.state_dir / f"v{meta['version']:06d}.pkl").read_bytes()
        if hashlib.sha256(state).hexdigest() != meta["sha256"]:
            raise BundleError(
                f"checkpoint v{meta['version']} in {self.state_dir} does not match its SHA-256"
            )
        return _unpack(state)

    def info(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {
            "version": self.version,
            "learner": m["learner"],
            "model": m["model"],
            "task": m["task"],
            "run_id": m["run_id"],
            "bundle_version": m["version"],
            "n_updates": self.n_updates,
            "lost_updates": self.lost_updates,
            "drift_detector": self.detector_name,
            "versions_at_export": m["versions"],
        }

    def close(self) -> None:
        os.close(self._counter)
        if self._lock is not None:
            os.close(self._lock)


def _lock(state_dir: Path, shared: bool = False) -> int:
    """Hold ``state_dir/lock`` while serving: a second server on the same folder would write
    over the first one's checkpoints and update counter. The lock goes with the process.
    Read-only servers hold it ``shared``: they write nothing, so they exclude only a writer."""
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise BundleError(
            f"{state_dir} is in use by another `workbench serve` (pid {holder}): two servers on one "
            "state folder would overwrite each other's checkpoints; give this one its own --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _only(body: dict, allowed: tuple[str, ...]) -> None:
    extra = [k for k in body if k not in allowed]
    if extra:
        raise Refusal(
            422,
            [
                invalid(
                    ["body", k], f"unknown field; allowed: {', '.join(allowed)}", "extra_forbidden"
                )
                for k in extra
            ],
        )


def _unpack(state: bytes) -> tuple[Any, Any]:
    """A checkpoint's model and drift detector (call only once its SHA-256 matched)."""
    saved = pickle.loads(state)
    return saved["model"], saved["detector"]
