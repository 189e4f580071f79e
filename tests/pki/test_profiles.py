"""Each profile's extensions, values and criticality, asserted exactly (RFC 5280 4.2)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from pki.errors import ProfileError
from pki.keys import KeyType, PublicKey
from pki.profiles import LEAF_PROFILES, PROFILES, Names, Urls, get_profile
from tests.pki.helpers import (
    LEAF_PROFILE_NAMES,
    URLS,
    Hierarchy,
    assert_extensions,
    assert_is_ca,
    assert_is_leaf,
    assert_issued_by,
    build_hierarchy,
    cached_key,
    names_for,
)

SUBJECT_KEY_TYPES = [pytest.param(k, id=k.value) for k in (KeyType.P256, KeyType.ED25519, KeyType.RSA2048)]
WITH_URLS = [pytest.param(URLS, id="with-urls"), pytest.param(Urls(), id="without-urls")]


def _key_usage(
    *, digital_signature: bool = False, key_encipherment: bool = False, ca: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=key_encipherment,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


def _key_ids(subject: PublicKey, issuer: x509.Certificate) -> list[tuple[x509.ExtensionType, bool]]:
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return [
        (x509.SubjectKeyIdentifier.from_public_key(subject), False),
        (x509.AuthorityKeyIdentifier(issuer_ski.digest, None, None), False),
    ]


def _locations(urls: Urls) -> list[tuple[x509.ExtensionType, bool]]:
    if not urls.crl:
        return []
    return [
        (x509.CRLDistributionPoints(
            [x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl[0])], None, None, None)]
        ), False),
        (x509.AuthorityInformationAccess([
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp[0])
            ),
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(urls.ca_issuers[0])
            ),
        ]), False),
    ]


@pytest.fixture(scope="module", params=WITH_URLS)
def urls_hierarchy(request: pytest.FixtureRequest) -> Hierarchy:
    urls: Urls = request.param
    return build_hierarchy(KeyType.P256, slot="urls", urls=urls)


def test_root_extensions(urls_hierarchy: Hierarchy) -> None:
    root = urls_hierarchy.root

    assert_is_ca(root, path_len=None)
    assert_extensions(root, [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (_key_usage(ca=True), True),
        *_key_ids(root.public_key(), root),
    ])
    assert root.subject == root.issuer
    root.verify_directly_issued_by(root)


def test_issuing_ca_extensions(urls_hierarchy: Hierarchy) -> None:
    issuing = urls_hierarchy.issuing

    assert_is_ca(issuing, path_len=0)
    assert_extensions(issuing, [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (_key_usage(ca=True), True),
        *_key_ids(issuing.public_key(), urls_hierarchy.root),
        *_locations(urls_hierarchy.ca.urls),
    ])
    assert_issued_by(issuing, urls_hierarchy.root)


@pytest.mark.parametrize("subject_key_type", SUBJECT_KEY_TYPES)
@pytest.mark.parametrize(
    ("profile", "eku"),
    [
        pytest.param("device", ExtendedKeyUsageOID.CLIENT_AUTH, id="device"),
        pytest.param("dm-server", ExtendedKeyUsageOID.SERVER_AUTH, id="dm-server"),
        pytest.param("data-repository", ExtendedKeyUsageOID.SERVER_AUTH, id="data-repository"),
    ],
)
def test_tls_leaf_extensions(
    urls_hierarchy: Hierarchy, profile: str, eku: x509.ObjectIdentifier, subject_key_type: KeyType
) -> None:
    key = cached_key(subject_key_type)
    names = names_for(profile)
    leaf = urls_hierarchy.issue(profile, key=key, names=names).certificate

    assert_is_leaf(leaf)
    assert_extensions(leaf, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        # keyEncipherment for RSA subject keys only (TLS 1.2 RSA key transport).
        (_key_usage(digital_signature=True, key_encipherment=isinstance(key, rsa.RSAPrivateKey)), True),
        (x509.ExtendedKeyUsage([eku]), False),
        (x509.SubjectAlternativeName(names.general_names()), False),
        *_key_ids(key.public_key(), urls_hierarchy.issuing),
        *_locations(urls_hierarchy.ca.urls),
    ])
    assert_issued_by(leaf, urls_hierarchy.issuing)
    assert leaf.subject == names.subject()
    assert leaf.public_key() == key.public_key()


def test_device_san_is_the_devid_uri_and_dm_server_san_has_dns_and_ip(hierarchy: Hierarchy) -> None:
    device = hierarchy.issue("device").certificate
    server = hierarchy.issue("dm-server").certificate

    device_san = device.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    server_san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert device_san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:dmboot:devid:IMEI:490154203237518"
    ]
    assert device_san.get_values_for_type(x509.DNSName) == []
    assert server_san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in server_san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert device.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "IMEI:490154203237518"


@pytest.mark.parametrize("subject_key_type", SUBJECT_KEY_TYPES)
def test_ocsp_signer_extensions(urls_hierarchy: Hierarchy, subject_key_type: KeyType) -> None:
    key = cached_key(subject_key_type)
    # SANs and URLs offered to the profile are not used: an OCSP responder certificate carries neither.
    leaf = urls_hierarchy.issue("ocsp-signer", key=key, names=names_for("dm-server")).certificate

    assert_is_leaf(leaf)
    assert_extensions(leaf, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), True),
        (x509.OCSPNoCheck(), False),
        *_key_ids(key.public_key(), urls_hierarchy.issuing),
    ])


def test_leaf_without_names_has_no_san(hierarchy: Hierarchy) -> None:
    leaf = hierarchy.issue("dm-server", names=Names("just a CN")).certificate

    assert not [e for e in leaf.extensions if isinstance(e.value, x509.SubjectAlternativeName)]


def test_profile_table() -> None:
    assert set(LEAF_PROFILES) == set(LEAF_PROFILE_NAMES)
    assert {name for name, p in PROFILES.items() if p.is_ca} == {"root", "issuing-ca"}
    assert get_profile("dm_server") is PROFILES["dm-server"]
    assert PROFILES["device"].san_kinds == {"uri"}
    assert PROFILES["dm-server"].san_kinds == PROFILES["data-repository"].san_kinds == {"dns", "ip"}
    assert PROFILES["ocsp-signer"].san_kinds == frozenset()


def test_unknown_profile_names_the_known_ones() -> None:
    expected = "unknown certificate profile 'web'; known: data-repository, device, dm-server"
    with pytest.raises(ProfileError, match=expected) as info:
        get_profile("web")
    assert info.value.field == "profile"
