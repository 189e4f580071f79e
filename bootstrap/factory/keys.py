"""Server-generated device keys, encrypted for the station that asked for them.

A factory station that cannot make keys on the device asks the service to generate
them. Each key leaves the service once (and once more on a retry within the
redelivery window), always encrypted under the batch password the station chose -
the service never stores that password, nor the key in the clear.

Two formats:

``pkcs8`` (default)
    PEM ``ENCRYPTED PRIVATE KEY`` (RFC 5958 EncryptedPrivateKeyInfo) with PBES2
    (RFC 8018 6.2): PBKDF2-HMAC-SHA256 and AES-256-CBC. The PBKDF2 salt is per batch,
    so the password is stretched once per batch instead of once per key; every key gets
    its own random IV.
    OpenSSL and cryptography read it (``openssl pkey -in key.pem``).

    The default of 10,000 iterations keeps a reader's cost low (about 2.5 ms per key for
    whoever injects the keys). Strength comes from the password: the CLI generates 256
    random bits, which no iteration count can add to. A station choosing its own password
    must make it long and random, or raise ``kdf_iterations`` (up to 10,000,000).
``pkcs12``
    A PKCS#12 file with the key, certificate and chain (AES-256-CBC, PBKDF2-SHA256 with
    2,048 iterations per file, SHA-256 MAC). PKCS#12 stretches the password for every
    file, so it costs about 1 ms of CPU per device; use it where the line needs .p12.

cryptography writes PBES2 PKCS#8 only with a fresh salt per key, so the ``pkcs8``
structure is assembled here with asn1crypto around a cryptography-made PKCS#8.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12
from cryptography.hazmat.primitives.serialization.pkcs12 import PBES

from bootstrap.errors import InvalidRequest
from pki.keys import PrivateKey

__all__ = [
    "DEFAULT_KDF_ITERATIONS",
    "KEY_FORMATS",
    "MIN_PASSWORD_LENGTH",
    "PKCS12_ROUNDS",
    "KeyEncryptor",
    "check_password",
    "new_salt",
]

KEY_FORMATS = ("pkcs8", "pkcs12")
#: PBKDF2-HMAC-SHA256 iterations of the per-batch key (see the module docstring).
DEFAULT_KDF_ITERATIONS = 10_000
#: Iterations PKCS#12 files get (OpenSSL's PKCS12_DEFAULT_ITER); they are paid per file.
PKCS12_ROUNDS = 2048
#: The shortest batch password accepted; the CLI generates 43 random characters (256 bits).
MIN_PASSWORD_LENGTH = 16
_SALT_BYTES = 16


def new_salt() -> str:
    """A fresh per-batch PBKDF2 salt, hex."""
    return secrets.token_hex(_SALT_BYTES)


def check_password(password: str | None) -> bytes:
    """The batch password as bytes, or InvalidRequest when it is missing or short."""
    if not password or len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"server-generated keys need a batch password of at least {MIN_PASSWORD_LENGTH} characters "
            "(the key is returned encrypted with it)", field="password")
    return password.encode()


@functools.lru_cache(maxsize=32)
def _derive(password_digest: bytes, password: bytes, salt: bytes, iterations: int) -> bytes:
    # Keyed by the password's digest too, so equal passwords share the cache entry cheaply.
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations, dklen=32)


@dataclass(frozen=True)
class KeyEncryptor:
    """Encrypts device keys under one batch password (see the module docstring)."""

    password: bytes
    salt_hex: str
    iterations: int = DEFAULT_KDF_ITERATIONS
    key_format: str = "pkcs8"

    def __post_init__(self) -> None:
        if self.key_format not in KEY_FORMATS:
            raise InvalidRequest(f"key_format must be one of {', '.join(KEY_FORMATS)}", field="key_format")

    @property
    def _kek(self) -> bytes:
        return _derive(hashlib.sha256(self.password).digest(), self.password, bytes.fromhex(self.salt_hex),
                       self.iterations)

    def encrypt(self, key: PrivateKey, certificate: x509.Certificate, chain: Sequence[x509.Certificate],
                name: str) -> bytes:
        """``key`` encrypted in this encryptor's format: PEM PKCS#8, or PKCS#12 DER."""
        if self.key_format == "pkcs12":
            return pkcs12_file(name, key, certificate, chain, self.password)
        return self.pkcs8_pem(key)

    def pkcs8_pem(self, key: PrivateKey) -> bytes:
        """PEM EncryptedPrivateKeyInfo (PBES2: PBKDF2-HMAC-SHA256, AES-256-CBC)."""
        plain = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        iv = secrets.token_bytes(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._kek), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        # Assembled from DER pieces: asn1crypto's object model costs ~1 ms per key here.
        scheme = _tlv(0x30, _AES256_CBC + _tlv(0x04, iv))
        algorithm = _tlv(0x30, _PBES2 + _tlv(0x30, self._kdf_der + scheme))
        der = _tlv(0x30, algorithm + _tlv(0x04, ciphertext))
        body = base64.b64encode(der)
        lines = b"\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        return b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + lines + b"\n-----END ENCRYPTED PRIVATE KEY-----\n"

    @functools.cached_property
    def _kdf_der(self) -> bytes:
        """DER of the PBKDF2 AlgorithmIdentifier (RFC 8018 A.2), the same for every key of the batch."""
        kdf = asn1_algos.KdfAlgorithm({
            "algorithm": "pbkdf2",
            "parameters": {
                "salt": asn1_algos.Pbkdf2Salt(name="specified", value=bytes.fromhex(self.salt_hex)),
                "iteration_count": self.iterations,
                "prf": {"algorithm": "sha256", "parameters": None},
            },
        })
        der: bytes = kdf.dump()
        return der


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER tag-length-value (definite length)."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets + content


_PBES2: bytes = asn1_core.ObjectIdentifier("1.2.840.113549.1.5.13").dump()
_AES256_CBC: bytes = asn1_core.ObjectIdentifier("2.16.840.1.101.3.4.1.42").dump()


def pkcs12_file(name: str, key: PrivateKey, certificate: x509.Certificate, chain: Sequence[x509.Certificate],
                password: bytes) -> bytes:
    """A PKCS#12 file: AES-256-CBC, PBKDF2-SHA256 with PKCS12_ROUNDS, SHA-256 MAC."""
    encryption = (PrivateFormat.PKCS12.encryption_builder().kdf_rounds(PKCS12_ROUNDS)
                  .key_cert_algorithm(PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256()).build(password))
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise InvalidRequest(f"PKCS#12 cannot carry a {type(key).__name__}", field="key_format")
    return pkcs12.serialize_key_and_certificates(name.encode(), key, certificate, list(chain), encryption)

