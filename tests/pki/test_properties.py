"""Property tests for the parsers and encoders (hypothesis)."""

from __future__ import annotations

import string

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import assume, given
from hypothesis import strategies as st

from pki.csr import check_request, parse_csr
from pki.encoding import load_certificates, pkcs7_certificates
from pki.errors import CsrError, EncodingError, KeyPolicyError
from pki.identity import DEVICE_URI_PREFIX, check_dev_id, dev_id_from_uri, device_uri
from pki.keys import KeyType
from pki.profiles import LEAF_PROFILES, PROFILES
from tests.pki.helpers import HYPOTHESIS, cached_key

_PEM_CSR = b"-----BEGIN CERTIFICATE REQUEST-----\n%s\n-----END CERTIFICATE REQUEST-----\n"
_BASE64 = string.ascii_letters + string.digits + "+/=\n"


# -- parse_csr never raises anything but its own errors ---------------------------------------


@HYPOTHESIS
@given(st.binary(max_size=2048))
def test_parse_csr_on_arbitrary_bytes_raises_only_csr_or_key_errors(data: bytes) -> None:
    try:
        parse_csr(data)
    except (CsrError, KeyPolicyError):
        pass


@HYPOTHESIS
@given(st.text(max_size=512))
def test_parse_csr_on_arbitrary_text_raises_only_csr_or_key_errors(text: str) -> None:
    try:
        parse_csr(text)
    except (CsrError, KeyPolicyError):
        pass


@HYPOTHESIS
@given(st.text(alphabet=_BASE64, max_size=1024))
def test_parse_csr_on_pem_armoured_garbage_is_an_encoding_error(body: str) -> None:
    with pytest.raises(CsrError):
        parse_csr(_PEM_CSR % body.encode())


@pytest.fixture(scope="module")
def valid_der() -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IMEI:1")]))
        .sign(cached_key(KeyType.P256), hashes.SHA256())
    )
    return csr.public_bytes(Encoding.DER)


@HYPOTHESIS
@given(data=st.data())
def test_parse_csr_on_mutated_requests_raises_only_csr_or_key_errors(valid_der: bytes, data: st.DataObject) -> None:
    mutated = bytearray(valid_der)
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        position = data.draw(st.integers(0, len(mutated) - 1), label="position")
        mutated[position] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(0, len(mutated)), label="length")
    try:
        parse_csr(bytes(mutated[:cut]))
    except (CsrError, KeyPolicyError):
        pass


# A request whose signature is valid but whose extensionRequest holds arbitrary bytes for the
# extensions check_request reads (SAN, keyUsage, extKeyUsage, basicConstraints): asn1crypto decodes
# them lazily, and every failure must still come out as a CsrError.
_READ_EXTENSIONS = ["2.5.29.17", "2.5.29.15", "2.5.29.37", "2.5.29.19", "2.5.29.30", "1.2.3.4"]


@HYPOTHESIS
@given(oid=st.sampled_from(_READ_EXTENSIONS), value=st.binary(max_size=64), critical=st.booleans())
def test_signed_request_with_arbitrary_extension_value_raises_only_csr_errors(
    oid: str, value: bytes, critical: bool
) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IMEI:1")]))
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=critical)
        .sign(cached_key(KeyType.P256), hashes.SHA256())
    )
    try:
        info = parse_csr(csr.public_bytes(Encoding.DER))
    except CsrError:
        return
    repr(info)
    for name in sorted(LEAF_PROFILES):
        try:
            check_request(info, PROFILES[name])
        except CsrError:
            pass


@HYPOTHESIS
@given(
    san=st.lists(
        st.one_of(
            st.from_regex(r"\A[a-z0-9]{1,12}(\.[a-z0-9]{1,12}){0,3}\Z").map(x509.DNSName),
            st.ip_addresses().map(x509.IPAddress),
            st.from_regex(r"\A[a-z]{1,8}:[a-zA-Z0-9:./%-]{1,30}\Z").map(x509.UniformResourceIdentifier),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_requested_names_are_read_back(san: list[x509.GeneralName]) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .sign(cached_key(KeyType.P256), hashes.SHA256())
    )

    info = parse_csr(csr.public_bytes(Encoding.DER))

    assert list(info.dns) == [n.value.lower() for n in san if isinstance(n, x509.DNSName)]
    assert list(info.ips) == [n.value for n in san if isinstance(n, x509.IPAddress)]
    assert list(info.uris) == [n.value for n in san if isinstance(n, x509.UniformResourceIdentifier)]


# -- identity ---------------------------------------------------------------------------------

_DEV_IDS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128)


@HYPOTHESIS
@given(_DEV_IDS)
def test_device_uri_round_trips(dev_id: str) -> None:
    uri = device_uri(dev_id)

    assert uri.startswith(DEVICE_URI_PREFIX)
    assert dev_id_from_uri(uri) == dev_id
    assert uri.isascii() and " " not in uri
    assert "/" not in uri[len(DEVICE_URI_PREFIX):] and "?" not in uri and "#" not in uri
    x509.UniformResourceIdentifier(uri)  # acceptable to cryptography as a SAN


@HYPOTHESIS
@given(st.text(max_size=200))
def test_invalid_dev_ids_are_refused(dev_id: str) -> None:
    assume(not (1 <= len(dev_id) <= 128 and all(0x21 <= ord(c) <= 0x7E for c in dev_id)))

    with pytest.raises(ValueError, match="DevID must be 1-128 printable ASCII characters without spaces"):
        device_uri(dev_id)


@pytest.mark.parametrize("dev_id", ["IMEI:490154203237518", "MEID:A10000009296F2", "urn:uuid:x", "a%2Fb", "~!$&'()*+"],
                         ids=["imei", "meid", "urn", "percent", "punctuation"])
def test_device_uri_examples(dev_id: str) -> None:
    assert dev_id_from_uri(device_uri(dev_id)) == check_dev_id(dev_id)


def test_device_uri_percent_encodes_reserved_characters() -> None:
    assert device_uri("IMEI:1") == "urn:dmboot:devid:IMEI:1"
    assert device_uri("a/b?c#d%e") == "urn:dmboot:devid:a%2Fb%3Fc%23d%25e"


def test_not_a_device_uri() -> None:
    assert dev_id_from_uri("https://dm.example.test/") is None


def test_dev_id_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="DevID must be a string"):
        check_dev_id(12345)  # type: ignore[arg-type]


# -- KeyType.parse ----------------------------------------------------------------------------

_ALIASES = {
    "p256": KeyType.P256, "ecdsa-p256": KeyType.P256, "secp256r1": KeyType.P256, "prime256v1": KeyType.P256,
    "p384": KeyType.P384, "ecdsa-p384": KeyType.P384, "secp384r1": KeyType.P384,
    "ed25519": KeyType.ED25519,
    "rsa": KeyType.RSA2048, "rsa2048": KeyType.RSA2048, "rsa3072": KeyType.RSA3072, "rsa4096": KeyType.RSA4096,
}
_NORMALIZED = {name.replace("-", "") for name in _ALIASES}


@st.composite
def _spelled(draw: st.DrawFn, name: str) -> str:
    """``name`` in random case, with '-' or '_' inserted and whitespace around."""
    out = []
    for char in name.replace("-", ""):
        if draw(st.booleans()):
            out.append(draw(st.sampled_from(["-", "_"])))
        out.append(char.upper() if draw(st.booleans()) else char)
    pad = st.text(alphabet=" \t\n", max_size=2)
    return draw(pad) + "".join(out) + draw(pad)


@HYPOTHESIS
@given(data=st.data(), name=st.sampled_from(sorted(_ALIASES)))
def test_key_type_parse_accepts_every_alias_in_any_spelling(data: st.DataObject, name: str) -> None:
    spelled = data.draw(_spelled(name), label="spelled")

    assert KeyType.parse(spelled) is _ALIASES[name]


@pytest.mark.parametrize("name", sorted(_ALIASES))
def test_key_type_parse_alias(name: str) -> None:
    assert KeyType.parse(name) is _ALIASES[name]
    assert KeyType.parse(name.upper()) is _ALIASES[name]


@HYPOTHESIS
@given(st.text(max_size=40))
def test_key_type_parse_rejects_garbage_with_key_policy_error(text: str) -> None:
    normalized = text.strip().lower().replace("-", "").replace("_", "")
    if normalized in _NORMALIZED:
        assert isinstance(KeyType.parse(text), KeyType)
        return
    with pytest.raises(KeyPolicyError, match="unknown key type .*; allowed: p256, p384, ed25519, rsa2048") as info:
        KeyType.parse(text)
    assert info.value.field == "key_type"


@pytest.mark.parametrize("text", ["", "rsa1024", "p521", "secp256k1", "dsa", "x25519", "ed448", "rsa-8192"])
def test_key_type_parse_refuses_unsupported_types(text: str) -> None:
    with pytest.raises(KeyPolicyError, match="unknown key type"):
        KeyType.parse(text)


# -- encodings --------------------------------------------------------------------------------


@HYPOTHESIS
@given(st.binary(max_size=1024))
def test_load_certificates_on_arbitrary_bytes_raises_only_encoding_error(data: bytes) -> None:
    try:
        load_certificates(data)
    except EncodingError:
        pass


@HYPOTHESIS
@given(st.binary(max_size=1024))
def test_pkcs7_certificates_on_arbitrary_bytes_raises_only_encoding_error(data: bytes) -> None:
    try:
        pkcs7_certificates(data)
    except EncodingError:
        pass
