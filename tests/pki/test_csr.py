"""PKCS#10 requests: parsed, verified, checked against the profile; bad ones refused clearly."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.authority import IssuedCertificate
from pki.csr import MAX_CSR_BYTES, CsrInfo, check_request, parse_csr
from pki.errors import CsrEncodingError, CsrError, CsrPolicyError, CsrSignatureError, KeyPolicyError
from pki.identity import device_uri
from pki.keys import KeyPolicy, KeyType, PrivateKey
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


# -- weak and refused keys --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_key", "message"),
    [
        # S505: the weak key is the point of the test.
        pytest.param(lambda: rsa.generate_private_key(65537, 1024), "RSA key of 1024 bits is too weak",  # noqa: S505
                     id="rsa1024"),
        pytest.param(lambda: rsa.generate_private_key(3, 2048), "RSA public exponent must be 65537", id="rsa-e3"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256K1()), "elliptic curve secp256k1 is not allowed",
                     id="secp256k1"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()), "elliptic curve secp521r1 is not allowed",
                     id="p521"),
    ],
)
def test_weak_or_refused_key_is_a_key_policy_error(make_key: Callable[[], PrivateKey], message: str) -> None:
    der = csr_bytes(build_csr(make_key()))

    with pytest.raises(KeyPolicyError, match=message):
        parse_csr(der)


def test_key_policy_of_the_caller_applies() -> None:
    der = csr_bytes(build_csr(cached_key(KeyType.RSA2048)))

    with pytest.raises(KeyPolicyError, match="key type rsa2048 is not allowed here; allowed: ed25519, p256"):
        parse_csr(der, KeyPolicy.of(["p256", "ed25519"]))


def test_profile_key_policy_applies_in_check_request() -> None:
    profile = dataclasses.replace(PROFILES["device"], key_policy=KeyPolicy.of([KeyType.P384]))

    with pytest.raises(KeyPolicyError, match="key type p256 is not allowed here; allowed: p384"):
        check_request(_parse(build_csr()), profile)


# -- requests the profile forbids -------------------------------------------------------------

_OTHER_NAME = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x0bupn@example")


@pytest.mark.parametrize(
    ("profile", "common_name", "san", "message"),
    [
        pytest.param("device", DEV_ID, [x509.DNSName("device.example.test")],
                     "subjectAltName of kind dns is not allowed by profile device", id="dns-on-device"),
        pytest.param("device", DEV_ID, [x509.IPAddress(LOCALHOST)],
                     "subjectAltName of kind ip is not allowed by profile device", id="ip-on-device"),
        pytest.param("dm-server", "localhost", [x509.UniformResourceIdentifier("https://dm.example.test/")],
                     "subjectAltName of kind uri is not allowed by profile dm-server", id="uri-on-dm-server"),
        pytest.param("ocsp-signer", "ocsp", [x509.DNSName("ocsp.example.test")],
                     "subjectAltName of kind dns is not allowed by profile ocsp-signer", id="dns-on-ocsp-signer"),
        pytest.param("device", DEV_ID, [x509.UniformResourceIdentifier(device_uri("IMEI:000000000000000"))],
                     "CSR asks for URIs it may not have: urn:dmboot:devid:IMEI:000000000000000",
                     id="another-devid-uri"),
    ],
)
def test_forbidden_san_kind_is_refused(profile: str, common_name: str, san: list[x509.GeneralName],
                                       message: str) -> None:
    info = _parse(build_csr(common_name=common_name, san=san))

    with pytest.raises(CsrPolicyError, match=message):
        check_request(info, PROFILES[profile])


@pytest.mark.parametrize(
    ("san", "message"),
    [
        pytest.param(x509.RFC822Name("ops@example.test"), "subjectAltName of type rfc822_name is not allowed",
                     id="email"),
        pytest.param(_OTHER_NAME, "subjectAltName of type other_name is not allowed", id="other-name"),
        pytest.param(x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
                     "subjectAltName of type registered_id is not allowed", id="registered-id"),
        pytest.param(x509.DirectoryName(x509.Name([])), "subjectAltName of type directory_name is not allowed",
                     id="directory-name"),
        # An address with a netmask (8 octets) used to escape as a bare ValueError.
        pytest.param(x509.IPAddress(ipaddress.ip_network("10.0.0.0/8")), "is not a single address", id="ip-netmask"),
    ],
)
def test_unsupported_san_type_is_refused_when_parsing(san: x509.GeneralName, message: str) -> None:
    with pytest.raises(CsrPolicyError, match=message):
        _parse(build_csr(san=[san]))


@pytest.mark.parametrize("profile", ["device", "dm-server", "data-repository", "ocsp-signer"])
def test_ca_flag_is_refused(profile: str) -> None:
    info = _parse(build_csr(common_name="localhost" if profile != "device" else DEV_ID,
                            extensions=[(x509.BasicConstraints(ca=True, path_length=0), True)]))

    with pytest.raises(CsrPolicyError, match=r"CSR requests a CA certificate \(basicConstraints cA=TRUE\)"):
        check_request(info, PROFILES[profile])


@pytest.mark.parametrize(
    ("extension", "oid"),
    [
        pytest.param(x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.test")], excluded_subtrees=None),
                     "2.5.29.30", id="name-constraints"),
        pytest.param(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"),
                     "1.3.6.1.4.1.55555.1", id="custom-oid"),
        pytest.param(x509.OCSPNoCheck(), "1.3.6.1.5.5.7.48.1.5", id="ocsp-nocheck"),
        pytest.param(x509.SubjectKeyIdentifier(b"\x01" * 20), "2.5.29.14", id="subject-key-identifier"),
    ],
)
def test_extension_outside_the_profile_is_refused(extension: x509.ExtensionType, oid: str) -> None:
    info = _parse(build_csr(extensions=[(extension, False)]))

    assert oid in info.extensions
    with pytest.raises(CsrPolicyError, match=f"extension {oid} is not allowed by profile device"):
        check_request(info, PROFILES["device"])


@pytest.mark.parametrize(
    ("profile", "eku"),
    [
        pytest.param("device", ExtendedKeyUsageOID.SERVER_AUTH, id="serverAuth-on-device"),
        pytest.param("dm-server", ExtendedKeyUsageOID.CLIENT_AUTH, id="clientAuth-on-dm-server"),
        pytest.param("device", ExtendedKeyUsageOID.CODE_SIGNING, id="codeSigning-on-device"),
        pytest.param("ocsp-signer", ExtendedKeyUsageOID.SERVER_AUTH, id="serverAuth-on-ocsp-signer"),
    ],
)
def test_eku_outside_the_profile_is_refused(profile: str, eku: x509.ObjectIdentifier) -> None:
    allowed = next(iter(PROFILES[profile].eku))
    info = _parse(build_csr(common_name="localhost" if profile != "device" else DEV_ID,
                            extensions=[(x509.ExtendedKeyUsage([allowed, eku]), False)]))

    with pytest.raises(CsrPolicyError, match=f"extended key usage not allowed by profile {profile}"):
        check_request(info, PROFILES[profile])


# -- names outside what the caller authenticated ----------------------------------------------

_EXPECTED_SERVER = Names(common_name="localhost", dns=("localhost",), ips=(LOCALHOST,))


@pytest.mark.parametrize(
    ("profile", "expected", "common_name", "san", "message"),
    [
        pytest.param("device", Names(DEV_ID, uris=(DEVICE_URI,)), "IMEI:000000000000000", [],
                     "CSR subject CN 'IMEI:000000000000000' does not match 'IMEI:490154203237518'", id="device-cn"),
        pytest.param("device", Names(DEV_ID, uris=(DEVICE_URI,)), DEV_ID,
                     [x509.UniformResourceIdentifier(device_uri("IMEI:1"))],
                     "CSR asks for names it may not have: urn:dmboot:devid:IMEI:1", id="device-uri"),
        pytest.param("dm-server", _EXPECTED_SERVER, "localhost", [x509.DNSName("evil.example.test")],
                     "CSR asks for names it may not have: evil.example.test", id="server-dns"),
        pytest.param("dm-server", _EXPECTED_SERVER, "localhost", [x509.IPAddress(ipaddress.ip_address("10.1.2.3"))],
                     "CSR asks for names it may not have: 10.1.2.3", id="server-ip"),
    ],
)
def test_names_outside_expected_are_refused(
    profile: str, expected: Names, common_name: str, san: list[x509.GeneralName], message: str
) -> None:
    info = _parse(build_csr(common_name=common_name, san=san))

    with pytest.raises(CsrPolicyError, match=message) as raised:
        check_request(info, PROFILES[profile], expected)
    assert raised.value.field == "csr"


@pytest.mark.parametrize(
    ("profile", "common_name", "message"),
    [
        pytest.param("device", None, "CSR subject needs a CN holding the DevID", id="device-no-cn"),
        pytest.param("device", "IMEI 123", "CSR subject CN: DevID must be 1-128 printable ASCII",
                     id="device-bad-devid"),
        pytest.param("dm-server", None, "profile dm-server needs a DNS name or IP address", id="server-no-name"),
        pytest.param("ocsp-signer", None, "CSR subject needs a CN", id="ocsp-no-cn"),
    ],
)
def test_missing_or_bad_subject_is_refused(profile: str, common_name: str | None, message: str) -> None:
    info = _parse(build_csr(common_name=common_name))

    with pytest.raises(CsrPolicyError, match=message):
        check_request(info, PROFILES[profile])


def test_every_csr_error_is_a_csr_error() -> None:
    for cls in (CsrEncodingError, CsrSignatureError, CsrPolicyError):
        assert issubclass(cls, CsrError)


@pytest.mark.parametrize(
    "dev_id", ["S/N:AB/12", "IMEI:1#2", "a%41b", "q?x=1"], ids=["slash", "hash", "percent", "query"]
)
def test_devid_with_reserved_characters_may_request_its_own_uri(dev_id: str) -> None:
    # The URI SAN is compared as sent; asn1crypto's IRI form (percent-decoded) once made these fail.
    uri = device_uri(dev_id)
    info = _parse(build_csr(common_name=dev_id, san=[x509.UniformResourceIdentifier(uri)]))

    assert info.uris == (uri,)
    assert check_request(info, PROFILES["device"]) == Names(common_name=dev_id, uris=(uri,))
    expected = Names(common_name=dev_id, uris=(uri,))
    assert check_request(info, PROFILES["device"], expected) is expected


def test_uri_that_only_decodes_to_the_devid_uri_is_refused() -> None:
    encoded = "urn:dmboot:devid:IMEI%3A490154203237518"  # not the canonical device_uri(DEV_ID)
    info = _parse(build_csr(san=[x509.UniformResourceIdentifier(encoded)]))

    with pytest.raises(CsrPolicyError, match="CSR asks for URIs it may not have"):
        check_request(info, PROFILES["device"])


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
