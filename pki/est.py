"""The pure parts of EST (RFC 7030): CSR attributes, the tls-unique binding, base64 bodies.

HTTP lives in ``bootstrap.web.est``; this module only encodes and compares.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable

from asn1crypto import core as asn1_core

from pki.errors import CsrEncodingError
from pki.keys import KeyType

__all__ = ["b64_body", "b64_lines", "channel_binding_matches", "csr_attributes"]

_CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"  # noqa: S105 - an OID, not a password
_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_CURVES = {KeyType.P256: "1.2.840.10045.3.1.7", KeyType.P384: "1.3.132.0.34"}
_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
_ECDSA_SHA384 = "1.2.840.10045.4.3.3"
_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_SHA256_RSA = "1.2.840.113549.1.1.11"
_ED25519 = "1.3.101.112"


class _Values(asn1_core.SetOf):  # type: ignore[misc]
    _child_spec = asn1_core.ObjectIdentifier


class _Attribute(asn1_core.Sequence):  # type: ignore[misc]
    _fields = [("type", asn1_core.ObjectIdentifier), ("values", _Values)]


class _AttrOrOid(asn1_core.Choice):  # type: ignore[misc]
    _alternatives = [("oid", asn1_core.ObjectIdentifier), ("attribute", _Attribute)]


class _CsrAttrs(asn1_core.SequenceOf):  # type: ignore[misc]
    _child_spec = _AttrOrOid


def csr_attributes(key_types: Iterable[KeyType], *, challenge_password: bool = True) -> bytes:
    """DER ``CsrAttrs`` (RFC 7030 4.5.2) telling a client how to build its request.

    Lists the key type and signature algorithm the profile prefers (the first of
    ``key_types`` in the order P-256, P-384, Ed25519, RSA), and challengePassword,
    where the client puts the base64 tls-unique value (RFC 7030 3.5).
    """
    allowed = set(key_types)
    items: list[_AttrOrOid] = []
    if challenge_password:
        items.append(_AttrOrOid(name="oid", value=_CHALLENGE_PASSWORD))
    for key_type in (KeyType.P256, KeyType.P384):
        if key_type in allowed:
            attribute = _Attribute({"type": _EC_PUBLIC_KEY, "values": [_CURVES[key_type]]})
            items.append(_AttrOrOid(name="attribute", value=attribute))
            signature = _ECDSA_SHA256 if key_type is KeyType.P256 else _ECDSA_SHA384
            items.append(_AttrOrOid(name="oid", value=signature))
            break
    else:
        if KeyType.ED25519 in allowed:
            items.append(_AttrOrOid(name="oid", value=_ED25519))
        elif any(k.is_rsa for k in allowed):
            items += [_AttrOrOid(name="oid", value=_RSA_ENCRYPTION), _AttrOrOid(name="oid", value=_SHA256_RSA)]
    return bytes(_CsrAttrs(items).dump())


def channel_binding_matches(challenge_password: str, tls_unique: bytes) -> bool:
    """Whether a CSR's challengePassword is the base64 of the connection's tls-unique (RFC 7030 3.5)."""
    expected = base64.b64encode(tls_unique).decode()
    return hmac.compare_digest(challenge_password.strip().encode(), expected.encode())


def b64_body(body: bytes) -> bytes:
    """Decode an EST request body: base64 DER (RFC 7030 4.2.1, RFC 8951), line breaks tolerated.

    A PEM body is refused: RFC 7030 says base64 DER, and a client that sends PEM is
    told so rather than half-understood.

    Raises:
        CsrEncodingError: not base64 (PEM included).
    """
    if body.lstrip().startswith(b"-----BEGIN"):
        raise CsrEncodingError("send the request as base64 DER (RFC 7030 4.2.1), not PEM: strip the "
                               "-----BEGIN/END----- lines", field="csr")
    compact = b"".join(body.split())
    if not compact:
        raise CsrEncodingError("the request body is empty; send a base64 PKCS#10 request", field="csr")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise CsrEncodingError("the request body is not base64 (RFC 7030 4.2.1: base64-encoded DER PKCS#10)",
                               field="csr") from None


def b64_lines(der: bytes, width: int = 64, newline: bytes = b"\n") -> bytes:
    """Base64 of ``der`` in lines of ``width`` characters.

    HTTP bodies end lines with LF, which every decoder takes (GNU ``base64 -d`` refuses CR);
    MIME parts (serverkeygen's multipart) pass ``newline=b"\\r\\n"`` (RFC 2045 6.8).
    """
    text = base64.b64encode(der)
    return b"".join(text[i:i + width] + newline for i in range(0, len(text), width))
