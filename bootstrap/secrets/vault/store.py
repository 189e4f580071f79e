"""The Vault / OpenBao backend of :class:`~bootstrap.secrets.base.SecretStore`.

Layout inside Vault (``prefix`` is ``VaultConfig.key_prefix``)::

    {kv_mount}/data/{prefix}/secrets/{path}   secrets (KV v2, check-and-set)
    {kv_mount}/data/{prefix}/keys/{name}      CA keys as PKCS#8 PEM (ca_key_mode "kv")
    {transit_mount}/keys/{prefix}-{name}      CA keys in Transit, never exportable

References keep the caller's names (``KeyRef.name``, ``SecretRef.path``); the prefix
is added here. The pieces: :mod:`~bootstrap.secrets.vault.config` (settings),
:mod:`~bootstrap.secrets.vault.client` (the typed hvac adapter, token lifecycle),
:mod:`~bootstrap.secrets.vault.transit` (the Transit signer),
:mod:`~bootstrap.secrets.vault.policy` (the policy) and
:mod:`~bootstrap.secrets.vault.check` (``dmboot secrets check``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bootstrap.errors import SecretConflict, SecretNotFound, SecretStoreError
from bootstrap.secrets.base import CheckResult, KeyRef, SecretRef
from bootstrap.secrets.vault.check import run_checks
from bootstrap.secrets.vault.client import Json, VaultClient
from bootstrap.secrets.vault.config import Secret, VaultConfig, config_from_settings
from bootstrap.secrets.vault.policy import policy_hcl
from bootstrap.secrets.vault.transit import (
    VaultTransitSigner,
    key_type_from_transit,
    public_key_from_transit,
    transit_key_type,
)
from pki.errors import PkiError
from pki.keys import KeyType, PrivateKey, classify_public_key, generate_private_key
from pki.signers import LocalSigner, Signer

__all__ = [
    "KV_BACKEND",
    "TRANSIT_BACKEND",
    "Secret",
    "VaultConfig",
    "VaultSecretStore",
    "VaultTransitSigner",
    "config_from_settings",
    "policy_hcl",
]

TRANSIT_BACKEND = "vault-transit"
KV_BACKEND = "vault-kv"

_SIGNING_KEYS = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SEGMENT = re.compile(r"[A-Za-z0-9_@=+:-][A-Za-z0-9_.@=+:-]*")


class VaultSecretStore:
    """Secrets in KV v2 and CA keys in Transit (or KV), behind one typed adapter.

    Args:
        config: Where Vault is, how to log in, mounts and CA key mode.
        client: An adapter to share (tests, the CLI); built from ``config`` if omitted.
    """

    def __init__(self, config: VaultConfig, *, client: VaultClient | None = None) -> None:
        self._config = config
        self._client = client if client is not None else VaultClient(config)
        self._signers: dict[KeyRef, Signer] = {}
        self._signers_lock = threading.Lock()

    @property
    def backend(self) -> str:
        """``vault-transit`` or ``vault-kv``: where :meth:`create_key` puts new keys."""
        return TRANSIT_BACKEND if self._config.ca_key_mode == "transit" else KV_BACKEND

    @property
    def client(self) -> VaultClient:
        """The Vault adapter this store uses."""
        return self._client

    # -- secrets (KV v2: https://openbao.org/api-docs/secret/kv/kv-v2/) ---------------

    def put(self, path: str, data: Mapping[str, str], *, cas: int | None = None) -> SecretRef:
        """Write ``data`` at ``path``; ``cas`` is the version to replace (0: must not exist)."""
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise TypeError("data must map str to str")
        version = self._kv_put(self._secret_path(path), dict(data), cas)
        return SecretRef(KV_BACKEND, path, version)

    def get(self, path: str, version: int | None = None) -> tuple[dict[str, str], SecretRef]:
        """Read the secret at ``path`` (the latest version unless ``version`` is given)."""
        data, found = self._kv_get(self._secret_path(path), version)
        return data, SecretRef(KV_BACKEND, path, found)

    def _secret_path(self, path: str) -> str:
        segments = path.split("/")
        if not path or any(s in {".", ".."} or not _SEGMENT.fullmatch(s) for s in segments):
            raise ValueError(f"path {path!r} is not a secret path (segments of letters, digits, _.@=+:-)")
        return f"{self._config.key_prefix}/secrets/{path}"

    def _kv_put(self, path: str, data: dict[str, str], cas: int | None) -> int:
        body: Json = {"data": data}
        if cas is not None:
            body["options"] = {"cas": cas}
        capability = "create" if cas == 0 else "create/update"
        answer = self._client.write(f"{self._config.kv_mount}/data/{path}", body, capability=capability)
        return _version(answer.get("data"), "version")

    def _kv_get(self, path: str, version: int | None) -> tuple[dict[str, str], int]:
        params = {"version": version} if version is not None else None
        answer = self._client.read(f"{self._config.kv_mount}/data/{path}", params=params)
        block = answer.get("data")
        if not isinstance(block, dict) or not isinstance(block.get("data"), dict):
            # OpenBao answers 404 for a deleted version; older Vault answered 200 with data null.
            raise SecretNotFound(f"{path} (version {version or 'latest'}) is deleted in Vault")
        return _string_map(block["data"]), _version(block.get("metadata"), "version")

    # -- keys -------------------------------------------------------------------------

    def create_key(self, name: str, key_type: KeyType) -> KeyRef:
        """Create key ``name`` (version 1) in Transit, or locally and kept in KV in ``kv`` mode.

        Raises:
            SecretConflict: a key of that name exists already.
        """
        _check_name(name)
        if self._config.ca_key_mode == "kv":
            pem = _private_pem(generate_private_key(key_type))
            data = {"private_key": pem, "key_type": key_type.value}
            version = self._kv_put(self._kv_key_path(name), data, cas=0)
            return KeyRef(KV_BACKEND, name, version, key_type)
        return self._transit_create(name, key_type)

    def rotate_key(self, name: str) -> KeyRef:
        """Add a new version of key ``name``; older versions keep signing."""
        _check_name(name)
        if self._config.ca_key_mode == "kv":
            current, version = self._kv_get(self._kv_key_path(name), None)
            key_type = _stored_key_type(current)
            pem = _private_pem(generate_private_key(key_type))
            new = self._kv_put(self._kv_key_path(name), {"private_key": pem, "key_type": key_type.value},
                               cas=version)
            return KeyRef(KV_BACKEND, name, new, key_type)
        key_type = key_type_from_transit(str(self._transit_read(name).get("type")))
        answer = self._client.write(f"{self._transit_key_path(name)}/rotate", {}, capability="update")
        info = _data_or(answer, lambda: self._transit_read(name))
        return KeyRef(TRANSIT_BACKEND, name, _version(info, "latest_version"), key_type)

    def signer(self, ref: KeyRef) -> Signer:
        """A signer for ``ref``: Transit signs remotely, a KV key is loaded once and kept in memory.

        Raises:
            SecretNotFound: no such key or version.
        """
        with self._signers_lock:
            cached = self._signers.get(ref)
        if cached is not None:
            return cached
        if ref.backend == TRANSIT_BACKEND:
            signer: Signer = self._transit_signer(ref)
        elif ref.backend == KV_BACKEND:
            signer = self._kv_signer(ref)
        else:
            raise ValueError(f"key reference {ref.to_uri()!r} is not a Vault key")
        with self._signers_lock:
            return self._signers.setdefault(ref, signer)

    def _kv_key_path(self, name: str) -> str:
        return f"{self._config.key_prefix}/keys/{name}"

    def _kv_signer(self, ref: KeyRef) -> LocalSigner:
        data, _ = self._kv_get(self._kv_key_path(ref.name), ref.version)
        what = f"CA key {ref.name} v{ref.version} in KV"
        try:
            key = serialization.load_pem_private_key(_entry(data, "private_key").encode(), password=None)
            if not isinstance(key, _SIGNING_KEYS):
                raise TypeError(type(key).__name__)
            key_type = classify_public_key(key.public_key())
        except (ValueError, TypeError, PkiError) as exc:
            raise SecretStoreError(f"{what} is not a usable PEM key: {exc}") from None
        if key_type is not ref.key_type:
            raise SecretStoreError(f"{what} is {key_type.value}, not {ref.key_type.value}")
        return LocalSigner(key)

    # -- Transit (https://openbao.org/api-docs/secret/transit/) ------------------------

    def _transit_key_path(self, name: str) -> str:
        return f"{self._config.transit_mount}/keys/{self._config.key_prefix}-{name}"

    def _transit_read(self, name: str) -> Json:
        block = self._client.read(self._transit_key_path(name)).get("data")
        if not isinstance(block, dict):
            raise SecretNotFound(f"no Transit key {name}")
        return block

    def _transit_create(self, name: str, key_type: KeyType) -> KeyRef:
        # Creating an existing key succeeds silently in Transit, so look first. A
        # replica racing us would get the same key back; the check below catches a
        # key of another type. exportable is left out: it defaults to false, and the
        # policy refuses the parameter.
        try:
            self._transit_read(name)
        except SecretNotFound:
            pass
        else:
            raise SecretConflict(f"Transit key {name} exists already")
        path = self._transit_key_path(name)
        answer = self._client.write(path, {"type": transit_key_type(key_type)}, capability="create")
        # OpenBao answers with the key; older Vault answers 204 and we read it back.
        info = _data_or(answer, lambda: self._transit_read(name))
        if info.get("type") != transit_key_type(key_type) or info.get("exportable"):
            raise SecretConflict(f"Transit key {name} exists with other settings ({info.get('type')})")
        return KeyRef(TRANSIT_BACKEND, name, _version(info, "latest_version"), key_type)

    def _transit_signer(self, ref: KeyRef) -> VaultTransitSigner:
        info = self._transit_read(ref.name)
        if key_type_from_transit(str(info.get("type"))) is not ref.key_type:
            raise SecretStoreError(f"Transit key {ref.name} is {info.get('type')}, not {ref.key_type.value}")
        return VaultTransitSigner(
            self._client,
            mount=self._config.transit_mount,
            key_name=f"{self._config.key_prefix}-{ref.name}",
            version=ref.version,
            key_type=ref.key_type,
            public_key=public_key_from_transit(info, ref.version),
        )

    # -- health -----------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        """Reachable, unsealed, authenticated, mounts, and the policy's capabilities."""
        return run_checks(self._client)

    def close(self) -> None:
        """Release the HTTP connections and forget cached signers."""
        with self._signers_lock:
            self._signers.clear()
        self._client.close()

    def __repr__(self) -> str:
        return f"VaultSecretStore({self._config.addr!r}, backend={self.backend!r})"


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"key name {name!r} must be 1-128 letters, digits, '_', '.' or '-'")


def _private_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _string_map(data: Mapping[str, object]) -> dict[str, str]:
    if not all(isinstance(v, str) for v in data.values()):
        raise SecretStoreError("a secret in Vault holds values that are not strings")
    return {str(k): str(v) for k, v in data.items()}


def _entry(data: Mapping[str, str], name: str) -> str:
    try:
        return data[name]
    except KeyError:
        raise SecretStoreError(f"the CA key record in KV has no {name!r}") from None


def _version(block: object, name: str) -> int:
    value = block.get(name) if isinstance(block, dict) else None
    if not isinstance(value, int):
        raise SecretStoreError(f"unexpected answer from Vault: no {name!r}")
    return value


def _stored_key_type(record: Mapping[str, str]) -> KeyType:
    try:
        return KeyType(_entry(record, "key_type"))
    except ValueError:
        raise SecretStoreError(f"unknown key type {record['key_type']!r} in a CA key record") from None


def _data_or(answer: Json, fallback: Callable[[], Json]) -> Json:
    block = answer.get("data")
    return block if isinstance(block, dict) else fallback()
