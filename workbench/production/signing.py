"""Signatures of published versions: HMAC-SHA256 of a version's SHA-256 with the key bundles are
signed with (``workbench.export.signing``: ``$WORKBENCH_SIGNING_KEY`` or
``$WORKBENCH_SIGNING_KEY_FILE``).

The update service signs every version it publishes when it has the key. A replica, like
``workbench serve``, refuses a version that is unsigned, signed with another key, or that it has
no key to check, before unpickling it — unless it was started with ``--trust-unsigned`` (then an
unsigned version is loaded after its SHA-256 is checked). Whoever can write to the store but does
not hold the key cannot make replicas run a pickle of theirs.
"""

from __future__ import annotations

import hmac

from workbench.errors import BundleError
from workbench.export.signing import sign_bytes, signing_key

_TRUST = "start the replica with --trust-unsigned to load unsigned versions"


def sign(sha256: str) -> str | None:
    key = signing_key()
    return None if key is None else sign_bytes(sha256.encode(), key)


def check(meta: dict, where: str, trust_unsigned: bool = False) -> None:
    """Refuse ``meta`` unless its signature matches the key (or ``trust_unsigned`` allows none)."""
    signature, key = meta.get("signature"), signing_key()
    if not signature or key is None:
        if trust_unsigned:
            return
        why = "is not signed" if not signature else "is signed, but there is no signing key here to check it"
        raise BundleError(f"{where} {why}: refusing to load it ({_TRUST})")
    if not hmac.compare_digest(signature, sign_bytes(meta["sha256"].encode(), key)):
        raise BundleError(f"{where}: its signature does not match this signing key: refusing to load it")
