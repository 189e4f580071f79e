"""OCSP (RFC 6960): read requests, build signed responses with any Signer.

Responses are signed by a delegated responder certificate (RFC 6960 4.2.2.2,
profile ``ocsp-signer``) and name it by key hash (4.2.2.3, ``ResponderID
byKey``). A request's nonce is echoed (RFC 8954: 1..32 octets; any other length is
a malformedRequest).

cryptography's ``OCSPResponseBuilder.sign`` needs the private key of the
responder certificate. For a key held elsewhere (Vault Transit) the response is
drafted with a throwaway certificate and key of the same type, and asn1crypto
swaps in the real responder ID, certificate and signature over the
``ResponseData`` (RFC 6960 4.2.1) - the same trick as :mod:`pki.tbs`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from asn1crypto import core as asn1_core
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from pki.errors import OcspRequestError, SignerError
from pki.keys import KeyType, PrivateKey, generate_private_key, signature_hash
from pki.signers import LocalSigner, Signer

__all__ = [
    "MAX_NONCE",
    "MAX_REQUEST_BYTES",
    "CertStatus",
    "OcspQuery",
    "OcspRequestError",
    "build_response",
    "decode_get_request",
    "issuer_hashes",
    "parse_request",
    "unsuccessful",
]

#: RFC 8954 2.1: Nonce ::= OCTET STRING (SIZE(1..32)).
MAX_NONCE = 32
#: An OCSP request for one certificate is ~100 bytes with a nonce; signed requests a few KiB.
MAX_REQUEST_BYTES = 16 * 1024


class CertStatus(enum.Enum):
    """The three answers of RFC 6960 2.2."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class OcspQuery:
    """The one certificate an OCSP request asks about (its CertID) and the request's nonce."""

    serial: int
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    hash_algorithm: hashes.HashAlgorithm
    nonce: bytes | None = None


def decode_get_request(path: str) -> bytes:
    """The DER request from the last segment of a GET URL (RFC 6960 A.1: url-encoded base64).

    Raises:
        OcspRequestError: not base64.
    """
    text = unquote(path).strip().replace(" ", "+")  # a '+' decoded as a space by a sloppy client
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None,
                                validate=True)
    except (binascii.Error, ValueError):
        raise OcspRequestError("the GET path is not a base64 OCSP request") from None


def parse_request(der: bytes) -> OcspQuery:
    """Read a DER OCSPRequest for a single certificate.

    A request naming several certificates is refused as malformed: RFC 5019 2.1.1
    (the profile for high-volume responders, and for pre-produced responses) says a
    request MUST name only one, and cryptography reads only single requests.

    Raises:
        OcspRequestError: not an OCSPRequest, more than one certificate, an unsupported
            hash, or a nonce outside 1..32 octets (RFC 8954).
    """
    if len(der) > MAX_REQUEST_BYTES:
        raise OcspRequestError(f"OCSP request is {len(der)} bytes; the limit is {MAX_REQUEST_BYTES}")
    try:
        request = ocsp.load_der_ocsp_request(der)
        query = OcspQuery(
            serial=request.serial_number,
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            hash_algorithm=request.hash_algorithm,
            nonce=_nonce(request),
        )
    except UnsupportedAlgorithm as exc:
        raise OcspRequestError(f"unsupported CertID hash algorithm: {exc}") from None
    except NotImplementedError:
        raise OcspRequestError("the request names more than one certificate; RFC 5019 2.1.1 allows one "
                               "(send one request per certificate)") from None
    except (ValueError, TypeError) as exc:
        raise OcspRequestError(f"not a DER OCSP request for one certificate: {exc}") from None
    return query


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None
    if not 1 <= len(nonce) <= MAX_NONCE:
        raise OcspRequestError(f"nonce of {len(nonce)} octets; RFC 8954 allows 1..{MAX_NONCE}")
    return nonce


def issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CertID for ``issuer`` (RFC 6960 4.1.1).

    The key hash covers the subjectPublicKey BIT STRING's value, without tag or length.
    """
    return _digest(algorithm, issuer.subject.public_bytes()), _digest(algorithm, _public_key_bits(issuer))


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


def build_response(
    query: OcspQuery,
    status: CertStatus,
    *,
    responder: x509.Certificate,
    signer: Signer,
    this_update: datetime,
    next_update: datetime,
    revoked_at: datetime | None = None,
    reason: x509.ReasonFlags | None = None,
) -> bytes:
    """A signed, successful DER OCSPResponse answering ``query`` with ``status``.

    Args:
        query: the request's CertID and nonce; the response repeats both.
        status: good, revoked or unknown.
        responder: the delegated OCSP signing certificate (``signer`` holds its key).
        signer: any Signer for the responder's key.
        this_update: thisUpdate (and producedAt).
        next_update: nextUpdate: until when relying parties may cache the answer.
        revoked_at: revocationTime, for ``REVOKED``.
        reason: revocationReason, for ``REVOKED`` (None or unspecified leaves it out).

    Raises:
        SignerError: the signer failed, or its key does not match ``responder``.
    """
    if status is CertStatus.REVOKED and revoked_at is None:
        raise ValueError("a revoked status needs revoked_at")
    if signer.public_key != responder.public_key():
        raise SignerError("the OCSP signer's key does not match the responder certificate")
    local = isinstance(signer, LocalSigner)
    if isinstance(signer, LocalSigner):
        draft_cert, draft_key = responder, signer.private_key
    else:
        draft_cert, draft_key = _draft(signer.key_type)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=query.issuer_name_hash,
            issuer_key_hash=query.issuer_key_hash,
            serial_number=query.serial,
            algorithm=query.hash_algorithm,
            cert_status=_STATUS[status],
            this_update=this_update.replace(microsecond=0),
            next_update=next_update.replace(microsecond=0),
            revocation_time=revoked_at.replace(microsecond=0) if revoked_at and status is CertStatus.REVOKED else None,
            revocation_reason=reason if status is CertStatus.REVOKED and reason is not x509.ReasonFlags.unspecified
            else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, draft_cert)
        .certificates([draft_cert])
    )
    if query.nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(query.nonce), critical=False)
    response = builder.sign(draft_key, signature_hash(signer.key_type))
    der = response.public_bytes(Encoding.DER)
    return der if local else _resign(der, responder, signer)


_STATUS = {
    CertStatus.GOOD: ocsp.OCSPCertStatus.GOOD,
    CertStatus.REVOKED: ocsp.OCSPCertStatus.REVOKED,
    CertStatus.UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN,
}


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned error OCSPResponse (RFC 6960 2.3): malformedRequest, unauthorized, tryLater..."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)


@functools.cache
def _draft(key_type: KeyType) -> tuple[x509.Certificate, PrivateKey]:
    """A throwaway self-signed certificate and key of ``key_type``, to draft responses with."""
    # Any RSA size gives the same AlgorithmIdentifier, so the smallest serves every RSA signer.
    key = generate_private_key(KeyType.RSA2048 if key_type.is_rsa else key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "draft OCSP responder")])
    moment = datetime(2000, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(moment).not_valid_after(moment + timedelta(days=1))
        .sign(key, signature_hash(key_type))
    )
    return cert, key


def _resign(draft: bytes, responder: x509.Certificate, signer: Signer) -> bytes:
    """Replace the draft's responder ID, certificate and signature with the real ones."""
    outer = asn1_ocsp.OCSPResponse.load(draft)
    basic = outer["response_bytes"]["response"].parsed
    tbs = basic["tbs_response_data"]
    tbs["responder_id"] = asn1_ocsp.ResponderId(name="by_key", value=_key_hash(responder))
    tbs_der = tbs.dump(force=True)
    signature = signer.sign(tbs_der)
    if not isinstance(signature, bytes) or not signature:
        raise SignerError(f"{signer!r} returned no signature")
    final = asn1_ocsp.BasicOCSPResponse(
        {
            "tbs_response_data": asn1_ocsp.ResponseData.load(tbs_der),
            "signature_algorithm": basic["signature_algorithm"],
            "signature": asn1_core.OctetBitString(signature),
            "certs": [asn1_x509.Certificate.load(responder.public_bytes(Encoding.DER))],
        }
    )
    wrapped = asn1_ocsp.OCSPResponse(
        {
            "response_status": "successful",
            "response_bytes": {"response_type": "basic_ocsp_response", "response": final},
        }
    )
    return bytes(wrapped.dump(force=True))


def _key_hash(certificate: x509.Certificate) -> bytes:
    """ResponderID byKey: SHA-1 of the subjectPublicKey BIT STRING value (RFC 6960 4.2.1)."""
    return hashlib.sha1(_public_key_bits(certificate)).digest()  # noqa: S324 - RFC 6960 mandates SHA-1


def _public_key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's value, without tag, length or unused-bits octet."""
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return bytes(asn1_x509.PublicKeyInfo.load(spki)["public_key"].contents[1:])
