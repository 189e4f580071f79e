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

import functools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


@functools.cache
def _clock() -> list[bytes]:
    """b"HHMMSSZ" for every second of a day (built once: 86,400 short strings)."""
    return [f"{h:02d}{m:02d}{s:02d}Z".encode() for h in range(24) for m in range(60) for s in range(60)]


@functools.cache
def _day(day: int) -> bytes:
    """The tag, length and date part of a Time for days since 1970-01-01 (UTCTime before 2050)."""
    date = _EPOCH + timedelta(days=day)
    if 1950 <= date.year < 2050:
        return b"\x17\x0d" + f"{date.year % 100:02d}{date.month:02d}{date.day:02d}".encode()
    return b"\x18\x0f" + f"{date.year:04d}{date.month:02d}{date.day:02d}".encode()


def _time(moment: datetime) -> bytes:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # naive: UTC
    day, second = divmod(int(aware.timestamp()), 86_400)
    return _day(day) + _clock()[second]


def encode_entries(entries: Iterable[tuple[int, datetime, x509.ReasonFlags | None]]) -> bytes:
    """DER of ``revokedCertificates`` for (serial, revocationDate, reason) triples (naive dates are UTC).

    A reason of None or unspecified is left out, as RFC 5280 5.3.1 recommends.
    """
    parts: list[bytes] = []
    unspecified = x509.ReasonFlags.unspecified
    for serial, revoked_at, reason in entries:
        if not 0 < serial < 1 << 160:
            raise ValueError(f"serial {serial} is not a positive number of at most 20 octets")
        number = serial.to_bytes((serial.bit_length() + 8) // 8, "big")  # room for the sign bit
        # Every part is shorter than 128 octets: one-octet lengths.
        body = b"\x02" + bytes((len(number),)) + number + _time(revoked_at)
        if reason is not None and reason is not unspecified:
            body += _REASON_EXTENSIONS[reason]
        parts.append(b"\x30" + bytes((len(body),)) + body)
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
