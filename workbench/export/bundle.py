"""A bundle: one learner of a run, ready for production, with the proof of what it is.

Layout of a bundle directory::

    config.yaml     the run's config with only this learner: re-runnable with `workbench run`
    model.pkl       the pickled model at the chosen checkpoint
    settings.yaml   drift detector and guard settings the service applies
    manifest.json   versions, feature schema, metrics at export, SHA-256 of the files above
    SHA256SUMS      SHA-256 of every file, manifest included (`sha256sum -c SHA256SUMS` works)
    SIGNATURE       HMAC-SHA256 of SHA256SUMS with the signing key (see signing.py)

Loading checks the signature, then every hash, before anything is unpickled: a pickle runs
code when it is read.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import yaml

from workbench import __version__
from workbench.config import YamlLoader
from workbench.errors import BundleError
from workbench.export import signing
from workbench.store import DEFAULT_DB, Store

#: 2: signed, and the target's type and classes are always known
FORMAT = 2
MODEL, CONFIG, SETTINGS, MANIFEST, SUMS = (
    "model.pkl",
    "config.yaml",
    "settings.yaml",
    "manifest.json",
    "SHA256SUMS",
)
class UnsignedBundleWarning(UserWarning):
    """A bundle was exported without a signing key: servers refuse it unless trusted."""


#: the detector a service runs when the run's config has no ``drift`` key
DEFAULT_DRIFT = {"detector": "river.drift.ADWIN", "params": {}, "on": "error", "action": "none"}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def versions() -> dict[str, str | None]:
    """The versions a bundle records and a loader compares."""

    def installed(name: str) -> str | None:
        try:
            return package_version(name)
        except PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "river": installed("river"),
        "scikit-learn": installed("scikit-learn"),
        "workbench": __version__,
    }


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    manifest: dict[str, Any]
    model: Any
    config: dict[str, Any]
    settings: dict[str, Any]

    @property
    def learner(self) -> str:
        return self.manifest["learner"]

    @property
    def version(self) -> int:
        return self.manifest["version"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def features(self) -> list[dict[str, Any]]:
        return self.manifest["schema"]["features"]

    @property
    def target(self) -> dict[str, Any]:
        return self.manifest["schema"]["target"]


def export(
    run: Any,
    learner: str,
    out: str | Path,
    db: str | Path | None = None,
    version: int | None = None,
) -> Path:
    """Write ``learner`` of ``run`` (a Run or a run id) at checkpoint ``version`` (default: the
    latest) as a bundle in ``out``; returns the bundle's path."""
    store = run.store if hasattr(run, "store") and db is None else Store(db or DEFAULT_DB)
    run_id = getattr(run, "id", run)
    info = store.run(run_id)
    cp = store.checkpoint_state(run_id, learner, version)
    schema = store.feature_schema(run_id).to_dict("records")
    if not schema:
        raise BundleError(
            f"run {run_id!r} has no recorded feature schema (it was replayed by an older "
            "workbench): replay it again to export it"
        )
    config = _learner_config(info["config"], learner)
    drift = _drift_for(info["config"].get("drift"), learner)
    settings = {
        "drift": drift or DEFAULT_DRIFT,
        "drift_from": "run" if drift else "default",
        "guard": info["config"].get("guard"),
    }
    files = {
        CONFIG: yaml.safe_dump(config, sort_keys=False).encode(),
        MODEL: cp["state"],
        SETTINGS: yaml.safe_dump(settings, sort_keys=False).encode(),
    }
    if _sha256(cp["state"]) != cp["sha256"]:
        raise BundleError(
            f"checkpoint {learner} v{cp['version']} of run {run_id} does not match its SHA-256 "
            f"in {store.path}"
        )
    learner_row = store.learners(run_id).query("learner == @learner")
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "run_id": run_id,
        "run_name": info["name"],
        "db": str(Path(store.path).resolve()),
        "learner": learner,
        "model": next(lr["model"] for lr in config["learners"]),
        "kind": learner_row.kind.iloc[0] if not learner_row.empty else "online",
        "task": info["task"],
        "version": int(cp["version"]),
        "seq": int(cp["seq"]),
        "checkpoint_reason": cp["reason"],
        "versions": versions(),
        "schema": {
            "features": [
                {k: f[k] for k in ("name", "type", "nullable", "name_type")}
                for f in schema
                if f["role"] == "feature"
            ],
            "target": _target(store, run_id, info["task"], schema),
        },
        "metrics": cp["metrics"],
        "files": {name: _sha256(data) for name, data in files.items()},
    }
    files[MANIFEST] = json.dumps(manifest, indent=2, default=str).encode()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / signing.SIGNATURE).unlink(missing_ok=True)  # a signature of an earlier export
    for name, data in files.items():
        (out / name).write_bytes(data)
    (out / SUMS).write_text("".join(f"{_sha256(data)}  {name}\n" for name, data in files.items()))
    if signing.signing_key() is not None:
        signing.sign_bundle(out)
    else:
        warnings.warn(
            f"{out} is NOT SIGNED: no ${signing.KEY_ENV} or ${signing.KEY_FILE_ENV} is set, so "
            "`workbench serve` and `verify-bundle` will refuse it unless given --trust-unsigned. "
            "Sign it where the key is kept with `workbench sign-bundle`.",
            UnsignedBundleWarning,
            stacklevel=2,
        )
    return out


def _target(store: Store, run_id: str, task: str, schema: list[dict[str, Any]]) -> dict[str, Any]:
    """The target's type (boolean, number, string) and, for a classifier, every class the run
    saw labelled: what a service accepts as a label, and answers in."""
    kind = next(f["type"] for f in schema if f["role"] == "target")
    if task == "regression":
        return {"type": "number", "nullable": False}
    texts = store.sql(
        "SELECT DISTINCT y_true FROM steps WHERE run_id = ? AND y_true IS NOT NULL ORDER BY 1", [run_id]
    ).y_true.tolist()
    if not texts:
        raise BundleError(f"run {run_id!r} has no labelled step: nothing says which classes a label may be")
    if kind not in ("boolean", "number", "string"):  # the replay's sample held no label (joined later)
        kind = _kind_of(texts)
    return {"type": kind, "nullable": False, "classes": [_parse_label(t, kind) for t in texts]}


def _kind_of(texts: list[str]) -> str:
    if set(texts) <= {"true", "false"}:
        return "boolean"
    try:
        [float(t) for t in texts]
    except ValueError:
        return "string"
    return "number"


def _parse_label(text: str, kind: str) -> Any:
    """A label as the store wrote it (text) back in the stream's own type."""
    if kind == "boolean":
        return text == "true"
    if kind == "number":
        number = float(text)
        return int(number) if number.is_integer() else number
    return text


def _drift_for(drift, learner: str) -> dict | None:
    """The detector that watched ``learner`` in the run: configs hold one mapping or a list of
    them, each for every learner or for the ones it names (feature-only entries watch none)."""
    entries = drift if isinstance(drift, list) else [drift] if drift else []
    for entry in entries:
        if entry.get("detector") and (not entry.get("learners") or learner in entry["learners"]):
            return {k: v for k, v in entry.items() if k in ("detector", "params", "on", "action")}
    return None


def _learner_config(config: dict[str, Any], learner: str) -> dict[str, Any]:
    """The run's config reduced to one learner, so `workbench run` replays just that learner."""
    specs = [lr for lr in config.get("learners", []) if lr.get("name") == learner]
    if not specs:
        names = ", ".join(lr.get("name", "?") for lr in config.get("learners", []))
        raise BundleError(f"the run has no online learner {learner!r}; learners: {names}")
    return {**config, "learners": specs}


def read_sums(path: Path) -> bytes:
    if not (path / SUMS).is_file():
        raise BundleError(f"{path} is not a bundle: it has no {SUMS} (make one with `workbench export`)")
    return (path / SUMS).read_bytes()


def read_verified(path: str | Path, sums: bytes | None = None) -> dict[str, bytes]:
    """Every file of the bundle, each checked against SHA256SUMS (``sums``: its bytes, already
    read) and the manifest.

    Raises BundleError naming the first file that is missing, extra or altered.
    """
    path = Path(path)
    sums = read_sums(path) if sums is None else sums
    expected: dict[str, str] = {}
    for line in sums.decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        expected[name] = digest
    missing = {MODEL, CONFIG, SETTINGS, MANIFEST} - set(expected)
    if missing:
        raise BundleError(
            f"{path / SUMS} does not list {', '.join(sorted(missing))}: refusing the bundle"
        )
    data = {}
    for name, digest in expected.items():
        if "/" in name or name.startswith("."):
            raise BundleError(f"{path / SUMS} names {name!r}, which is not a file of the bundle")
        try:
            data[name] = (path / name).read_bytes()
        except FileNotFoundError:
            raise BundleError(f"{path / name} is missing: the bundle is incomplete") from None
        if _sha256(data[name]) != digest:
            raise BundleError(
                f"{path / name} does not match its SHA-256 in {SUMS} (expected {digest[:12]}…, got "
                f"{_sha256(data[name])[:12]}…): the bundle was altered after export; "
                "refusing to load it"
            )
    manifest = json.loads(data[MANIFEST])
    for name, digest in manifest.get("files", {}).items():
        if expected.get(name) != digest:
            raise BundleError(
                f"{name}: {MANIFEST} and {SUMS} disagree on its SHA-256; refusing the bundle"
            )
    return data


def check_compatible(manifest: dict[str, Any]) -> None:
    """Refuse a bundle whose pickle was written by another River major.minor version."""
    made, here = manifest["versions"].get("river"), versions()["river"]
    if made is None or here is None or made.split(".")[:2] != here.split(".")[:2]:
        raise BundleError(
            f"the bundle was made with River {made}, this environment has River {here}: a pickled "
            f"River model is only readable by the same minor version; install river=={made}"
        )
    if manifest.get("format") != FORMAT:
        raise BundleError(
            f"bundle format {manifest.get('format')} is not supported "
            f"(this workbench reads {FORMAT})"
        )


def load(path: str | Path, trust_unsigned: bool = False) -> Bundle:
    """Check the signature (an unsigned bundle only with ``trust_unsigned``), every hash and
    the River version, then unpickle the model."""
    path = Path(path)
    sums = read_sums(path)
    signing.check(path, sums, trust_unsigned)
    data = read_verified(path, sums)
    manifest = json.loads(data[MANIFEST])
    check_compatible(manifest)
    model = pickle.loads(data[MODEL])
    return Bundle(
        path, manifest, model, yaml.load(data[CONFIG], Loader=YamlLoader), yaml.load(data[SETTINGS], Loader=YamlLoader)
    )
