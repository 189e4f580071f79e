"""PKCS#10 requests the policy refuses: weak keys, names and extensions the profile forbids,
names outside what the caller authenticated.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.csr import CsrInfo, check_request, parse_csr
from pki.errors import CsrPolicyError, KeyPolicyError
from pki.identity import device_uri
from pki.keys import KeyPolicy, KeyType, PrivateKey
from pki.profiles import PROFILES, Names
from tests.pki.helpers import DEV_ID, LOCALHOST, build_csr, cached_key, csr_bytes

DEVICE_URI = device_uri(DEV_ID)


def _parse(csr: x509.CertificateSigningRequest) -> CsrInfo:
    return parse_csr(csr_bytes(csr))

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
