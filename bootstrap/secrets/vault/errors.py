"""Translate hvac and requests exceptions into the project's SecretStoreError tree.

hvac raises one exception class per HTTP status (``hvac.exceptions.VaultError``
and subclasses, see ``hvac.utils.raise_for_error``) and lets requests' transport
errors through. Nothing of either may leave the Vault adapter: callers only ever
see :mod:`bootstrap.errors`. Status codes are documented at
https://openbao.org/api-docs/#http-status-codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import hvac.exceptions
import requests

from bootstrap.errors import (
    SecretAccessDenied,
    SecretConflict,
    SecretNotFound,
    SecretStoreError,
    SecretStoreUnavailable,
)

__all__ = ["Operation", "translate_errors"]

# Seconds a caller should wait before retrying, by cause.
_RETRY_UNREACHABLE = 5
_RETRY_SEALED = 15
_RETRY_THROTTLED = 2
_RETRY_NOT_CAUGHT_UP = 1


@dataclass(frozen=True)
class Operation:
    """What was attempted, for error messages: Vault address, API path and the capability it needs."""

    addr: str
    path: str
    capability: str


@contextmanager
def translate_errors(op: Operation) -> Iterator[None]:
    """Run the body; re-raise any hvac or requests exception as a SecretStoreError."""
    try:
        yield
    except hvac.exceptions.VaultError as exc:
        raise _from_vault_error(exc, op) from exc
    except requests.exceptions.RequestException as exc:
        raise _from_transport_error(exc, op) from exc


def _reason(exc: hvac.exceptions.VaultError) -> str:
    errors = exc.errors if isinstance(exc.errors, list) else [exc.errors] if exc.errors else []
    text = "; ".join(" ".join(str(e).split()) for e in errors if e)
    return text or type(exc).__name__


def _from_vault_error(exc: hvac.exceptions.VaultError, op: Operation) -> SecretStoreError:
    reason = _reason(exc)
    if isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.Unauthorized):
        return SecretAccessDenied(
            f"Vault denied '{op.capability}' on {op.path} ({reason}). The token's policy must allow it: "
            "run `dmboot secrets policy` and load its output with `bao policy write`."
        )
    if isinstance(exc, hvac.exceptions.InvalidPath):
        return SecretNotFound(f"nothing at {op.path} in Vault")
    if isinstance(exc, hvac.exceptions.InvalidRequest):
        return _from_bad_request(reason, op)
    unavailable = _unavailable(exc, reason, op)
    if unavailable is not None:
        return unavailable
    return SecretStoreError(f"Vault refused {op.path}: {reason}")


def _from_bad_request(reason: str, op: Operation) -> SecretStoreError:
    # KV v2 answers a lost check-and-set with 400, not 409:
    # https://openbao.org/api-docs/secret/kv/kv-v2/#create-update-secret
    if "check-and-set" in reason:
        return SecretConflict(f"{op.path} changed under us (check-and-set lost): {reason}")
    # Transit answers an unknown key with 400 "key not found" / "signing key not found".
    if "not found" in reason:
        return SecretNotFound(f"nothing at {op.path} in Vault ({reason})")
    return SecretStoreError(f"Vault rejected the request to {op.path}: {reason}")


def _unavailable(
    exc: hvac.exceptions.VaultError, reason: str, op: Operation
) -> SecretStoreUnavailable | None:
    where = f"Vault at {op.addr}"
    if isinstance(exc, hvac.exceptions.VaultDown):
        return SecretStoreUnavailable(f"{where} is sealed or standby ({reason})", retry_after=_RETRY_SEALED)
    if isinstance(exc, hvac.exceptions.VaultNotInitialized):
        return SecretStoreUnavailable(f"{where} is not initialized ({reason})", retry_after=_RETRY_SEALED)
    if isinstance(exc, hvac.exceptions.RateLimitExceeded):
        return SecretStoreUnavailable(f"{where} is throttling us ({reason})", retry_after=_RETRY_THROTTLED)
    if isinstance(exc, hvac.exceptions.PreconditionFailed):
        # 412: a performance standby has not caught up with our last write yet.
        return SecretStoreUnavailable(f"{where} is catching up ({reason})", retry_after=_RETRY_NOT_CAUGHT_UP)
    if isinstance(
        exc,
        hvac.exceptions.InternalServerError | hvac.exceptions.BadGateway | hvac.exceptions.UnexpectedError,
    ):
        return SecretStoreUnavailable(
            f"{where} failed on {op.path} ({reason})", retry_after=_RETRY_UNREACHABLE
        )
    return None


def _from_transport_error(exc: requests.exceptions.RequestException, op: Operation) -> SecretStoreError:
    # SSLError is a ConnectionError: test it first, it needs a different fix.
    if isinstance(exc, requests.exceptions.SSLError):
        return SecretStoreUnavailable(
            f"TLS with Vault at {op.addr} failed; check ca_bundle and the server certificate",
            retry_after=_RETRY_UNREACHABLE,
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return SecretStoreUnavailable(f"Vault at {op.addr} timed out", retry_after=_RETRY_UNREACHABLE)
    return SecretStoreUnavailable(
        f"Vault at {op.addr} is unreachable ({type(exc).__name__})", retry_after=_RETRY_UNREACHABLE
    )
