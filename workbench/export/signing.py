"""Who made a bundle: an HMAC-SHA256 signature over its SHA256SUMS, with a key shared by the
exporter and the server.

SHA256SUMS proves integrity only: whoever can write a bundle can recompute its hashes, and a
``model.pkl`` runs code when it is unpickled. The signature proves the bundle came from someone
holding the key, and is checked before anything in the bundle is read as more than bytes.

Why HMAC-SHA256 and not Ed25519: the exporter and the server are run by the same team and can
share one secret; HMAC is in Python's standard library (no new dependency, nothing to compile)
and has no key-pair format to get wrong. Its limit: whoever can verify can also sign, so the
key must be kept as secret on the server as in the pipeline that exports. Where servers must
not be able to sign, use public-key signatures instead (not built here).

The key comes from ``$WORKBENCH_SIGNING_KEY`` (the text of the key) or from the file named by
``$WORKBENCH_SIGNING_KEY_FILE``; it must be at least 32 bytes (``secrets.token_hex(32)``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from workbench.errors import BundleError

KEY_ENV = "WORKBENCH_SIGNING_KEY"
KEY_FILE_ENV = "WORKBENCH_SIGNING_KEY_FILE"
SIGNATURE = "SIGNATURE"
SUMS = "SHA256SUMS"
ALGORITHM = "hmac-sha256"
MIN_KEY_BYTES = 32
_HOW = (
    f"set ${KEY_ENV} (or ${KEY_FILE_ENV}, a file holding it) to a key of at least {MIN_KEY_BYTES} "
    "bytes, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
)


def signing_key() -> bytes | None:
    """The key from the environment (None when neither variable is set or both are empty)."""
    text, file = os.environ.get(KEY_ENV) or None, os.environ.get(KEY_FILE_ENV) or None
    if text and file:
        raise BundleError(f"both ${KEY_ENV} and ${KEY_FILE_ENV} are set: set only one")
    if file:
        try:
            key = Path(file).read_bytes().strip()
        except OSError as exc:
            raise BundleError(f"${KEY_FILE_ENV} names {file}, which cannot be read: {exc.strerror}") from None
    elif text:
        key = text.strip().encode()
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise BundleError(f"the signing key is {len(key)} bytes long, too short to be safe: {_HOW}")
    return key


def key_id(key: bytes) -> str:
    """A short name for a key that reveals nothing of it (so errors can say which key signed)."""
    return hashlib.sha256(b"workbench-key-id:" + key).hexdigest()[:12]


def sign_bytes(data: bytes, key: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def sign_bundle(path: str | Path) -> Path:
    """Sign the bundle in ``path`` with the key from the environment; returns the signature
    file. Its files are checked against SHA256SUMS first: a tampered bundle is never signed."""
    from workbench.export.bundle import read_sums, read_verified  # bundle.py imports this module

    path = Path(path)
    key = signing_key()
    if key is None:
        raise BundleError(f"no signing key: {_HOW}")
    sums = read_sums(path)
    read_verified(path, sums)
    record = {"algorithm": ALGORITHM, "key_id": key_id(key), "signed": SUMS, "signature": sign_bytes(sums, key)}
    (path / SIGNATURE).write_text(json.dumps(record, indent=2) + "\n")
    return path / SIGNATURE


def verify_bundle(path: str | Path, trust_unsigned: bool = False) -> bool:
    """Check the bundle's signature and every file's hash, reading nothing as more than bytes.

    True when it is signed with this key; False when it is unsigned (or cannot be checked,
    having no key here) and ``trust_unsigned`` accepts that. Raises BundleError otherwise,
    and always for a signature that does not match.
    """
    from workbench.export.bundle import read_sums, read_verified

    path = Path(path)
    sums = read_sums(path)
    signed = check(path, sums, trust_unsigned)
    read_verified(path, sums)
    return signed


def check(path: Path, sums: bytes, trust_unsigned: bool) -> bool:
    """The signature check of ``verify_bundle`` on the SHA256SUMS bytes already read (so the
    bytes checked are the bytes the hashes are then read from)."""
    refuse = "refusing to load it (pass --trust-unsigned to load it anyway)"
    sig_file = path / SIGNATURE
    if not sig_file.is_file():
        if trust_unsigned:
            return False
        raise BundleError(
            f"{path} is not signed: anyone who can write it could have replaced model.pkl (which runs "
            f"code when loaded); {refuse}. Sign bundles at export: {_HOW}; or sign this one with "
            "`workbench sign-bundle`"
        )
    try:
        record = json.loads(sig_file.read_bytes())
        algorithm, signature, signer = record["algorithm"], record["signature"], record.get("key_id", "?")
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{sig_file} is not a workbench signature; {refuse}") from None
    if algorithm != ALGORITHM:
        raise BundleError(f"{sig_file} uses {algorithm!r}; this workbench checks {ALGORITHM} only")
    key = signing_key()
    if key is None:
        if trust_unsigned:
            return False
        raise BundleError(f"{path} is signed (key {signer}), but there is no key here to check it: {_HOW}")
    if not isinstance(signature, str) or not hmac.compare_digest(signature, sign_bytes(sums, key)):
        mine = key_id(key)
        why = f"it was signed with another key ({signer}, this key is {mine})" if signer != mine else "it was altered"
        raise BundleError(f"the signature of {path} does not match: {why}; refusing to load it")
    return True
