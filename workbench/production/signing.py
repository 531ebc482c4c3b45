"""Signatures of published versions: HMAC-SHA256 of a version's SHA-256, with the key the bundle
signing uses (``$WORKBENCH_SIGNING_KEY``, or the file named by ``$WORKBENCH_SIGNING_KEY_FILE``).

Without a key, versions are published unsigned and loaded after their hash is checked. With a
key, a replica refuses a version whose signature is missing or wrong: whoever can write to the
store but does not hold the key cannot make replicas unpickle a model of theirs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from workbench.errors import WorkbenchError

KEY_ENV, KEY_FILE_ENV = "WORKBENCH_SIGNING_KEY", "WORKBENCH_SIGNING_KEY_FILE"


class SignatureError(WorkbenchError):
    """A version whose signature is missing or does not match the key."""


def key() -> bytes | None:
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    if os.environ.get(KEY_FILE_ENV):
        return Path(os.environ[KEY_FILE_ENV]).read_bytes().strip()
    return None


def sign(sha256: str) -> str | None:
    secret = key()
    return None if secret is None else hmac.new(secret, sha256.encode(), hashlib.sha256).hexdigest()


def check(meta: dict, where: str) -> None:
    """Refuse ``meta`` when a key is set and its signature does not match it."""
    expected = sign(meta["sha256"])
    if expected is None:
        return
    if not meta.get("signature"):
        raise SignatureError(f"{where} is not signed, and ${KEY_ENV} is set: refusing to load it")
    if not hmac.compare_digest(expected, meta["signature"]):
        raise SignatureError(f"{where}: its signature does not match ${KEY_ENV}: refusing to load it")
