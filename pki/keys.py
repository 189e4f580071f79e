"""Key types and the key policy.

The service accepts ECDSA P-256 (the default), ECDSA P-384, Ed25519 and RSA
with a modulus of 2048 to 4096 bits. Anything else - smaller RSA keys, other
curves, DSA, X25519 - is refused with :class:`~pki.errors.KeyPolicyError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from pki.errors import KeyPolicyError
from pki.key_types import KeyType

__all__ = [
    "DEFAULT_KEY_TYPE",
    "KeyPolicy",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "classify_public_key",
    "generate_private_key",
    "signature_hash",
]

PrivateKey = CertificateIssuerPrivateKeyTypes
PublicKey = CertificatePublicKeyTypes

_RSA_MIN_BITS = 2048
_RSA_MAX_BITS = 4096


DEFAULT_KEY_TYPE = KeyType.P256


def generate_private_key(key_type: KeyType = DEFAULT_KEY_TYPE) -> PrivateKey:
    """Generate a new private key of ``key_type``."""
    if key_type is KeyType.P256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.P384:
        return ec.generate_private_key(ec.SECP384R1())
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=key_type.rsa_bits)


def classify_public_key(public_key: object) -> KeyType:
    """Return the :class:`KeyType` of ``public_key``, or raise KeyPolicyError if it is refused."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = public_key.curve
        if isinstance(curve, ec.SECP256R1):
            return KeyType.P256
        if isinstance(curve, ec.SECP384R1):
            return KeyType.P384
        raise KeyPolicyError(f"elliptic curve {curve.name} is not allowed; use P-256 or P-384")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        if bits < _RSA_MIN_BITS:
            raise KeyPolicyError(f"RSA key of {bits} bits is too weak; at least {_RSA_MIN_BITS}")
        if bits > _RSA_MAX_BITS:
            raise KeyPolicyError(f"RSA key of {bits} bits is larger than {_RSA_MAX_BITS}")
        if public_key.public_numbers().e != 65537:
            raise KeyPolicyError("RSA public exponent must be 65537")
        # Non-standard sizes (e.g. 2560) are rounded down to the class they meet.
        return KeyType.RSA4096 if bits >= 4096 else KeyType.RSA3072 if bits >= 3072 else KeyType.RSA2048
    raise KeyPolicyError(f"key type {type(public_key).__name__} is not allowed")


def signature_hash(key_type: KeyType) -> hashes.SHA256 | hashes.SHA384 | None:
    """The hash a CA key of ``key_type`` signs with (None for Ed25519, which hashes itself)."""
    if key_type is KeyType.ED25519:
        return None
    if key_type is KeyType.P384:
        return hashes.SHA384()
    return hashes.SHA256()


@dataclass(frozen=True)
class KeyPolicy:
    """Which key types a certificate profile or enrollment profile accepts."""

    allowed: frozenset[KeyType] = frozenset(KeyType)

    @classmethod
    def of(cls, types: Iterable[KeyType | str]) -> KeyPolicy:
        return cls(frozenset(t if isinstance(t, KeyType) else KeyType.parse(t) for t in types))

    def check(self, public_key: object) -> KeyType:
        """Classify ``public_key`` and refuse it unless this policy allows its type."""
        key_type = classify_public_key(public_key)
        if key_type not in self.allowed:
            allowed = ", ".join(sorted(k.value for k in self.allowed))
            raise KeyPolicyError(f"key type {key_type.value} is not allowed here; allowed: {allowed}")
        return key_type
