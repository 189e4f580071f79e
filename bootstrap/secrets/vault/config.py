"""Settings of the Vault / OpenBao secret store.

:class:`VaultConfig` is built once from the service settings
(:func:`config_from_settings`); it validates itself so a typo fails at start-up,
not at the first certificate. Tokens stay wrapped in :class:`bootstrap.settings.Secret`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from bootstrap.errors import ConfigurationError
from bootstrap.settings import Secret, VaultSettings

__all__ = ["AuthMethod", "CaKeyMode", "Secret", "VaultConfig", "config_from_settings"]

AuthMethod = Literal["token", "approle"]
CaKeyMode = Literal["transit", "kv"]

_AUTH_METHODS: frozenset[str] = frozenset({"token", "approle"})
_CA_KEY_MODES: frozenset[str] = frozenset({"transit", "kv"})
# Mount paths and the key prefix end up inside policy paths and transit key names.
_MOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*")
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class VaultConfig:
    """How to reach and use Vault / OpenBao.

    Attributes:
        addr: Base URL, e.g. ``https://vault.internal:8200``.
        auth: ``"token"`` (a token given here) or ``"approle"`` (role id + secret id file).
        token: The token for ``auth="token"``.
        role_id: The AppRole role id for ``auth="approle"``.
        secret_id_file: File holding the AppRole secret id; read at every login so a
            rotated secret id is picked up without a restart.
        approle_mount: Where the AppRole auth method is mounted.
        ca_bundle: CA certificates to verify Vault's TLS certificate (None: system store).
        namespace: Vault Enterprise / OpenBao namespace (sent as ``X-Vault-Namespace``).
        kv_mount: Mount path of the KV version 2 engine.
        transit_mount: Mount path of the Transit engine.
        key_prefix: Prefix of every KV path and transit key name the service uses.
        ca_key_mode: ``"transit"`` (CA keys never leave Vault) or ``"kv"`` (CA keys are
            kept as PKCS#8 in KV and sign in this process).
        timeout: Seconds to wait for Vault on each request.
    """

    addr: str
    auth: AuthMethod = "token"
    token: Secret | None = None
    role_id: str | None = None
    secret_id_file: Path | None = None
    approle_mount: str = "approle"
    ca_bundle: Path | None = None
    namespace: str | None = None
    kv_mount: str = "secret"
    transit_mount: str = "transit"
    key_prefix: str = "dmboot"
    ca_key_mode: CaKeyMode = "transit"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.addr.startswith(("http://", "https://")):
            raise ValueError(f"addr must be an http:// or https:// URL, not {self.addr!r}")
        if self.auth not in _AUTH_METHODS:
            raise ValueError(f"auth must be 'token' or 'approle', not {self.auth!r}")
        if self.ca_key_mode not in _CA_KEY_MODES:
            raise ValueError(f"ca_key_mode must be 'transit' or 'kv', not {self.ca_key_mode!r}")
        if self.token is not None and not isinstance(self.token, Secret):
            raise TypeError("token must be wrapped in Secret so it never shows in a repr")
        self._check_credentials()
        for name in ("kv_mount", "transit_mount", "approle_mount"):
            if not _MOUNT.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} must be a mount path without leading or trailing '/'")
        if not _PREFIX.fullmatch(self.key_prefix):
            raise ValueError("key_prefix must be 1-64 letters, digits, '-' or '_'")
        if self.timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")

    def _check_credentials(self) -> None:
        if self.auth == "token" and (self.token is None or not self.token.reveal()):
            raise ValueError("token is required when auth is 'token'")
        if self.auth == "approle" and (not self.role_id or self.secret_id_file is None):
            raise ValueError("role_id and secret_id_file are required when auth is 'approle'")

    @property
    def verify(self) -> bool | str:
        """The ``verify`` argument for requests: the CA bundle's path, or True."""
        return str(self.ca_bundle) if self.ca_bundle is not None else True


def config_from_settings(settings: VaultSettings) -> VaultConfig:
    """Build the :class:`VaultConfig` for the ``[vault]`` section of the settings.

    Raises:
        ConfigurationError: a value VaultConfig refuses, with the section named.
    """
    try:
        return VaultConfig(
            addr=settings.addr,
            auth=cast(AuthMethod, settings.auth),
            token=settings.token,
            role_id=settings.role_id,
            secret_id_file=settings.secret_id_file,
            ca_bundle=settings.ca_bundle,
            namespace=settings.namespace,
            kv_mount=settings.kv_mount,
            transit_mount=settings.transit_mount,
            key_prefix=settings.key_prefix,
            ca_key_mode=cast(CaKeyMode, settings.ca_key_mode),
            timeout=settings.timeout,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"[vault] {exc}", field="vault") from None
