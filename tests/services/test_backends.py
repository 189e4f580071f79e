"""The service on every secret store (embedded, Vault Transit, Vault KV): issue, rotate, sign a CRL.

Each test runs once per backend and database; what is signed is checked by openssl.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import select

from bootstrap.runtime import Runtime
from bootstrap.secrets import KeyRef
from bootstrap.secrets.vault.store import VaultTransitSigner
from bootstrap.services.issuance import Requester
from bootstrap.store.models import AuditEvent, AuthorityRow, CertificateRow
from pki.signers import LocalSigner
from pki.tbs import sign_crl
from tests.factories import make_csr
from tests.support.openssl import openssl_crl_verify, openssl_verify, pem_of

ADMIN = Requester("test:admin")


def _rows(runtime: Runtime) -> dict[str, AuthorityRow]:
    with runtime.database.session() as session:
        return {r.name: r for r in runtime.authorities.all_rows(session)}


def _pem(runtime: Runtime, name: str) -> bytes:
    return _rows(runtime)[name].pem.encode()


def test_ca_keys_live_where_the_backend_says(any_backend_runtime: Runtime, secret_backend: str) -> None:
    rows = _rows(any_backend_runtime)
    assert {KeyRef.from_uri(r.key_ref).backend for r in rows.values()} == {secret_backend}
    with any_backend_runtime.database.session() as session:
        _, authority = any_backend_runtime.authorities.active(session)
    expected = VaultTransitSigner if secret_backend == "vault-transit" else LocalSigner
    assert isinstance(authority.signer, expected)


def test_issued_certificate_passes_openssl_verify(
    any_backend_runtime: Runtime, tmp_path: Path, secret_backend: str
) -> None:
    issued = any_backend_runtime.issuance.issue_from_csr(make_csr("IMEI:1"), "device", ADMIN)
    assert any_backend_runtime.issuance.get(issued.serial_hex).fingerprint == issued.fingerprint
    openssl_verify(tmp_path, issued.certificate, trusted=_pem(any_backend_runtime, "root"),
                   untrusted=pem_of(issued.chain))


@pytest.mark.parametrize("new_key", [True, False], ids=["new-key", "key-version"])
def test_rotation_brings_in_a_new_issuing_ca_and_old_certificates_still_verify(
    any_backend_runtime: Runtime, tmp_path: Path, new_key: bool
) -> None:
    runtime = any_backend_runtime
    before = runtime.issuance.issue_from_csr(make_csr("IMEI:1"), "device", ADMIN)
    with runtime.database.session() as session:
        rotation = runtime.authorities.rotate(session, "test:admin", new_key=new_key)
    assert (rotation.previous.name, rotation.current.name) == ("issuing-1", "issuing-2")
    after = runtime.issuance.issue_from_csr(make_csr("IMEI:2"), "device", ADMIN)

    rows = _rows(runtime)
    assert [n for n, r in rows.items() if r.active] == ["issuing-2"]
    old_ref, new_ref = (KeyRef.from_uri(rows[n].key_ref) for n in ("issuing-1", "issuing-2"))
    if new_key:
        assert (new_ref.name, new_ref.version) == ("ca-issuing-2", 1)
    else:
        assert (new_ref.name, new_ref.version) == (old_ref.name, old_ref.version + 1)
    assert after.certificate.issuer == x509.load_pem_x509_certificate(_pem(runtime, "issuing-2")).subject
    assert before.certificate.issuer == x509.load_pem_x509_certificate(_pem(runtime, "issuing-1")).subject
    assert after.certificate.public_key() != before.certificate.public_key()
    with runtime.database.session() as session:
        bundle = runtime.authorities.bundle_rows(session)
        issuers = {r.serial_hex: r.authority_id for r in session.exec(select(CertificateRow))}
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "ca.rotate")).one()
    assert [r.name for r in bundle] == ["issuing-2", "issuing-1", "root"]
    assert issuers[before.serial_hex] == rows["issuing-1"].id and issuers[after.serial_hex] == rows["issuing-2"].id
    assert (event.actor, event.target, json.loads(event.detail)["new_key"]) == ("test:admin", "issuing-2", new_key)

    bundle_pem = b"".join(r.pem.encode() for r in bundle)
    for issued in (before, after):  # both generations verify against the bundle served during the overlap
        openssl_verify(tmp_path, issued.certificate, trusted=_pem(runtime, "root"), untrusted=bundle_pem)


def test_crl_signed_through_the_store_passes_openssl_crl_verify(
    any_backend_runtime: Runtime, tmp_path: Path
) -> None:
    runtime = any_backend_runtime
    revoked = runtime.issuance.issue_from_csr(make_csr("IMEI:9"), "device", ADMIN)
    with runtime.database.session() as session:
        row, authority = runtime.authorities.active(session)
    now = datetime.now(UTC).replace(microsecond=0)
    ski = authority.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    entry = (x509.RevokedCertificateBuilder().serial_number(revoked.certificate.serial_number)
             .revocation_date(now).build())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .add_revoked_certificate(entry)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    crl = sign_crl(builder, authority.signer)
    issuer_key = authority.certificate.public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)  # the default CA key type, P-256
    assert crl.is_signature_valid(issuer_key)
    assert crl.get_revoked_certificate_by_serial_number(revoked.certificate.serial_number) is not None
    openssl_crl_verify(tmp_path, crl, row.pem.encode())
