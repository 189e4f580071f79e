"""A small typed adapter around hvac: one choke point for requests, errors and the token.

Every call goes through :meth:`VaultClient.request`, which

* makes sure the token is valid: logs in (AppRole), renews it (``renew-self``)
  once two thirds of its TTL have passed - as Vault Agent's lifetime watcher does -
  and logs in again when renewal fails or the token nears its max TTL;
* sends the request with hvac's JSON adapter (hvac itself is untyped);
* turns every hvac and requests exception into a :mod:`bootstrap.errors` one
  (see :mod:`bootstrap.secrets.vault.errors`).

Tokens and secret ids are kept in :class:`~bootstrap.secrets.vault.config.Secret`
and never logged. API reference: https://openbao.org/api-docs/auth/token/ and
https://openbao.org/api-docs/auth/approle/.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import hvac

from bootstrap.errors import SecretAccessDenied, SecretStoreError, SecretStoreUnavailable
from bootstrap.secrets.vault.config import Secret, VaultConfig
from bootstrap.secrets.vault.errors import Operation, translate_errors

__all__ = ["Json", "VaultClient"]

Json = dict[str, Any]

log = logging.getLogger(__name__)

# Renew once this fraction of the granted TTL has passed.
_RENEW_AT = 2 / 3


@dataclass(frozen=True)
class _Lease:
    """The token in use and what Vault said about its lifetime."""

    token: Secret
    ttl: float  # seconds granted at login or last renewal; 0 = never expires (root)
    obtained_at: float
    renewable: bool
    capped: bool = False  # the last renewal granted less than before: the max TTL is near

    def due(self, now: float) -> bool:
        return self.ttl > 0 and now >= self.obtained_at + self.ttl * _RENEW_AT


class VaultClient:
    """Authenticated, typed access to one Vault / OpenBao server.

    Args:
        config: Where Vault is and how to log in.
        clock: Monotonic clock, for token lifetimes.
    """

    def __init__(self, config: VaultConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._lease: _Lease | None = None
        # token="" keeps hvac from picking up VAULT_TOKEN or ~/.vault-token; we send
        # our own token on each request. verify is explicit for the same reason (VAULT_CACERT).
        self._hvac = hvac.Client(
            url=config.addr,
            token="",
            verify=config.verify,
            timeout=config.timeout,
            namespace=config.namespace,
        )

    @property
    def config(self) -> VaultConfig:
        """The configuration this client was built with."""
        return self._config

    def read(self, path: str, *, params: Mapping[str, str | int] | None = None) -> Json:
        """GET ``/v1/{path}`` with the service token."""
        return self.request("GET", path, capability="read", params=params)

    def write(self, path: str, body: Mapping[str, Any], *, capability: str = "update") -> Json:
        """POST ``body`` to ``/v1/{path}`` with the service token."""
        return self.request("POST", path, capability=capability, body=body)

    def request(
        self,
        method: str,
        path: str,
        *,
        capability: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> Json:
        """Send one authenticated request; return its JSON body ({} when there is none).

        Raises:
            SecretStoreError: or a subclass; never an hvac or requests exception.
        """
        lease = self._ensure_lease()
        try:
            return self._send(method, path, capability, lease.token, body, params)
        except SecretAccessDenied:
            # The token may have been revoked or have expired behind our back (a
            # restored Vault, a revoked accessor): log in again once, then give up. A
            # token that still looks itself up was refused by policy: no new login.
            if self._config.auth != "approle" or self._token_works(lease.token):
                raise
            fresh = self._relogin(lease)
            return self._send(method, path, capability, fresh.token, body, params)

    def seal_status(self) -> Json:
        """``sys/seal-status``: unauthenticated, answers even when sealed."""
        return self._send("GET", "sys/seal-status", "read", None, None, None)

    def lookup_self(self) -> Json:
        """``auth/token/lookup-self``: the token's policies and remaining TTL."""
        return self.read("auth/token/lookup-self")

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._hvac.adapter.close()

    # -- transport --------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        capability: str,
        token: Secret | None,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str | int] | None,
    ) -> Json:
        headers = {"X-Vault-Token": token.reveal()} if token is not None else {}
        op = Operation(self._config.addr, path, capability)
        with translate_errors(op):
            response = self._hvac.adapter.request(
                method, f"/v1/{path}", headers=headers, json=dict(body) if body is not None else None,
                params=dict(params) if params is not None else None,
            )
        # hvac's JSONAdapter returns a dict for a 200 with a body, and the bare
        # requests.Response otherwise (204 No Content).
        if isinstance(response, dict):
            return response
        return {}

    # -- token lifecycle --------------------------------------------------------------

    def _ensure_lease(self) -> _Lease:
        lease = self._lease
        if lease is not None and not lease.due(self._clock()):
            return lease
        with self._lock:  # one login or renewal at a time, the others wait for its result
            lease = self._lease
            if lease is None:
                lease = self._login() if self._config.auth == "approle" else self._adopt_token()
            elif lease.due(self._clock()):
                lease = self._refresh(lease)
            self._lease = lease
            return lease

    def _relogin(self, failed: _Lease) -> _Lease:
        with self._lock:
            if self._lease is not None and self._lease.token != failed.token:
                return self._lease  # another thread logged in already
            self._lease = self._login()
            return self._lease

    def _token_works(self, token: Secret) -> bool:
        try:
            self._send("GET", "auth/token/lookup-self", "read", token, None, None)
        except SecretAccessDenied:
            return False
        return True

    def _refresh(self, lease: _Lease) -> _Lease:
        approle = self._config.auth == "approle"
        if approle and (lease.capped or not lease.renewable):
            return self._login()
        if not lease.renewable:
            return replace(lease, ttl=0)  # nothing to do; Vault will say when it expires
        try:
            return self._renew(lease)
        except SecretStoreUnavailable:
            raise
        except SecretStoreError as exc:
            if approle:
                log.info("Vault token renewal failed (%s); logging in again", type(exc).__name__)
                return self._login()
            log.warning("Vault token renewal failed: %s; requests will fail once it expires", exc)
            return replace(lease, ttl=0, renewable=False)

    def _renew(self, lease: _Lease) -> _Lease:
        auth = self._send("POST", "auth/token/renew-self", "update", lease.token, {}, None).get("auth")
        granted = _int_field(auth, "lease_duration")
        log.info("renewed the Vault token for %s s", granted)
        return _Lease(
            token=lease.token,
            ttl=granted,
            obtained_at=self._clock(),
            renewable=bool(_field(auth, "renewable")),
            # Vault grants less than asked once the token's max TTL is near.
            capped=granted < lease.ttl,
        )

    def _adopt_token(self) -> _Lease:
        token = self._config.token
        if token is None:  # pragma: no cover - VaultConfig refuses this
            raise SecretAccessDenied("no Vault token configured")
        lease = _Lease(token=token, ttl=0, obtained_at=self._clock(), renewable=False)
        try:
            data = self._send("GET", "auth/token/lookup-self", "read", token, None, None).get("data")
        except SecretAccessDenied:
            log.warning("cannot look up the Vault token (lookup-self denied); it will not be renewed")
            return lease
        return replace(lease, ttl=_int_field(data, "ttl"), renewable=bool(_field(data, "renewable")))

    def _login(self) -> _Lease:
        body = {"role_id": self._config.role_id, "secret_id": self._read_secret_id().reveal()}
        path = f"auth/{self._config.approle_mount}/login"
        try:
            auth = self._send("POST", path, "update", None, body, None).get("auth")
        except SecretStoreUnavailable:
            raise
        except SecretStoreError as exc:  # 400 "invalid role or secret ID", 403 on an unknown mount
            raise SecretAccessDenied(
                f"AppRole login at {path} failed ({exc.message}); check role_id and secret_id_file"
            ) from exc
        token = _field(auth, "client_token")
        if not isinstance(token, str) or not token:
            raise SecretStoreError(f"Vault's answer to {path} carries no client token")
        ttl = _int_field(auth, "lease_duration")
        log.info("logged in to Vault with AppRole; token TTL %s s", ttl)
        return _Lease(Secret(token), ttl, self._clock(), bool(_field(auth, "renewable")))

    def _read_secret_id(self) -> Secret:
        path = self._config.secret_id_file
        try:
            value = path.read_text(encoding="utf-8").strip() if path is not None else ""
        except OSError as exc:
            raise SecretAccessDenied(
                f"cannot read the AppRole secret id from {path} (secret_id_file): {exc.strerror}"
            ) from None
        if not value:
            raise SecretAccessDenied(f"the AppRole secret id file {path} (secret_id_file) is empty")
        return Secret(value)


def _field(block: object, name: str) -> object:
    if not isinstance(block, dict) or name not in block:
        raise SecretStoreError(f"unexpected answer from Vault: no {name!r}")
    return block[name]


def _int_field(block: object, name: str) -> int:
    value = _field(block, name)
    if not isinstance(value, int):
        raise SecretStoreError(f"unexpected answer from Vault: {name!r} is not a number")
    return value
