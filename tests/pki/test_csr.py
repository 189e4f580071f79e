"""PKCS#10 requests: parsed, verified, checked against the profile; bad ones refused clearly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.authority import IssuedCertificate
from pki.csr import MAX_CSR_BYTES, CsrInfo, check_request, parse_csr
from pki.errors import CsrEncodingError, CsrError, CsrPolicyError, CsrSignatureError, KeyPolicyError
from pki.identity import device_uri
from pki.keys import KeyType
from pki.profiles import PROFILES, Names
from tests.pki.helpers import DEV_ID, LOCALHOST, Hierarchy, assert_is_leaf, build_csr, cached_key, csr_bytes

DEVICE_URI = device_uri(DEV_ID)


def _parse(csr: x509.CertificateSigningRequest) -> CsrInfo:
    return parse_csr(csr_bytes(csr))


# -- good requests ----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [Encoding.DER, Encoding.PEM], ids=["der", "pem"])
@pytest.mark.parametrize("key_type", [pytest.param(k, id=k.value) for k in KeyType])
def test_parse_reads_key_type_and_names(key_type: KeyType, encoding: Encoding) -> None:
    csr = build_csr(cached_key(key_type), common_name="dm.example.test",
                    san=[x509.DNSName("DM.example.test"), x509.IPAddress(LOCALHOST)])

    info = parse_csr(csr_bytes(csr, encoding))

    assert info.key_type is key_type
    assert info.common_name == "dm.example.test"
    assert info.dns == ("dm.example.test",)  # lower-cased
    assert info.ips == (LOCALHOST,)
    assert info.uris == ()
    assert info.extensions == ("2.5.29.17",)
    assert info.public_key == cached_key(key_type).public_key()


def test_parse_accepts_pem_text() -> None:
    info = parse_csr(csr_bytes(build_csr(), Encoding.PEM).decode())

    assert info.common_name == DEV_ID


def test_challenge_password_is_read_and_never_shown() -> None:
    csr = build_csr(challenge_password=b"otp-8f3a9c-secret")

    info = _parse(csr)

    assert info.challenge_password == "otp-8f3a9c-secret"
    assert "otp-8f3a9c-secret" not in repr(info)
    assert "otp-8f3a9c-secret" not in str(info)
    assert repr(info).startswith("CsrInfo(cn='IMEI:490154203237518', key_type=p256")


def test_device_request_without_expected_certifies_the_devid() -> None:
    names = check_request(_parse(build_csr(san=[x509.UniformResourceIdentifier(DEVICE_URI)])), PROFILES["device"])

    assert names == Names(common_name=DEV_ID, uris=(DEVICE_URI,))


def test_dm_server_request_without_san_uses_the_cn() -> None:
    names = check_request(_parse(build_csr(common_name="DM.Example.Test")), PROFILES["dm-server"])

    assert names == Names(common_name="DM.Example.Test", dns=("dm.example.test",))


def test_request_within_expected_certifies_expected() -> None:
    expected = Names(common_name="localhost", dns=("localhost", "dm.example.test"), ips=(LOCALHOST,))
    csr = build_csr(common_name="localhost", san=[x509.DNSName("localhost"), x509.IPAddress(LOCALHOST)])

    assert check_request(_parse(csr), PROFILES["dm-server"], expected) is expected


@pytest.mark.parametrize(
    ("profile", "extensions"),
    [
        pytest.param("device", [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
                     id="device-clientAuth"),
        pytest.param("dm-server", [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)],
                     id="dm-server-serverAuth"),
        pytest.param("device", [(x509.BasicConstraints(ca=False, path_length=None), True)], id="device-ca-false"),
        pytest.param("device", [(x509.KeyUsage(True, False, True, False, False, False, False, False, False), True)],
                     id="device-key-usage"),
    ],
)
def test_tolerated_extensions_are_accepted(profile: str, extensions: list[tuple[x509.ExtensionType, bool]]) -> None:
    csr = build_csr(common_name="localhost" if profile != "device" else DEV_ID, extensions=extensions)

    check_request(_parse(csr), PROFILES[profile])


def test_issue_for_csr_certifies_the_checked_names(hierarchy: Hierarchy) -> None:
    info = _parse(build_csr(cached_key(KeyType.RSA2048), san=[x509.UniformResourceIdentifier(DEVICE_URI)]))

    issued = hierarchy.ca.issue_for_csr(info, PROFILES["device"])

    assert isinstance(issued, IssuedCertificate)
    assert_is_leaf(issued.certificate)
    assert issued.certificate.public_key() == info.public_key
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [DEVICE_URI]


# -- bad encodings and signatures -------------------------------------------------------------


def _flip_last_signature_byte(der: bytes) -> bytes:
    # The signature BIT STRING ends the DER CertificationRequest.
    return der[:-1] + bytes([der[-1] ^ 0x01])


@pytest.mark.parametrize("key_type", [KeyType.P256, KeyType.ED25519, KeyType.RSA2048], ids=lambda k: k.value)
def test_bad_signature_is_refused(key_type: KeyType) -> None:
    der = _flip_last_signature_byte(csr_bytes(build_csr(cached_key(key_type))))

    with pytest.raises(CsrSignatureError, match="CSR signature does not verify with its public key") as info:
        parse_csr(der)
    assert info.value.field == "csr"


def _p256_der_with(old: bytes, new: bytes) -> bytes:
    der = csr_bytes(build_csr())
    assert der.count(old) == 1
    return der.replace(old, new)


def _p256_point() -> bytes:
    return cached_key(KeyType.P256).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


# Requests that cryptography loads but whose key or version it rejects only when asked: these
# once escaped parse_csr as ValueError, UnsupportedAlgorithm or InvalidVersion.
@pytest.mark.parametrize(
    ("make_der", "error", "message"),
    [
        pytest.param(lambda: _p256_der_with(_p256_point(), _p256_point()[:-1] + bytes([_p256_point()[-1] ^ 1])),
                     CsrEncodingError, "CSR public key cannot be read", id="point-not-on-curve"),
        pytest.param(lambda: _p256_der_with(bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06072a8648ce3d027f")),
                     KeyPolicyError, "CSR key type is not supported", id="unknown-key-algorithm"),
        pytest.param(lambda: _p256_der_with(bytes.fromhex("06082a8648ce3d030107"),
                                            bytes.fromhex("06082a8648ce3d03017f")),
                     KeyPolicyError, "CSR key type is not supported", id="unknown-curve"),
        pytest.param(lambda: _p256_der_with(b"\x02\x01\x00\x30", b"\x02\x01\x05\x30"),
                     CsrEncodingError, "not a PKCS#10 certification request", id="unknown-version"),
    ],
)
def test_undecodable_key_or_version_is_a_clear_error(
    make_der: Callable[[], bytes], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_csr(make_der())


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x30\x03\x02\x01\x01", id="garbage-der"),
        pytest.param(b"hello, CA", id="text"),
        pytest.param(b"-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n",
                     id="pem-with-garbage"),
        pytest.param(b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
                     id="pem-not-base64"),
    ],
)
def test_garbage_is_an_encoding_error(data: bytes) -> None:
    with pytest.raises(CsrEncodingError, match="not a PKCS#10 certification request") as info:
        parse_csr(data)
    assert info.value.field == "csr"


def test_certificate_is_not_a_request(hierarchy: Hierarchy) -> None:
    for encoding in (Encoding.DER, Encoding.PEM):
        with pytest.raises(CsrEncodingError, match="not a PKCS#10 certification request"):
            parse_csr(hierarchy.issuing.public_bytes(encoding))


def test_oversized_body_is_refused_before_parsing() -> None:
    body = csr_bytes(build_csr(), Encoding.PEM) + b"\n" * MAX_CSR_BYTES

    with pytest.raises(CsrEncodingError, match=f"CSR is {len(body)} bytes; the limit is {MAX_CSR_BYTES}"):
        parse_csr(body)
    # Exactly at the limit is still parsed.
    pem = csr_bytes(build_csr(), Encoding.PEM)
    parse_csr(pem + b"\n" * (MAX_CSR_BYTES - len(pem)))


def test_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="CSR must be bytes or str"):
        parse_csr(bytearray(b"x"))  # type: ignore[arg-type]


def test_every_csr_error_is_a_csr_error() -> None:
    for cls in (CsrEncodingError, CsrSignatureError, CsrPolicyError):
        assert issubclass(cls, CsrError)


def test_a_pem_with_two_requests_is_refused() -> None:
    from pki.errors import CsrEncodingError
    from tests.factories import make_csr

    with pytest.raises(CsrEncodingError, match="more than one"):
        parse_csr(make_csr("IMEI:1") + make_csr("IMEI:2"))


def test_est_bodies_must_be_base64_der_not_pem() -> None:
    from pki.errors import CsrEncodingError
    from pki.est import b64_body
    from tests.factories import make_csr

    with pytest.raises(CsrEncodingError, match="RFC 7030"):
        b64_body(make_csr("IMEI:1"))
