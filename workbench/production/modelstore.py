"""The model store: published versions of one deployment, and which one every replica serves.

Two backends behind one small interface:

- a **directory** (the default; works on a shared volume): ``bundle/`` (the bundle the
  deployment started from), ``versions/vNNNNNN.{pkl,json,resume}`` and ``CURRENT``; every file
  is written to a temporary name, fsynced and renamed, so a reader never sees half a version;
  readers notice a new version by polling ``CURRENT``;
- **Redis** (``redis://host:port/db``): versions as keys under a prefix, ``current`` as a key,
  and a pub/sub channel announcing every change of ``current``.

Only the update service publishes new versions. ``rollback`` moves ``current`` back to an
earlier version (every replica follows at once); the update service then adopts that model and
publishes it again as a new version, as a rollback inside a run does. A publish is conditional
on ``current`` being what the publisher last saw, so it never undoes a rollback it has not seen.
Each version keeps its metrics, SHA-256 and signature (see ``signature``).
"""

from __future__ import annotations

import fcntl
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.export.service import _write_atomic
from workbench.production import signing
from workbench.versioning import restore

#: versions kept in the store (the current one is never removed)
KEEP = 20


def bundle_files(path: Path) -> dict[str, bytes]:
    """Every file of a bundle directory (its own state folder and hidden files aside)."""
    return {p.name: p.read_bytes() for p in sorted(Path(path).iterdir()) if p.is_file() and not p.name.startswith(".")}


class StoreError(WorkbenchError):
    """A model store that cannot be used as asked (missing version, conflicting publish)."""


def open_store(url: str | Path) -> ModelStore:
    """``redis://host:port/db[?prefix=NAME]`` or a directory path."""
    text = str(url)
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(text)
    return DirectoryStore(text)


class ModelStore:
    """What both backends provide; ``load`` and ``rollback`` are written once, here."""

    url: str

    def load(self, version: int, trust_unsigned: bool = False) -> tuple[dict[str, Any], Any]:
        """(meta, model) of ``version``, its signature and hash checked before unpickling."""
        meta, state = self.get(version)
        signing.check(meta, f"{self.url} version {version}", trust_unsigned)
        return meta, restore(state, meta["sha256"])

    def rollback(self, to: int | None = None) -> int:
        """Serve ``to`` (default: the version before the current one) again; returns it."""
        versions = [m["version"] for m in self.versions()]
        current = self.current()
        if to is None:
            earlier = [v for v in versions if current is not None and v < current]
            if not earlier:
                raise StoreError(f"{self.url}: no version before {current} to roll back to")
            to = earlier[-1]
        if to not in versions:
            raise StoreError(f"{self.url}: no version {to}; versions kept: {versions}")
        if not self.set_current(to, expect=current):
            raise StoreError(f"{self.url}: the current version changed meanwhile; try again")
        return to

    # -- what each backend implements -----------------------------------------------------------
    def put_bundle(self, path: Path) -> None: ...
    def bundle_files(self) -> dict[str, bytes]: ...
    def publish(self, meta: dict, state: bytes, resume: bytes | None, expect: int | None) -> bool: ...
    def get(self, version: int) -> tuple[dict[str, Any], bytes]: ...
    def resume(self) -> tuple[dict[str, Any], bytes] | None: ...
    def versions(self) -> list[dict[str, Any]]: ...
    def current(self) -> int | None: ...
    def set_current(self, version: int, expect: int | None) -> bool: ...
    def wait(self, seen: int | None, timeout: float) -> int | None: ...
    def close(self) -> None: ...


def version_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A version's meta as published: signed, and stamped with the publish time."""
    return {**meta, "signature": signing.sign(meta["sha256"]), "published_at": time.time()}


class DirectoryStore(ModelStore):
    POLL_SECONDS = 0.02

    def __init__(self, path: str | Path):
        self.root = Path(path)
        self.url = str(self.root)
        (self.root / "versions").mkdir(parents=True, exist_ok=True)

    def _path(self, version: int, ext: str) -> Path:
        return self.root / "versions" / f"v{version:06d}.{ext}"

    @contextmanager
    def _locked(self):
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def put_bundle(self, path: Path) -> None:
        (self.root / "bundle").mkdir(exist_ok=True)
        for name, data in bundle_files(path).items():
            _write_atomic(self.root / "bundle" / name, data)

    def bundle_files(self) -> dict[str, bytes]:
        folder = self.root / "bundle"
        if not folder.is_dir():
            raise StoreError(f"{self.url} holds no bundle yet: start the update service (workbench learner) first")
        return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}

    def publish(self, meta: dict, state: bytes, resume: bytes | None, expect: int | None) -> bool:
        version, meta = meta["version"], version_meta(meta)
        _write_atomic(self._path(version, "pkl"), state)
        if resume is not None:
            _write_atomic(self._path(version, "resume"), resume)
        _write_atomic(self._path(version, "json"), json.dumps(meta, default=str).encode())
        with self._locked():
            if self.current() != expect:
                return False
            _write_atomic(self.root / "CURRENT", str(version).encode())
        self._prune()
        return True

    def _prune(self) -> None:
        metas = self.versions()
        current = self.current()
        for meta in metas[:-KEEP]:
            if meta["version"] != current:
                for ext in ("json", "pkl", "resume"):
                    self._path(meta["version"], ext).unlink(missing_ok=True)

    def get(self, version: int) -> tuple[dict[str, Any], bytes]:
        try:
            meta = json.loads(self._path(version, "json").read_bytes())
            return meta, self._path(version, "pkl").read_bytes()
        except FileNotFoundError:
            raise StoreError(f"{self.url}: no version {version}") from None

    def resume(self) -> tuple[dict[str, Any], bytes] | None:
        for meta in reversed(self.versions()):
            path = self._path(meta["version"], "resume")
            if path.exists():
                return meta, path.read_bytes()
        return None

    def versions(self) -> list[dict[str, Any]]:
        metas = []
        for path in (self.root / "versions").glob("v*.json"):
            try:
                metas.append(json.loads(path.read_bytes()))
            except (FileNotFoundError, ValueError):  # pruned while listing
                continue
        return sorted(metas, key=lambda m: m["version"])

    def current(self) -> int | None:
        try:
            return int((self.root / "CURRENT").read_bytes())
        except (FileNotFoundError, ValueError):
            return None

    def set_current(self, version: int, expect: int | None) -> bool:
        with self._locked():
            if self.current() != expect:
                return False
            _write_atomic(self.root / "CURRENT", str(version).encode())
        return True

    def wait(self, seen: int | None, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            current = self.current()
            if current != seen or time.monotonic() >= deadline:
                return current
            time.sleep(self.POLL_SECONDS)

    def close(self) -> None:
        pass


class RedisStore(ModelStore):
    """Keys ``PREFIX:bundle`` (a hash of files), ``PREFIX:v:N:{meta,state,resume}``,
    ``PREFIX:versions`` (a sorted set), ``PREFIX:current``; channel ``PREFIX:announce``."""

    def __init__(self, url: str):
        import redis  # only a Redis store needs it

        self.url = url
        base, _, query = url.partition("?")
        options = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        self.prefix = options.get("prefix", "workbench")
        self.redis = redis.Redis.from_url(base)
        self.watch_error = redis.WatchError
        self._pubsub = None
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise StoreError(f"model store {url}: cannot reach Redis ({exc})") from None

    def _key(self, *parts: Any) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def put_bundle(self, path: Path) -> None:
        with self.redis.pipeline() as pipe:  # one transaction: a replica never reads half a bundle
            pipe.delete(self._key("bundle"))
            pipe.hset(self._key("bundle"), mapping=bundle_files(path))
            pipe.execute()

    def bundle_files(self) -> dict[str, bytes]:
        files = self.redis.hgetall(self._key("bundle"))
        if not files:
            raise StoreError(f"{self.url} holds no bundle yet: start the update service (workbench learner) first")
        return {k.decode(): v for k, v in files.items()}

    def publish(self, meta: dict, state: bytes, resume: bytes | None, expect: int | None) -> bool:
        version, meta = meta["version"], version_meta(meta)

        def write(pipe) -> None:
            pipe.set(self._key("v", version, "meta"), json.dumps(meta, default=str))
            pipe.set(self._key("v", version, "state"), state)
            if resume is not None:
                pipe.set(self._key("v", version, "resume"), resume)
            pipe.zadd(self._key("versions"), {version: version})

        if not self._move_current(version, expect, write):
            return False
        self._prune()
        return True

    def _move_current(self, version: int, expect: int | None, write=None) -> bool:
        """In one transaction, only if ``current`` is still ``expect``: ``write``, then point
        ``current`` at ``version`` and announce it."""
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(self._key("current"))
                if self._current(pipe.get(self._key("current"))) != expect:
                    return False
                pipe.multi()
                if write is not None:
                    write(pipe)
                pipe.set(self._key("current"), version)
                pipe.publish(self._key("announce"), version)
                pipe.execute()
            except self.watch_error:
                return False
        return True

    def _prune(self) -> None:
        old = [int(v) for v in self.redis.zrange(self._key("versions"), 0, -KEEP - 1)]
        current = self.current()
        for version in old:
            if version != current:
                self.redis.delete(*(self._key("v", version, part) for part in ("meta", "state", "resume")))
                self.redis.zrem(self._key("versions"), version)

    def get(self, version: int) -> tuple[dict[str, Any], bytes]:
        meta, state = self.redis.mget(self._key("v", version, "meta"), self._key("v", version, "state"))
        if meta is None or state is None:
            raise StoreError(f"{self.url}: no version {version}")
        return json.loads(meta), state

    def resume(self) -> tuple[dict[str, Any], bytes] | None:
        for version in reversed(self.redis.zrange(self._key("versions"), 0, -1)):
            meta, resume = self.redis.mget(self._key("v", int(version), "meta"), self._key("v", int(version), "resume"))
            if resume is not None and meta is not None:
                return json.loads(meta), resume
        return None

    def versions(self) -> list[dict[str, Any]]:
        keys = [self._key("v", int(v), "meta") for v in self.redis.zrange(self._key("versions"), 0, -1)]
        return [json.loads(m) for m in (self.redis.mget(keys) if keys else []) if m is not None]

    @staticmethod
    def _current(raw: bytes | None) -> int | None:
        return None if raw is None else int(raw)

    def current(self) -> int | None:
        return self._current(self.redis.get(self._key("current")))

    def set_current(self, version: int, expect: int | None) -> bool:
        return self._move_current(version, expect)

    def wait(self, seen: int | None, timeout: float) -> int | None:
        """The current version once it differs from ``seen`` (an announcement wakes it), or after
        ``timeout`` seconds; the key is read each time, so a missed message costs one timeout."""
        if self._pubsub is None:
            self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(self._key("announce"))
        deadline = time.monotonic() + timeout
        while True:
            current = self.current()
            left = deadline - time.monotonic()
            if current != seen or left <= 0:
                return current
            self._pubsub.get_message(timeout=left)

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
        self.redis.close()
