"""The generic signer path of pki.tbs: an opaque Signer's certificates and CRLs verify with openssl."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pki.authority import CertificateAuthority
from pki.errors import SignerError
from pki.keys import KeyType, signature_hash
from pki.profiles import PROFILES
from pki.signers import LocalSigner, Signer
from pki.tbs import check_signature, sign_certificate, sign_crl
from tests.pki.helpers import (
    KEY_TYPES,
    Hierarchy,
    OpaqueSigner,
    WrongKeySigner,
    assert_is_ca,
    assert_issued_by,
    build_hierarchy,
    cached_key,
    names_for,
    openssl,
    openssl_verify,
    write_pem,
)


@pytest.fixture(scope="module", params=KEY_TYPES)
def opaque_hierarchy(request: pytest.FixtureRequest) -> Hierarchy:
    """Root, issuing CA and (in the tests) leaves all signed through OpaqueSigner."""
    key_type: KeyType = request.param
    return build_hierarchy(key_type, signer=OpaqueSigner)


def _crl(issuing: x509.Certificate, signer: Signer, revoked_serial: int) -> x509.CertificateRevocationList:
    """A CRL of ``issuing`` revoking one serial, built by cryptography, signed by ``signer``."""
    now = datetime.now(UTC).replace(microsecond=0)
    ski = issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(revoked_serial)
        .revocation_date(now - timedelta(minutes=1))
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .build()
    )
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuing.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=1))
        .add_revoked_certificate(revoked)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False)
    )
    return sign_crl(builder, signer)


def test_opaque_signer_is_a_signer_but_not_local() -> None:
    signer = OpaqueSigner(cached_key(KeyType.P256))

    assert isinstance(signer, Signer)
    assert not isinstance(signer, LocalSigner)


def test_hierarchy_signed_through_the_tbs_path_verifies(tmp_path: Path, opaque_hierarchy: Hierarchy) -> None:
    signer = opaque_hierarchy.ca.signer
    assert isinstance(signer, OpaqueSigner)
    calls = signer.calls

    leaf = opaque_hierarchy.issue("dm-server", key=cached_key(KeyType.RSA2048)).certificate

    assert signer.calls == calls + 1  # signed once, by the signer, over the TBS bytes
    assert_is_ca(opaque_hierarchy.root, path_len=None)
    assert_issued_by(opaque_hierarchy.issuing, opaque_hierarchy.root)
    assert_issued_by(leaf, opaque_hierarchy.issuing)
    result = openssl_verify(tmp_path, opaque_hierarchy, leaf, "-purpose", "sslserver")
    assert result.returncode == 0, result.stderr


def test_crl_signed_through_the_tbs_path_verifies(tmp_path: Path, opaque_hierarchy: Hierarchy) -> None:
    revoked_leaf = opaque_hierarchy.issue("device").certificate
    good_leaf = opaque_hierarchy.issue("device").certificate

    crl = _crl(opaque_hierarchy.issuing, opaque_hierarchy.ca.signer, revoked_leaf.serial_number)

    assert crl.is_signature_valid(opaque_hierarchy.issuing.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(revoked_leaf.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(good_leaf.serial_number) is None
    crl_pem = tmp_path / "crl.pem"
    crl_pem.write_bytes(crl.public_bytes(Encoding.PEM))
    root, issuing = opaque_hierarchy.write(tmp_path)
    checked = openssl("crl", "-in", crl_pem, "-noout", "-verify", "-CAfile", issuing)
    # OpenSSL 3.0's `crl -verify` exits 0 even on failure: the verdict is in its output.
    assert checked.returncode == 0, checked.stderr
    assert "verify OK" in checked.stdout + checked.stderr
    # The CRL is usable by a relying party: the revoked leaf fails, the other passes.
    revoked_pem = write_pem(tmp_path / "revoked.pem", revoked_leaf)
    good_pem = write_pem(tmp_path / "good.pem", good_leaf)
    crl_args = ("verify", "-crl_check", "-CRLfile", crl_pem, "-CAfile", root, "-untrusted", issuing)
    refused = openssl(*crl_args, revoked_pem)
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr
    accepted = openssl(*crl_args, good_pem)
    assert accepted.returncode == 0, accepted.stderr


def test_crl_signed_by_another_key_does_not_verify(tmp_path: Path, hierarchy: Hierarchy) -> None:
    forged = _crl(hierarchy.issuing, OpaqueSigner(cached_key(KeyType.P256, "forger")), 1)
    crl_pem = tmp_path / "crl.pem"
    crl_pem.write_bytes(forged.public_bytes(Encoding.PEM))
    issuing = write_pem(tmp_path / "issuing.pem", hierarchy.issuing)

    checked = openssl("crl", "-in", crl_pem, "-noout", "-verify", "-CAfile", issuing)

    # OpenSSL 3.0's `crl -verify` exits 0 even on failure: the verdict is in its output.
    assert "verify failure" in checked.stdout + checked.stderr
    assert "verify OK" not in checked.stdout + checked.stderr


def test_generic_and_local_paths_give_the_same_tbs(hierarchy: Hierarchy) -> None:
    key = cached_key(KeyType.P256, "main-issuing")
    builder = (
        x509.CertificateBuilder()
        .subject_name(hierarchy.issuing.subject)
        .issuer_name(hierarchy.issuing.subject)
        .public_key(key.public_key())
        .serial_number(12345)
        .not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2026, 1, 1, tzinfo=UTC))
    )

    local = sign_certificate(builder, LocalSigner(key))
    generic = sign_certificate(builder, OpaqueSigner(key))

    # ECDSA signatures are randomized; everything signed over must be identical.
    assert generic.tbs_certificate_bytes == local.tbs_certificate_bytes
    assert generic.signature_algorithm_oid == local.signature_algorithm_oid
    check_signature(generic, local)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_signer_signing_with_the_wrong_key_is_caught(key_type: KeyType) -> None:
    hierarchy = build_hierarchy(key_type)  # over the session's cached keys
    claimed, actual = cached_key(key_type, "main-issuing"), cached_key(key_type, "other-issuing")
    wrong = WrongKeySigner(claimed=claimed, actual=actual)
    ca = CertificateAuthority(hierarchy.issuing, wrong)  # the claimed public key matches the certificate

    with pytest.raises(SignerError, match="signature does not verify with the issuer key"):
        ca.issue(cached_key(KeyType.P256).public_key(), names_for("device"), PROFILES["device"])


def test_signer_returning_nothing_is_refused(hierarchy: Hierarchy) -> None:
    class Mute(OpaqueSigner):
        def sign(self, data: bytes) -> bytes:
            return b""

    ca = CertificateAuthority(hierarchy.issuing, Mute(cached_key(KeyType.P256, "main-issuing")))

    with pytest.raises(SignerError, match="returned no signature"):
        ca.issue(cached_key(KeyType.P256).public_key(), names_for("device"), PROFILES["device"])


def test_signature_hash_per_key_type() -> None:
    assert signature_hash(KeyType.ED25519) is None
    assert signature_hash(KeyType.P384).name == "sha384"  # type: ignore[union-attr]
    for key_type in (KeyType.P256, KeyType.RSA2048, KeyType.RSA3072, KeyType.RSA4096):
        assert signature_hash(key_type).name == "sha256"  # type: ignore[union-attr]
