"""pki.revocation (CRLs) and pki.ocsp, checked by openssl - local keys and external signers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from hypothesis import given, settings
from hypothesis import strategies as st

from pki.errors import ProfileError, SignerError
from pki.keys import KeyType
from pki.ocsp import (
    CertStatus,
    OcspRequestError,
    build_response,
    decode_get_request,
    issuer_hashes,
    parse_request,
    unsuccessful,
)
from pki.revocation import RevokedEntry, build_crl, encode_crl, parse_reason, reason_name
from pki.signers import LocalSigner, Signer
from tests.revocation.helpers import CERT_ID_HASH, Hierarchy, OpaqueSigner, hierarchy_of, openssl, pem, write

NOW = datetime.now(UTC).replace(microsecond=0)
SIGNER_KINDS = ["local", "external"]
KEY_TYPES = [pytest.param(k, id=k.value) for k in (KeyType.P256, KeyType.P384, KeyType.ED25519, KeyType.RSA2048)]


def _signer(kind: str, signer: LocalSigner) -> Signer:
    return signer if kind == "local" else OpaqueSigner(signer.private_key)


@pytest.mark.parametrize("kind", SIGNER_KINDS)
@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_full_crl_verifies_and_lists_the_serial(tmp_path: Path, key_type: KeyType, kind: str) -> None:
    h = hierarchy_of(key_type)
    leaf, _ = h.leaf()
    signer = _signer(kind, h.issuing.signer)  # type: ignore[arg-type]
    crl = build_crl(h.issuing.certificate, signer,
                    [RevokedEntry(leaf.certificate.serial_number, NOW, x509.ReasonFlags.key_compromise,
                                  invalidity_date=NOW - timedelta(days=1))],
                    number=7, this_update=NOW, next_update=NOW + timedelta(days=1),
                    distribution_point="http://pki.dmboot.test/crl/issuing.crl",
                    freshest="http://pki.dmboot.test/crl/issuing-delta.crl")
    crl_file = write(tmp_path, "crl.pem", crl.public_bytes(Encoding.PEM))
    chain = write(tmp_path, "chain.pem", pem(h.issuing.certificate, h.root))
    checked = openssl("crl", "-in", crl_file, "-noout", "-verify", "-CAfile", chain, "-text")
    assert "verify OK" in checked.stderr + checked.stdout
    assert format(leaf.certificate.serial_number, "X") in checked.stdout.replace(":", "").upper()
    assert "Key Compromise" in checked.stdout and "Invalidity Date" in checked.stdout
    assert "X509v3 CRL Number" in checked.stdout and "Freshest CRL" in checked.stdout
    # A relying party refuses the revoked leaf, accepts a good one (openssl verify -crl_check).
    root = write(tmp_path, "root.pem", pem(h.root))
    issuing = write(tmp_path, "issuing.pem", pem(h.issuing.certificate))
    revoked = write(tmp_path, "revoked.pem", pem(leaf.certificate))
    refused = openssl("verify", "-crl_check", "-CAfile", root, "-untrusted", issuing, "-CRLfile", crl_file,
                      revoked, check=False)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    good, _ = h.leaf("IMEI:35000000000001")
    accepted = openssl("verify", "-crl_check", "-CAfile", root, "-untrusted", issuing, "-CRLfile", crl_file,
                       write(tmp_path, "good.pem", pem(good.certificate)))
    assert ": OK" in accepted.stdout


def test_delta_crl_is_marked_and_has_the_base(tmp_path: Path) -> None:
    h = hierarchy_of(KeyType.P256)
    crl = build_crl(h.issuing.certificate, h.issuing.signer, [RevokedEntry(12345, NOW)], number=9,
                    this_update=NOW, next_update=NOW + timedelta(hours=1),
                    distribution_point="http://pki.dmboot.test/crl/issuing.crl", delta_base=8)
    indicator = crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert indicator.critical and indicator.value.crl_number == 8
    assert crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).critical
    entry = crl.get_revoked_certificate_by_serial_number(12345)
    assert entry is not None and len(entry.extensions) == 0  # unspecified: no reasonCode (RFC 5280 5.3.1)
    text = openssl("crl", "-in", write(tmp_path, "d.pem", crl.public_bytes(Encoding.PEM)), "-noout", "-text").stdout
    assert "Delta CRL Indicator" in text


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"number": 0}, "out of range"),
    ({"number": 1 << 159}, "out of range"),
    ({"next_update": NOW}, "nextUpdate"),
    ({"delta_base": 5}, "delta base"),
], ids=["zero", "too-big", "next-before-this", "base-not-below"])
def test_crl_arguments_are_checked(kwargs: dict[str, object], message: str) -> None:
    h = hierarchy_of(KeyType.P256)
    arguments: dict[str, object] = {"number": 5, "this_update": NOW, "next_update": NOW + timedelta(hours=1)}
    arguments.update(kwargs)
    with pytest.raises(ProfileError, match=message):
        build_crl(h.issuing.certificate, h.issuing.signer, [], **arguments)  # type: ignore[arg-type]


def test_crl_signer_must_be_the_issuer() -> None:
    h, other = hierarchy_of(KeyType.P256), hierarchy_of(KeyType.P256, "Other")
    with pytest.raises(SignerError):
        build_crl(h.issuing.certificate, other.issuing.signer, [], number=1, this_update=NOW,
                  next_update=NOW + timedelta(hours=1))


def test_a_large_crl_is_built_in_one_pass() -> None:
    h = hierarchy_of(KeyType.P256)
    entries = [RevokedEntry(n, NOW, x509.ReasonFlags.superseded) for n in range(1, 20_001)]
    crl = build_crl(h.issuing.certificate, h.issuing.signer, entries, number=1, this_update=NOW,
                    next_update=NOW + timedelta(days=1))
    assert len(crl) == 20_000 and crl.is_signature_valid(h.issuing.certificate.public_key())  # type: ignore[arg-type]


Entry = tuple[int, datetime, x509.ReasonFlags | None]
# Serials of every length class, the high bit set or not, each reason, UTCTime and GeneralizedTime.
_ENTRIES: list[Entry] = [
    (1, NOW, None), (127, NOW, x509.ReasonFlags.unspecified), (128, NOW, x509.ReasonFlags.key_compromise),
    (255, NOW - timedelta(days=3), x509.ReasonFlags.ca_compromise), (1 << 63, NOW, x509.ReasonFlags.superseded),
    ((1 << 159) - 1, NOW, x509.ReasonFlags.affiliation_changed),
    (1 << 158 | 12345, datetime(2051, 1, 2, 3, 4, 5, tzinfo=UTC), x509.ReasonFlags.cessation_of_operation),
    (4242, datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), x509.ReasonFlags.privilege_withdrawn),
    (4243, NOW, x509.ReasonFlags.aa_compromise),
]


@pytest.mark.parametrize("kind", SIGNER_KINDS)
@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize("entries", [_ENTRIES, [], [(n, NOW, x509.ReasonFlags.superseded) for n in range(1, 3000)]],
                         ids=["kinds", "empty", "3000"])
def test_encode_crl_matches_cryptographys_encoding(tmp_path: Path, key_type: KeyType, kind: str,
                                                   entries: list[Entry]) -> None:
    """The hand-encoded entries give the very TBSCertList cryptography encodes (DER is canonical)."""
    h = hierarchy_of(key_type)
    signer = _signer(kind, h.issuing.signer)  # type: ignore[arg-type]
    options: dict[str, Any] = {"number": 9, "this_update": NOW, "next_update": NOW + timedelta(days=1),
                               "distribution_point": "http://pki.dmboot.test/crl/issuing-p3.crl"}
    expected = build_crl(h.issuing.certificate, signer, [RevokedEntry(*e) for e in entries], **options)
    der = encode_crl(h.issuing.certificate, signer, entries, **options)
    crl = x509.load_der_x509_crl(der)
    assert crl.tbs_certlist_bytes == expected.tbs_certlist_bytes
    assert crl.is_signature_valid(h.issuing.certificate.public_key())  # type: ignore[arg-type]
    crl_file = write(tmp_path, "crl.der", der)
    checked = openssl("crl", "-inform", "DER", "-in", crl_file, "-noout", "-verify",
                      "-CAfile", write(tmp_path, "chain.pem", pem(h.issuing.certificate, h.root)))
    assert "verify OK" in checked.stderr + checked.stdout


@pytest.mark.parametrize(("given_name", "expected"), [
    ("keyCompromise", "keyCompromise"), ("key_compromise", "keyCompromise"), ("KEY-COMPROMISE", "keyCompromise"),
    ("cACompromise", "cACompromise"), ("superseded", "superseded"), ("unspecified", "unspecified"),
])
def test_reason_names(given_name: str, expected: str) -> None:
    assert reason_name(parse_reason(given_name)) == expected


@pytest.mark.parametrize("bad", ["certificateHold", "removeFromCRL", "stolen", ""])
def test_reasons_an_operator_may_not_give(bad: str) -> None:
    with pytest.raises(ProfileError, match="revocation reason"):
        parse_reason(bad)


# -- OCSP ---------------------------------------------------------------------------------


def _request(h: Hierarchy, cert: x509.Certificate, *, nonce: bytes | None = None,
             algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, h.issuing.certificate, algorithm or CERT_ID_HASH)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


@pytest.mark.parametrize("kind", SIGNER_KINDS)
@pytest.mark.parametrize("key_type", KEY_TYPES)
@pytest.mark.parametrize("status", list(CertStatus), ids=lambda s: s.value)
def test_ocsp_response_verifies_with_openssl(tmp_path: Path, key_type: KeyType, kind: str,
                                             status: CertStatus) -> None:
    h = hierarchy_of(key_type)
    leaf, _ = h.leaf()
    query = parse_request(_request(h, leaf.certificate, nonce=b"n" * 32))
    signer = _signer(kind, LocalSigner(h.responder_key))
    der = build_response(query, status, responder=h.responder.certificate, signer=signer, this_update=NOW,
                         next_update=NOW + timedelta(hours=1), revoked_at=NOW - timedelta(minutes=1),
                         reason=x509.ReasonFlags.key_compromise)
    response = ocsp.load_der_ocsp_response(der)
    assert response.certificate_status.name == status.name
    assert response.responder_key_hash is not None and response.certificates == [h.responder.certificate]
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 32
    result = openssl("ocsp", "-respin", write(tmp_path, "r.der", der), "-issuer",
                     write(tmp_path, "issuing.pem", pem(h.issuing.certificate)),
                     "-cert", write(tmp_path, "leaf.pem", pem(leaf.certificate)),
                     "-CAfile", write(tmp_path, "root.pem", pem(h.root)), "-no_nonce")
    assert "Response verify OK" in result.stderr
    assert f"leaf.pem: {status.value}" in result.stdout
    if status is CertStatus.REVOKED:
        assert "Reason: keyCompromise" in result.stdout


def test_ocsp_sha256_cert_id_is_answered_in_kind() -> None:
    h = hierarchy_of(KeyType.P256)
    leaf, _ = h.leaf()
    query = parse_request(_request(h, leaf.certificate, algorithm=hashes.SHA256()))
    assert (query.issuer_name_hash, query.issuer_key_hash) == issuer_hashes(h.issuing.certificate, hashes.SHA256())
    der = build_response(query, CertStatus.GOOD, responder=h.responder.certificate,
                         signer=LocalSigner(h.responder_key), this_update=NOW, next_update=NOW + timedelta(hours=1))
    assert isinstance(ocsp.load_der_ocsp_response(der).hash_algorithm, hashes.SHA256)


@pytest.mark.parametrize("nonce", [b"", b"x" * 33], ids=["empty", "33-octets"])
def test_nonce_outside_rfc8954_limits_is_malformed(nonce: bytes) -> None:
    h = hierarchy_of(KeyType.P256)
    leaf, _ = h.leaf()
    with pytest.raises(OcspRequestError, match="nonce"):
        parse_request(_request(h, leaf.certificate, nonce=nonce))


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x01", b"garbage" * 10], ids=["empty", "wrong-asn1", "junk"])
def test_malformed_requests(der: bytes) -> None:
    with pytest.raises(OcspRequestError):
        parse_request(der)


def test_get_encoding_round_trips_standard_and_url_safe() -> None:
    h = hierarchy_of(KeyType.P256)
    leaf, _ = h.leaf()
    der = _request(h, leaf.certificate, nonce=b"\xff" * 20)
    text = base64.b64encode(der).decode()
    assert decode_get_request(quote(text, safe="")) == der
    assert decode_get_request(text.replace("+", " ")) == der  # a '+' a client decoded as a space
    assert decode_get_request(base64.urlsafe_b64encode(der).decode().rstrip("=")) == der
    with pytest.raises(OcspRequestError):
        decode_get_request("not base64 at all!")


def test_unsuccessful_responses_carry_only_a_status() -> None:
    response = ocsp.load_der_ocsp_response(unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED))
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_responder_key_must_match_its_certificate() -> None:
    h, other = hierarchy_of(KeyType.P256), hierarchy_of(KeyType.P256, "Other")
    leaf, _ = h.leaf()
    with pytest.raises(SignerError):
        build_response(parse_request(_request(h, leaf.certificate)), CertStatus.GOOD,
                       responder=h.responder.certificate, signer=LocalSigner(other.responder_key),
                       this_update=NOW, next_update=NOW + timedelta(hours=1))


@settings(deadline=None, database=None, max_examples=200)
@given(st.binary(max_size=300))
def test_request_parser_never_raises_anything_else(data: bytes) -> None:
    try:
        parse_request(data)
    except OcspRequestError:
        pass
