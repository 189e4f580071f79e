"""Issuance: serials, validity windows, expired and not-yet-valid CAs, backdating."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from pki.authority import BACKDATE, CertificateAuthority, IssuedCertificate, fingerprint, random_serial
from pki.errors import IssuanceError, ProfileError
from pki.keys import KeyType
from pki.profiles import PROFILES
from pki.signers import LocalSigner
from tests.pki.helpers import (
    LEAF_PROFILE_NAMES,
    Hierarchy,
    assert_issued_by,
    build_hierarchy,
    cached_key,
    names_for,
)

LEAF_PROFILES = [pytest.param(p, id=p) for p in LEAF_PROFILE_NAMES]


def _assert_random_serials(serials: list[int]) -> None:
    assert len(set(serials)) == len(serials), "serials repeat"
    assert all(s > 0 for s in serials)
    assert all(s.bit_length() >= 64 for s in serials), "fewer than 64 bits"
    # RFC 5280 4.1.2.2: at most 20 octets, and DER INTEGER is signed, so at most 159 bits.
    assert all(s.bit_length() <= 159 for s in serials)
    assert serials != sorted(serials), "serials increase monotonically"
    assert serials != sorted(serials, reverse=True), "serials decrease monotonically"


def test_issued_serials_are_random_positive_and_large(hierarchy: Hierarchy) -> None:
    serials = [hierarchy.issue("device").certificate.serial_number for _ in range(200)]

    _assert_random_serials(serials)
    # The low 64 bits alone already differ: entropy is spread over the number, not a counter.
    assert len({s & (2**64 - 1) for s in serials}) == len(serials)


def test_random_serial_draws() -> None:
    _assert_random_serials([random_serial() for _ in range(1000)])


@pytest.mark.parametrize("profile", LEAF_PROFILES)
def test_validity_comes_from_the_profile(old_hierarchy: Hierarchy, profile: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)

    leaf = old_hierarchy.issue(profile, now=now).certificate

    assert leaf.not_valid_before_utc == now - BACKDATE
    assert leaf.not_valid_after_utc == now + PROFILES[profile].validity


def test_explicit_validity_overrides_the_profile(hierarchy: Hierarchy) -> None:
    now = datetime.now(UTC).replace(microsecond=0)

    leaf = hierarchy.issue("dm-server", validity=timedelta(days=7), now=now).certificate

    assert leaf.not_valid_after_utc == now + timedelta(days=7)


def test_validity_never_exceeds_the_issuing_ca() -> None:
    short = build_hierarchy(KeyType.P256, slot="short", issuing_validity=timedelta(days=10))
    ca_not_after = short.issuing.not_valid_after_utc
    assert ca_not_after - short.issuing.not_valid_before_utc == timedelta(days=10) + BACKDATE

    for profile in LEAF_PROFILE_NAMES:
        leaf = short.issue(profile).certificate
        assert leaf.not_valid_after_utc == ca_not_after, profile


def test_issuing_ca_never_exceeds_the_root(hierarchy: Hierarchy) -> None:
    sub = hierarchy.root_ca.issue(
        cached_key(KeyType.P256, "long-ca").public_key(), names_for("issuing-ca"), PROFILES["issuing-ca"],
        validity=timedelta(days=100 * 365),
    ).certificate

    assert sub.not_valid_after_utc == hierarchy.root.not_valid_after_utc


def test_expired_issuing_ca_refuses_to_issue(hierarchy: Hierarchy) -> None:
    after = hierarchy.issuing.not_valid_after_utc

    with pytest.raises(IssuanceError, match="the issuing CA expired on"):
        hierarchy.issue("device", now=after)
    with pytest.raises(IssuanceError, match="the issuing CA expired on"):
        hierarchy.issue("device", now=after + timedelta(days=1))
    # One second before its end it still issues, ending with it.
    last = hierarchy.issue("device", now=after - timedelta(seconds=1)).certificate
    assert last.not_valid_after_utc == after


def test_not_yet_valid_issuing_ca_refuses_to_issue(hierarchy: Hierarchy) -> None:
    # Before the fix, a `now` before the CA's notBefore gave notAfter < notBefore and a bare ValueError.
    before = hierarchy.issuing.not_valid_before_utc

    with pytest.raises(IssuanceError, match="is not valid before"):
        hierarchy.issue("device", now=before - timedelta(days=30))


def test_now_injection_builds_an_expired_leaf(old_hierarchy: Hierarchy) -> None:
    now = datetime.now(UTC)

    leaf = old_hierarchy.issue("device", now=now - timedelta(days=2 * 365)).certificate

    assert leaf.not_valid_after_utc < now
    assert_issued_by(leaf, old_hierarchy.issuing)


def test_not_before_is_backdated(hierarchy: Hierarchy) -> None:
    now = hierarchy.issuing.not_valid_before_utc + timedelta(hours=1)

    leaf = hierarchy.issue("device", now=now).certificate

    assert leaf.not_valid_before_utc == now - BACKDATE


def test_backdating_never_precedes_the_ca(hierarchy: Hierarchy) -> None:
    ca_start = hierarchy.issuing.not_valid_before_utc

    leaf = hierarchy.issue("device", now=ca_start + timedelta(minutes=1)).certificate

    assert leaf.not_valid_before_utc == ca_start


def test_issuing_ca_starts_with_the_root(hierarchy: Hierarchy) -> None:
    assert hierarchy.issuing.not_valid_before_utc >= hierarchy.root.not_valid_before_utc
    assert hierarchy.root.not_valid_after_utc - hierarchy.root.not_valid_before_utc == (
        PROFILES["root"].validity + BACKDATE
    )


def test_issued_certificate_chain_and_encodings(hierarchy: Hierarchy) -> None:
    issued = hierarchy.issue("device")

    assert isinstance(issued, IssuedCertificate)
    assert issued.chain == (hierarchy.issuing,)  # the root is never sent
    assert issued.profile == "device"
    assert issued.serial_hex == format(issued.certificate.serial_number, "x")
    assert issued.fingerprint == fingerprint(issued.certificate)
    assert issued.fingerprint.startswith("sha256:") and len(issued.fingerprint) == 7 + 64
    chain = x509.load_pem_x509_certificates(issued.chain_pem.encode())
    assert chain == [issued.certificate, hierarchy.issuing]


def test_root_profile_cannot_be_issued(hierarchy: Hierarchy) -> None:
    with pytest.raises(ProfileError, match="create_root"):
        hierarchy.issue("root")


def test_authority_refuses_a_signer_for_another_key(hierarchy: Hierarchy) -> None:
    with pytest.raises(IssuanceError, match="does not match the CA certificate"):
        CertificateAuthority(hierarchy.issuing, LocalSigner(cached_key(KeyType.P256, "stranger")))
