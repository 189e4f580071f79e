"""Symmetric keys every replica shares, kept in the secret store's KV (created on first use)."""

from __future__ import annotations

import base64
import secrets

from bootstrap.errors import SecretConflict, SecretNotFound
from bootstrap.secrets.base import SecretStore

__all__ = ["shared_key"]


def shared_key(store: SecretStore, path: str) -> bytes:
    """The 32-byte key at KV ``path`` (member ``key``, base64), created by whichever replica needs it first."""
    try:
        data, _ = store.get(path)
    except SecretNotFound:
        try:
            store.put(path, {"key": base64.b64encode(secrets.token_bytes(32)).decode()}, cas=0)
        except SecretConflict:
            pass  # another replica created it first: use theirs
        data, _ = store.get(path)
    return base64.b64decode(data["key"])
