"""Sign with a CA key that lives in Vault Transit and never leaves it.

:class:`VaultTransitSigner` implements :class:`pki.signers.Signer` over
``POST {transit}/sign/{name}`` (https://openbao.org/api-docs/secret/transit/#sign-data).
For ECDSA and RSA the digest is computed here and sent with ``prehashed=true``, so
a large TBS never travels to Vault and Vault signs exactly the digest X.509 expects;
Ed25519 signs the message itself (PureEdDSA, RFC 8032), so the raw bytes are sent.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bootstrap.errors import SecretAccessDenied, SecretNotFound, SecretStoreError, SecretStoreUnavailable
from bootstrap.secrets.vault.client import VaultClient
from pki.errors import PkiError, SignerError, SignerUnavailable
from pki.keys import KeyType, PublicKey, classify_public_key, signature_hash

__all__ = [
    "VaultTransitSigner",
    "key_type_from_transit",
    "public_key_from_transit",
    "transit_key_type",
]

# https://openbao.org/api-docs/secret/transit/#type
_TRANSIT_TYPES: dict[KeyType, str] = {
    KeyType.P256: "ecdsa-p256",
    KeyType.P384: "ecdsa-p384",
    KeyType.ED25519: "ed25519",
    KeyType.RSA2048: "rsa-2048",
    KeyType.RSA3072: "rsa-3072",
    KeyType.RSA4096: "rsa-4096",
}
_KEY_TYPES: dict[str, KeyType] = {v: k for k, v in _TRANSIT_TYPES.items()}
# A denial lasts until an operator fixes the token or the policy: ask for a slower retry.
_RETRY_DENIED = 30
_HASH_NAMES: dict[str, str] = {hashes.SHA256.name: "sha2-256", hashes.SHA384.name: "sha2-384"}


def transit_key_type(key_type: KeyType) -> str:
    """The Transit ``type`` for ``key_type`` (``ecdsa-p256``, ``rsa-2048``...)."""
    return _TRANSIT_TYPES[key_type]


def key_type_from_transit(type_name: str) -> KeyType:
    """The :class:`KeyType` of a Transit key ``type``; SecretStoreError if we do not sign with it."""
    try:
        return _KEY_TYPES[type_name]
    except KeyError:
        raise SecretStoreError(f"Transit key type {type_name!r} cannot be a CA key") from None


def public_key_from_transit(key_info: Mapping[str, Any], version: int) -> PublicKey:
    """Load the public key of ``version`` from a ``GET {transit}/keys/{name}`` ``data`` block.

    Transit gives ECDSA and RSA public keys as PEM, Ed25519 ones as base64 of the raw 32 bytes.

    Raises:
        SecretNotFound: the key has no such version (never created, or trimmed).
    """
    versions = key_info.get("keys")
    entry = versions.get(str(version)) if isinstance(versions, dict) else None
    encoded = entry.get("public_key") if isinstance(entry, dict) else None
    if not isinstance(encoded, str) or not encoded:
        raise SecretNotFound(f"Transit key {key_info.get('name')!r} has no version {version}")
    try:
        return _load_public_key(encoded)
    except (ValueError, TypeError, binascii.Error, PkiError) as exc:
        raise SecretStoreError(f"cannot load the public key of Transit key v{version}: {exc}") from None


def _load_public_key(encoded: str) -> PublicKey:
    if encoded.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(encoded.encode())
    else:
        key = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded, validate=True))
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise TypeError(f"unexpected public key type {type(key).__name__}")
    classify_public_key(key)  # the key policy: curve, RSA size and exponent
    return key


class VaultTransitSigner:
    """A :class:`pki.signers.Signer` over one pinned version of a Transit key.

    Args:
        client: The Vault adapter.
        mount: The Transit mount path.
        key_name: The key's name in Transit.
        version: The key version to sign with; pinned so a rotation never changes
            the key behind an issued CA certificate.
        key_type: The key's type.
        public_key: The public key of that version.
    """

    def __init__(
        self,
        client: VaultClient,
        *,
        mount: str,
        key_name: str,
        version: int,
        key_type: KeyType,
        public_key: PublicKey,
    ) -> None:
        self._client = client
        self._path = f"{mount}/sign/{key_name}"
        self._version = version
        self._key_type = key_type
        self._public_key = public_key
        self._hash = signature_hash(key_type)

    @property
    def key_type(self) -> KeyType:
        return self._key_type

    @property
    def public_key(self) -> PublicKey:
        return self._public_key

    @property
    def version(self) -> int:
        """The pinned key version."""
        return self._version

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` in Transit; return the signature in X.509 form.

        Raises:
            SignerUnavailable: Vault is sealed, stopped or unreachable, or denies the
                token (revoked, expired, policy changed): an operator must act, and
                the caller may retry once they have.
            SignerError: Vault refused the request itself (missing key...) or answered nonsense.
        """
        try:
            answer = self._client.write(self._path, self._request(data), capability="update")
        except SecretStoreUnavailable as exc:
            raise SignerUnavailable(f"Vault Transit cannot sign now: {exc.message}",
                                    retry_after=exc.retry_after) from exc
        except SecretAccessDenied as exc:
            raise SignerUnavailable(f"Vault Transit refused to sign: {exc.message}",
                                    retry_after=_RETRY_DENIED) from exc
        except SecretStoreError as exc:
            raise SignerError(f"Vault Transit refused to sign: {exc.message}") from exc
        data_block = answer.get("data")
        signature = data_block.get("signature") if isinstance(data_block, dict) else None
        return _decode_signature(signature, self._version)

    def _request(self, data: bytes) -> dict[str, Any]:
        body: dict[str, Any] = {"key_version": self._version}
        if self._hash is None:  # Ed25519: the whole message, never prehashed
            body["input"] = base64.b64encode(data).decode()
            return body
        digest = hashes.Hash(self._hash)
        digest.update(data)
        body |= {
            "input": base64.b64encode(digest.finalize()).decode(),
            "prehashed": True,
            "hash_algorithm": _HASH_NAMES[self._hash.name],
        }
        if self._key_type.is_rsa:
            body["signature_algorithm"] = "pkcs1v15"  # X.509's sha256WithRSAEncryption
        else:
            body["marshaling_algorithm"] = "asn1"  # DER ECDSA-Sig-Value, as X.509 carries it
        return body

    def __repr__(self) -> str:
        return f"VaultTransitSigner({self._path!r}, version={self._version}, key_type={self._key_type.value})"


def _decode_signature(value: object, version: int) -> bytes:
    # Transit answers "vault:v<version>:<base64>"; only the base64 part is the signature.
    if not isinstance(value, str):
        raise SignerError("Vault Transit answered without a signature")
    prefix, _, encoded = value.rpartition(":")
    if prefix.split(":")[-1] != f"v{version}":
        raise SignerError(f"Vault Transit signed with another key version ({prefix!r}, wanted v{version})")
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise SignerError("Vault Transit answered a signature that is not base64") from None
