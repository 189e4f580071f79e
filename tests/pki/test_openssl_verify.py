"""Every leaf profile under every CA key type verifies with ``openssl verify``, for its purpose only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pki.authority import CertificateAuthority
from pki.keys import KeyType
from pki.profiles import PROFILES, Names
from pki.signers import LocalSigner
from tests.pki.helpers import (
    DEV_ID,
    KEY_TYPES,
    LEAF_PROFILE_NAMES,
    Hierarchy,
    cached_key,
    openssl,
    openssl_verify,
    write_pem,
)

SUBJECT_KEY_TYPES = [pytest.param(k, id=f"subject-{k.value}") for k in
                     (KeyType.P256, KeyType.P384, KeyType.ED25519, KeyType.RSA2048)]


def assert_invalid_purpose(output: str) -> None:
    # X509_V_ERR_INVALID_PURPOSE (26): "unsuitable certificate purpose" in OpenSSL 3,
    # "unsupported certificate purpose" in OpenSSL 1.1.
    assert "error 26 at 0 depth" in output
    assert "certificate purpose" in output


LEAF_PROFILES = [pytest.param(p, id=p) for p in LEAF_PROFILE_NAMES]


@pytest.mark.parametrize("subject_key_type", SUBJECT_KEY_TYPES)
@pytest.mark.parametrize("ca_key_type", KEY_TYPES)
@pytest.mark.parametrize("profile", LEAF_PROFILES)
def test_leaf_verifies_with_openssl(
    tmp_path: Path,
    hierarchies: Callable[[KeyType], Hierarchy],
    profile: str,
    ca_key_type: KeyType,
    subject_key_type: KeyType,
) -> None:
    hierarchy = hierarchies(ca_key_type)
    leaf = hierarchy.issue(profile, key=cached_key(subject_key_type)).certificate

    result = openssl_verify(tmp_path, hierarchy, leaf)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")


@pytest.mark.parametrize(
    ("profile", "good", "bad"),
    [
        pytest.param("device", "sslclient", "sslserver", id="device"),
        pytest.param("dm-server", "sslserver", "sslclient", id="dm-server"),
        pytest.param("data-repository", "sslserver", "sslclient", id="data-repository"),
    ],
)
@pytest.mark.parametrize("ca_key_type", KEY_TYPES)
def test_leaf_verifies_for_its_tls_purpose_only(
    tmp_path: Path,
    hierarchies: Callable[[KeyType], Hierarchy],
    ca_key_type: KeyType,
    profile: str,
    good: str,
    bad: str,
) -> None:
    hierarchy = hierarchies(ca_key_type)
    leaf = hierarchy.issue(profile, key=cached_key(KeyType.RSA2048)).certificate

    ok = openssl_verify(tmp_path, hierarchy, leaf, "-purpose", good)
    refused = openssl_verify(tmp_path, hierarchy, leaf, "-purpose", bad)

    assert ok.returncode == 0, ok.stderr
    assert refused.returncode != 0
    assert_invalid_purpose(refused.stdout + refused.stderr)


def test_ocsp_signer_verifies_for_ocsp_helper_purpose(tmp_path: Path, hierarchy: Hierarchy) -> None:
    leaf = hierarchy.issue("ocsp-signer").certificate

    ok = openssl_verify(tmp_path, hierarchy, leaf, "-purpose", "ocsphelper")
    refused = openssl_verify(tmp_path, hierarchy, leaf, "-purpose", "sslserver")

    assert ok.returncode == 0, ok.stderr
    assert refused.returncode != 0
    assert_invalid_purpose(refused.stdout + refused.stderr)


def test_leaf_does_not_verify_against_another_root(
    tmp_path: Path, hierarchy: Hierarchy, other_hierarchy: Hierarchy
) -> None:
    leaf = hierarchy.issue("device").certificate
    other_root = write_pem(tmp_path / "other-root.pem", other_hierarchy.root)
    issuing = write_pem(tmp_path / "issuing.pem", hierarchy.issuing)
    leaf_pem = write_pem(tmp_path / "leaf.pem", leaf)

    result = openssl("verify", "-CAfile", other_root, "-untrusted", issuing, leaf_pem)

    assert result.returncode != 0
    assert "unable to get local issuer certificate" in result.stdout + result.stderr


def test_issuing_ca_path_length_zero_is_enforced(tmp_path: Path, hierarchy: Hierarchy) -> None:
    # The library lets the issuing CA sign a CA profile; its pathLen 0 makes relying parties refuse it.
    sub_ca_key = cached_key(KeyType.P256, "sub-ca")
    sub_ca = hierarchy.ca.issue(sub_ca_key.public_key(), Names("sub CA"), PROFILES["issuing-ca"]).certificate
    leaf = (
        CertificateAuthority(sub_ca, LocalSigner(sub_ca_key))
        .issue(cached_key(KeyType.P256).public_key(), Names(DEV_ID), PROFILES["device"])
        .certificate
    )
    root = write_pem(tmp_path / "root.pem", hierarchy.root)
    untrusted = write_pem(tmp_path / "untrusted.pem", sub_ca, hierarchy.issuing)
    leaf_pem = write_pem(tmp_path / "leaf.pem", leaf)

    result = openssl("verify", "-CAfile", root, "-untrusted", untrusted, leaf_pem)

    assert result.returncode != 0
    assert "path length constraint exceeded" in result.stdout + result.stderr
