"""TPM 2.0 structures and the verifier's side of credential activation and key certification.

What a service needs to attest a key held by a TPM, written once against the
TCG *TPM 2.0 Library* specification (Part 1 §11.4.9-§11.4.10 KDFa/KDFe,
§24 credential protection; Part 2 structures; Part 3 TPM2_MakeCredential and
TPM2_Certify):

- :func:`parse_public` reads a TPM2B_PUBLIC (RSA or ECC) and computes its Name
  (``nameAlg || H(TPMT_PUBLIC)``);
- :func:`make_credential` is TPM2_MakeCredential done in software: only the TPM
  holding the EK's private key, and an object with the given Name loaded in it,
  can recover the secret with TPM2_ActivateCredential;
- :func:`parse_attest` reads a TPMS_ATTEST of TPM2_Certify and
  :func:`verify_signature` checks a TPMT_SIGNATURE over it with the AK's key.

All integers are big-endian. Malformed input raises :class:`TpmFormatError`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from pki.errors import EncodingError

__all__ = [
    "ATTR_DECRYPT",
    "ATTR_FIXED_PARENT",
    "ATTR_FIXED_TPM",
    "ATTR_RESTRICTED",
    "ATTR_SENSITIVE_DATA_ORIGIN",
    "ATTR_SIGN",
    "Attest",
    "Credential",
    "TpmFormatError",
    "TPM_RESIDENT_KEY_POLICY",
    "TpmPublic",
    "kdfa",
    "kdfe",
    "make_credential",
    "parse_attest",
    "parse_public",
    "verify_signature",
]

#: Ours: the certificatePolicies OID of a certificate whose key the service saw certified by a TPM
#: attestation key (fixedTPM, fixedParent, sensitiveDataOrigin: made in and never leaving a TPM
#: whose EK certificate chains to a registered TPM manufacturer). Under the UUID arc 2.25
#: (ITU-T X.667), which needs no registration; docs/tpm.md.
TPM_RESIDENT_KEY_POLICY = "2.25.99537145608391590891256349739235960163.1"

# TPMA_OBJECT bits (Part 2 §8.3).
ATTR_FIXED_TPM = 1 << 1
ATTR_FIXED_PARENT = 1 << 4
ATTR_SENSITIVE_DATA_ORIGIN = 1 << 5
ATTR_RESTRICTED = 1 << 16
ATTR_DECRYPT = 1 << 17
ATTR_SIGN = 1 << 18

# TPM_ALG_ID values (Part 2 §6.3, and the TCG Algorithm Registry).
_RSA, _ECC, _NULL, _AES, _CFB = 0x0001, 0x0023, 0x0010, 0x0006, 0x0043
_RSASSA, _RSAPSS, _ECDSA, _ECDAA = 0x0014, 0x0016, 0x0018, 0x001A
_HASHES: dict[int, str] = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
_CURVES: dict[int, ec.EllipticCurve] = {0x0003: ec.SECP256R1(), 0x0004: ec.SECP384R1(), 0x0005: ec.SECP521R1()}
_GENERATED = 0xFF544347  # TPM_GENERATED_VALUE: the TPM made this structure
_ST_ATTEST_CERTIFY = 0x8017
_MAX_INPUT = 4096


class TpmFormatError(EncodingError):
    """A TPM structure that cannot be decoded, or uses an algorithm we do not take."""


class _Reader:
    """Reads TPM wire structures; every short read is a TpmFormatError."""

    def __init__(self, data: bytes, what: str) -> None:
        if len(data) > _MAX_INPUT:
            raise TpmFormatError(f"{what} is too large", field=what)
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise TpmFormatError(f"{self.what} is truncated", field=self.what)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def sized(self) -> bytes:  # a TPM2B: UINT16 size, then that many bytes
        return self.take(self.u16())

    def end(self) -> None:
        if self.pos != len(self.data):
            raise TpmFormatError(f"{self.what} has {len(self.data) - self.pos} trailing bytes", field=self.what)


def _hash_name(alg: int, what: str) -> str:
    name = _HASHES.get(alg)
    if name is None:
        raise TpmFormatError(f"{what}: unsupported hash algorithm 0x{alg:04x}", field=what)
    return name


def _b2(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


@dataclass(frozen=True)
class TpmPublic:
    """A TPMT_PUBLIC: what the key is, what it may do, and its Name."""

    #: The exact TPMT_PUBLIC bytes (the Name hashes them).
    area: bytes
    kind: str  # "rsa" | "ecc"
    name_alg: str
    attributes: int
    #: TPMT_SYM_DEF_OBJECT of a storage key (an EK): (algorithm, key bits); None if TPM_ALG_NULL.
    symmetric: tuple[int, int] | None
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey

    @property
    def name(self) -> bytes:
        """The object's Name: nameAlg (2 bytes) || H_nameAlg(TPMT_PUBLIC)."""
        alg = next(k for k, v in _HASHES.items() if v == self.name_alg)
        return struct.pack(">H", alg) + hashlib.new(self.name_alg, self.area).digest()

    def has(self, attributes: int) -> bool:
        """Whether every TPMA_OBJECT bit of ``attributes`` is set."""
        return self.attributes & attributes == attributes


def parse_public(data: bytes, *, what: str = "public") -> TpmPublic:
    """Parse a TPM2B_PUBLIC (as ``tpm2_createak -u`` / ``tpm2_create -u`` write it).

    Raises:
        TpmFormatError: malformed, or not an RSA or NIST-curve ECC key.
    """
    outer = _Reader(data, what)
    area = outer.sized()
    outer.end()
    r = _Reader(area, what)
    kind, name_alg, attributes = r.u16(), r.u16(), r.u32()
    _hash_name(name_alg, what)
    r.sized()  # authPolicy
    sym_alg = r.u16()
    symmetric = None
    if sym_alg != _NULL:
        bits, mode = r.u16(), r.u16()
        if sym_alg != _AES or mode != _CFB:
            raise TpmFormatError(f"{what}: only AES-CFB storage keys are supported", field=what)
        symmetric = (sym_alg, bits)
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if kind == _RSA:
        if r.u16() != _NULL:
            r.u16()  # the scheme's hash
        bits, exponent = r.u16(), r.u32() or 65537
        modulus = int.from_bytes(r.sized(), "big")
        if modulus.bit_length() != bits:
            raise TpmFormatError(f"{what}: the RSA modulus is not {bits} bits", field=what)
        key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    elif kind == _ECC:
        scheme = r.u16()
        if scheme != _NULL:
            r.u16()
            if scheme == _ECDAA:
                r.u16()  # count
        curve = _CURVES.get(r.u16())
        if r.u16() != _NULL:
            r.u16()  # the KDF's hash
        x, y = int.from_bytes(r.sized(), "big"), int.from_bytes(r.sized(), "big")
        if curve is None:
            raise TpmFormatError(f"{what}: unsupported ECC curve", field=what)
        try:
            key = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
        except ValueError:
            raise TpmFormatError(f"{what}: the ECC point is not on the curve", field=what) from None
    else:
        raise TpmFormatError(f"{what}: unsupported key type 0x{kind:04x}", field=what)
    r.end()
    return TpmPublic(area, "rsa" if kind == _RSA else "ecc", _HASHES[name_alg], attributes, symmetric, key)


def kdfa(hash_name: str, key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int) -> bytes:
    """KDFa (Part 1 §11.4.10.2): SP 800-108 counter mode with HMAC; ``label`` without its NUL."""
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        block = struct.pack(">I", counter) + label + b"\0" + context_u + context_v + struct.pack(">I", bits)
        out += hmac.new(key, block, hash_name).digest()
        counter += 1
    return out[:bits // 8]


def kdfe(hash_name: str, z: bytes, label: bytes, party_u: bytes, party_v: bytes, bits: int) -> bytes:
    """KDFe (Part 1 §11.4.10.3): SP 800-56A concatenation KDF; ``label`` without its NUL."""
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        out += hashlib.new(hash_name, struct.pack(">I", counter) + z + label + b"\0" + party_u + party_v).digest()
        counter += 1
    return out[:bits // 8]


@dataclass(frozen=True)
class Credential:
    """TPM2_MakeCredential's output: what TPM2_ActivateCredential takes."""

    #: TPM2B_ID_OBJECT: integrityHMAC and the encrypted credential.
    credential_blob: bytes
    #: TPM2B_ENCRYPTED_SECRET: the seed, under the EK.
    encrypted_secret: bytes

    def tpm2_tools_file(self) -> bytes:
        """The file ``tpm2_activatecredential -i`` reads (tpm2-tools' magic, version 1)."""
        return struct.pack(">II", 0xBADCC0DE, 1) + self.credential_blob + self.encrypted_secret


def make_credential(ek: TpmPublic, object_name: bytes, secret: bytes) -> Credential:
    """TPM2_MakeCredential (Part 1 §24, Part 3 §12.6) of ``secret`` for ``object_name`` under ``ek``.

    Raises:
        TpmFormatError: the EK is no storage key (no AES-CFB symmetric), or ``secret`` is too long.
    """
    if ek.symmetric is None or not ek.has(ATTR_RESTRICTED | ATTR_DECRYPT):
        raise TpmFormatError("the EK is not a restricted decryption key with a symmetric algorithm", field="ek")
    size = hashlib.new(ek.name_alg).digest_size
    if not 0 < len(secret) <= size:
        raise TpmFormatError(f"the credential must be 1..{size} bytes", field="secret")
    if isinstance(ek.public_key, rsa.RSAPublicKey):
        seed = secrets.token_bytes(size)
        algorithm = getattr(hashes, ek.name_alg.upper())()
        # Part 1 §24.4 / §B.10.3: the seed is OAEP-encrypted with the label "IDENTITY" and its NUL.
        encrypted = ek.public_key.encrypt(seed, padding.OAEP(padding.MGF1(algorithm), algorithm, b"IDENTITY\0"))
    else:
        ephemeral = ec.generate_private_key(ek.public_key.curve)
        z = ephemeral.exchange(ec.ECDH(), ek.public_key)  # the x coordinate of the shared point
        width = (ek.public_key.curve.key_size + 7) // 8
        ours, theirs = ephemeral.public_key().public_numbers(), ek.public_key.public_numbers()
        ux, uy = ours.x.to_bytes(width, "big"), ours.y.to_bytes(width, "big")
        seed = kdfe(ek.name_alg, z, b"IDENTITY", ux, theirs.x.to_bytes(width, "big"), size * 8)
        encrypted = _b2(ux) + _b2(uy)  # TPMS_ECC_POINT
    sym_key = kdfa(ek.name_alg, seed, b"STORAGE", object_name, b"", ek.symmetric[1])
    encryptor = Cipher(algorithms.AES(sym_key), CFB(b"\0" * 16)).encryptor()
    enc_identity = encryptor.update(_b2(secret)) + encryptor.finalize()
    hmac_key = kdfa(ek.name_alg, seed, b"INTEGRITY", b"", b"", size * 8)
    integrity = hmac.new(hmac_key, enc_identity + object_name, ek.name_alg).digest()
    return Credential(_b2(_b2(integrity) + enc_identity), _b2(encrypted))


@dataclass(frozen=True)
class Attest:
    """A TPMS_ATTEST of TPM2_Certify: the TPM says it holds the object ``name``."""

    raw: bytes
    qualified_signer: bytes
    extra_data: bytes
    #: The certified object's Name, and its qualified Name.
    name: bytes
    qualified_name: bytes


def parse_attest(data: bytes, *, what: str = "certify_info") -> Attest:
    """Parse the TPMS_ATTEST of TPM2_Certify (``tpm2_certify -o``).

    Raises:
        TpmFormatError: malformed, not made by a TPM (magic), or not a certify attestation.
    """
    r = _Reader(data, what)
    if r.u32() != _GENERATED:
        raise TpmFormatError(f"{what} was not generated by a TPM (magic)", field=what)
    if r.u16() != _ST_ATTEST_CERTIFY:
        raise TpmFormatError(f"{what} is not a TPM2_Certify attestation", field=what)
    signer, extra = r.sized(), r.sized()
    r.take(17 + 8)  # TPMS_CLOCK_INFO, firmwareVersion
    name, qualified = r.sized(), r.sized()
    r.end()
    return Attest(data, signer, extra, name, qualified)


def verify_signature(key: TpmPublic, message: bytes, signature: bytes, *, what: str = "signature") -> bool:
    """Whether the TPMT_SIGNATURE ``signature`` over ``message`` verifies with ``key``.

    Raises:
        TpmFormatError: a malformed signature, or a scheme that does not fit the key.
    """
    r = _Reader(signature, what)
    scheme = r.u16()
    algorithm = getattr(hashes, _hash_name(r.u16(), what).upper())()
    public = key.public_key
    try:
        if scheme in (_RSASSA, _RSAPSS) and isinstance(public, rsa.RSAPublicKey):
            sig = r.sized()
            r.end()
            pad = padding.PKCS1v15() if scheme == _RSASSA else \
                padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO)
            public.verify(sig, message, pad, algorithm)
        elif scheme == _ECDSA and isinstance(public, ec.EllipticCurvePublicKey):
            sig_r, sig_s = int.from_bytes(r.sized(), "big"), int.from_bytes(r.sized(), "big")
            r.end()
            public.verify(encode_dss_signature(sig_r, sig_s), message, ec.ECDSA(algorithm))
        else:
            raise TpmFormatError(f"{what}: scheme 0x{scheme:04x} does not fit a {key.kind} key", field=what)
    except InvalidSignature:
        return False
    return True
