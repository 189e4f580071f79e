"""The SecretStore protocol: where CA keys and shared secrets live.

Two implementations, chosen by settings (``secrets.backend``):

* ``embedded`` (:mod:`bootstrap.secrets.embedded`) - encrypted files in the data
  directory, for a single machine;
* ``vault`` (:mod:`bootstrap.secrets.vault.store`) - HashiCorp Vault / OpenBao: KV v2
  for secrets read back, Transit for CA keys that never leave Vault.

The database only ever holds references (:class:`KeyRef`, :class:`SecretRef`),
never the secret itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pki.keys import KeyType
from pki.signers import Signer

__all__ = ["CheckResult", "KeyRef", "SecretRef", "SecretStore"]


@dataclass(frozen=True)
class KeyRef:
    """Where a signing key lives: backend, name and version. Safe to store and log."""

    backend: str
    name: str
    version: int
    key_type: KeyType

    def to_uri(self) -> str:
        """``backend:name#version;key_type``, the form kept in the database."""
        return f"{self.backend}:{self.name}#{self.version};{self.key_type.value}"

    @classmethod
    def from_uri(cls, uri: str) -> KeyRef:
        try:
            backend, rest = uri.split(":", 1)
            name, rest = rest.rsplit("#", 1)
            version, key_type = rest.split(";", 1)
            return cls(backend, name, int(version), KeyType(key_type))
        except ValueError:
            raise ValueError(f"not a key reference: {uri!r}") from None


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: backend, path and version. Safe to store and log."""

    backend: str
    path: str
    version: int

    def to_uri(self) -> str:
        return f"{self.backend}:{self.path}#{self.version}"


@dataclass(frozen=True)
class CheckResult:
    """One line of ``dmboot secrets check``."""

    name: str
    ok: bool
    detail: str = ""
    hint: str = field(default="")


@runtime_checkable
class SecretStore(Protocol):
    """Keeps signing keys and shared secrets; hands out references and signers."""

    @property
    def backend(self) -> str:
        """The backend's name as it appears in references (``embedded``, ``vault-transit``...)."""
        ...

    def create_key(self, name: str, key_type: KeyType) -> KeyRef:
        """Create a new signing key ``name`` (version 1).

        Raises:
            SecretConflict: a key of that name exists already.
        """
        ...

    def rotate_key(self, name: str) -> KeyRef:
        """Add a new version of key ``name`` and return its reference; old versions still sign."""
        ...

    def signer(self, ref: KeyRef) -> Signer:
        """A :class:`~pki.signers.Signer` for the key ``ref`` names.

        Raises:
            SecretNotFound: no such key or version.
        """
        ...

    def put(self, path: str, data: Mapping[str, str], *, cas: int | None = None) -> SecretRef:
        """Write a secret. ``cas`` is the version the caller expects to replace (0 = must not
        exist); None writes unconditionally.

        Raises:
            SecretConflict: ``cas`` did not match the current version.
        """
        ...

    def get(self, path: str, version: int | None = None) -> tuple[dict[str, str], SecretRef]:
        """Read a secret (the latest version unless ``version`` is given).

        Raises:
            SecretNotFound: nothing at ``path`` (or that version).
        """
        ...

    def check(self) -> list[CheckResult]:
        """Report reachability, authentication and permissions, one result per check."""
        ...
