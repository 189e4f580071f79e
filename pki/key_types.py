"""Key type names, without cryptography: what settings and the CLI parse before any key exists.

:mod:`pki.keys` re-exports :class:`KeyType`; it lives here so that reading settings
(``dmboot config show``, ``dmboot --help``) does not import cryptography.
"""

from __future__ import annotations

import enum

from pki.errors import KeyPolicyError

__all__ = ["KeyType"]


class KeyType(enum.StrEnum):
    """A key type the service knows, named as in settings, the CLI and the API."""

    P256 = "p256"
    P384 = "p384"
    ED25519 = "ed25519"
    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    RSA4096 = "rsa4096"

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa")

    @property
    def rsa_bits(self) -> int:
        if not self.is_rsa:
            raise ValueError(f"{self.value} is not an RSA key type")
        return int(self.value[3:])

    @classmethod
    def parse(cls, value: str) -> KeyType:
        """Return the key type named ``value`` (case-insensitive), or raise KeyPolicyError."""
        normalized = value.strip().lower().replace("-", "").replace("_", "")
        aliases = {
            "ecdsap256": "p256",
            "secp256r1": "p256",
            "prime256v1": "p256",
            "ecdsap384": "p384",
            "secp384r1": "p384",
            "rsa": "rsa2048",
        }
        normalized = aliases.get(normalized, normalized)
        try:
            return cls(normalized)
        except ValueError:
            allowed = ", ".join(k.value for k in cls)
            raise KeyPolicyError(f"unknown key type {value!r}; allowed: {allowed}", field="key_type") from None
