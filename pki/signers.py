"""Signers: whatever holds a CA key and can sign bytes with it.

Certificates, CRLs and OCSP responses are assembled as a to-be-signed structure
(see :mod:`pki.tbs`) and signed by a :class:`Signer`, so a key kept in Vault
Transit, an HSM behind PKCS#11 or a local key file plug in without touching the
certificate profiles.

The signature format a signer returns is the one X.509 carries in its BIT STRING:
a DER ``ECDSA-Sig-Value`` for ECDSA, the raw 64 bytes for Ed25519, and a
PKCS#1 v1.5 signature for RSA. The digest is :func:`pki.keys.signature_hash` of
the key type.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from pki.errors import SignerError
from pki.keys import KeyType, PrivateKey, PublicKey, classify_public_key, signature_hash

__all__ = ["LocalSigner", "Signer"]


@runtime_checkable
class Signer(Protocol):
    """Signs to-be-signed bytes with a CA key the caller never sees."""

    @property
    def key_type(self) -> KeyType:
        """The type of the signing key; it fixes the signature algorithm."""
        ...

    @property
    def public_key(self) -> PublicKey:
        """The public half of the signing key."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Return the signature of ``data`` in X.509 form (see the module docstring).

        Raises:
            SignerError: the backend refused or failed.
            SignerUnavailable: the backend is unreachable for now.
        """
        ...


class LocalSigner:
    """A signer over a private key held in this process (embedded keystore, vault-kv mode)."""

    def __init__(self, private_key: PrivateKey) -> None:
        self._private_key = private_key
        self._key_type = classify_public_key(private_key.public_key())
        self._hash = signature_hash(self._key_type)

    @property
    def key_type(self) -> KeyType:
        return self._key_type

    @property
    def public_key(self) -> PublicKey:
        return self._private_key.public_key()

    @property
    def private_key(self) -> PrivateKey:
        """The private key, for cryptography's builders (the fast path of :mod:`pki.tbs`)."""
        return self._private_key

    def sign(self, data: bytes) -> bytes:
        key = self._private_key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        if self._hash is None:  # pragma: no cover - only Ed25519 has no hash
            raise SignerError("no hash for this key type")
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(self._hash))
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), self._hash)
        raise SignerError(f"cannot sign with {type(key).__name__}")  # pragma: no cover

    def __repr__(self) -> str:
        return f"LocalSigner(key_type={self._key_type.value})"
