"""Encode large CRLs fast: the revokedCertificates list in DER by hand (RFC 5280 5.1).

cryptography builds one Python ``RevokedCertificate`` object per entry (about 10 us
each: a second for 100,000 entries before signing). Here the TBSCertList comes from
cryptography's builder *without* entries (signed once with a throwaway key of the
signer's type, as :mod:`pki.tbs` does, so every extension stays cryptography's), the
entries are encoded directly::

    revokedCertificates SEQUENCE OF SEQUENCE {
        userCertificate    INTEGER,
        revocationDate     Time,                    -- UTCTime before 2050 (RFC 5280 4.1.2.5)
        crlEntryExtensions Extensions OPTIONAL }    -- reasonCode (5.3.1), never critical

and spliced in before crlExtensions; the signer signs the new TBS and the outer
CertificateList is assembled (RFC 5280 5.1.1).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pki.errors import SignerError
from pki.signers import Signer

__all__ = ["encode_entries", "splice_and_sign"]

#: CRLReason ENUMERATED values (RFC 5280 5.3.1).
_REASON_CODES: dict[x509.ReasonFlags, int] = {
    x509.ReasonFlags.unspecified: 0, x509.ReasonFlags.key_compromise: 1, x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3, x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5, x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.remove_from_crl: 8, x509.ReasonFlags.privilege_withdrawn: 9, x509.ReasonFlags.aa_compromise: 10,
}
#: SEQUENCE { SEQUENCE { OID id-ce-cRLReasons, OCTET STRING { ENUMERATED code } } }
_REASON_EXTENSIONS = {flag: bytes([0x30, 0x0C, 0x30, 0x0A, 0x06, 0x03, 0x55, 0x1D, 0x15, 0x04, 0x03, 0x0A, 0x01, code])
                      for flag, code in _REASON_CODES.items()}


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _time(moment: datetime, cache: dict[datetime, bytes]) -> bytes:
    encoded = cache.get(moment)
    if encoded is None:
        if 1950 <= moment.year < 2050:
            encoded = b"\x17\x0d" + moment.strftime("%y%m%d%H%M%SZ").encode()
        else:
            encoded = b"\x18\x0f" + moment.strftime("%Y%m%d%H%M%SZ").encode()
        cache[moment] = encoded
    return encoded


def encode_entries(entries: Iterable[tuple[int, datetime, x509.ReasonFlags | None]]) -> bytes:
    """DER of ``revokedCertificates`` for (serial, revocationDate in UTC, reason) triples.

    A reason of None or unspecified is left out, as RFC 5280 5.3.1 recommends.
    """
    times: dict[datetime, bytes] = {}
    parts: list[bytes] = []
    for serial, revoked_at, reason in entries:
        if serial <= 0:
            raise ValueError(f"serial {serial} is not positive")
        number = serial.to_bytes((serial.bit_length() + 8) // 8, "big")  # room for the sign bit
        body = b"\x02" + _length(len(number)) + number + _time(revoked_at, times)
        if reason is not None and reason is not x509.ReasonFlags.unspecified:
            body += _REASON_EXTENSIONS[reason]
        parts.append(b"\x30" + _length(len(body)) + body)
    return _tlv(0x30, b"".join(parts))


def _children(der: bytes) -> list[bytes]:
    """The TLVs inside one DER SEQUENCE (definite lengths only, as DER has)."""
    offset, items = _header_end(der, 0), []
    while offset < len(der):
        end = _header_end(der, offset) + _content_length(der, offset)
        items.append(der[offset:end])
        offset = end
    return items


def _content_length(der: bytes, offset: int) -> int:
    first = der[offset + 1]
    if first < 0x80:
        return first
    count = first & 0x7F
    return int.from_bytes(der[offset + 2:offset + 2 + count], "big")


def _header_end(der: bytes, offset: int) -> int:
    first = der[offset + 1]
    return offset + 2 + (first & 0x7F if first >= 0x80 else 0)


def splice_and_sign(draft: x509.CertificateRevocationList, revoked: bytes, signer: Signer) -> bytes:
    """The DER CRL: ``draft`` (built without entries) with ``revoked`` spliced in, signed by ``signer``.

    Raises:
        SignerError: the signer failed.
    """
    outer = _children(draft.public_bytes(Encoding.DER))
    tbs_items = _children(draft.tbs_certlist_bytes)
    # version, signature, issuer, thisUpdate, nextUpdate, [revokedCertificates], [0] crlExtensions
    extensions = [item for item in tbs_items if item[0] == 0xA0]
    head = [item for item in tbs_items if item[0] != 0xA0]
    tbs = _tlv(0x30, b"".join(head) + (revoked if len(revoked) > 2 else b"") + b"".join(extensions))
    signature = signer.sign(tbs)
    if not isinstance(signature, bytes) or not signature:
        raise SignerError(f"{signer!r} returned no signature")
    return _tlv(0x30, tbs + outer[1] + _tlv(0x03, b"\x00" + signature))
