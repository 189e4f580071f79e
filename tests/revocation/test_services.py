"""Revocation, CRL publication and the OCSP responder, on SQLite and PostgreSQL (pre-signed OCSP
responses: test_ocsp_presigned.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlmodel import col, select

from bootstrap.errors import Conflict, InvalidRequest, NotFound
from bootstrap.runtime import Runtime
from bootstrap.services.crl import CrlService
from bootstrap.services.crl_publisher import CrlPublisher
from bootstrap.services.revocation import is_device_blocked, normalize_serial
from bootstrap.store.models import AuditEvent, CertificateRow, CrlRow, DeviceRow, OcspSignerRow
from pki.authority import IssuedCertificate
from pki.errors import ProfileError
from pki.keys import KeyType
from pki.ocsp import CertStatus
from tests.revocation.conftest import ADMIN
from tests.revocation.helpers import CERT_ID_HASH, hierarchy_of, ocsp_answer

DeviceCert = Callable[[str], IssuedCertificate]


def _crl(runtime: Runtime, kind: str = "full") -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(runtime.crls.current("issuing-1", kind).der)


def _publish(runtime: Runtime, **kwargs: Any) -> dict[str, int]:
    """What ``dmboot ca publish-crls`` and the background publisher do: one pass."""
    kwargs.setdefault("full_after", timedelta(0))
    return runtime.crl_publisher.publish(**kwargs).numbers


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _events(runtime: Runtime, action: str) -> list[AuditEvent]:
    with runtime.database.session() as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)))


# -- revoke by serial -----------------------------------------------------------------------


def test_revoke_answers_ocsp_at_once_and_the_publisher_lists_it(runtime: Runtime, device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000001")
    assert ocsp_answer(runtime, issued).certificate_status is ocsp.OCSPCertStatus.GOOD
    before = _crl(runtime)
    outcome = runtime.revocation.revoke_certificate(issued.serial_hex.upper(), "keyCompromise", ADMIN)
    assert outcome.revoked == (issued.serial_hex,) and outcome.reason == "keyCompromise"
    assert outcome.crl_numbers == {}  # revoking builds no CRL ...
    assert _number(_crl(runtime)) == _number(before)  # ... and neither does serving one
    numbers = _publish(runtime)
    crl = _crl(runtime)
    assert _number(crl) == numbers["issuing-1"] > _number(before)
    entry = crl.get_revoked_certificate_by_serial_number(issued.certificate.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    assert crl.is_signature_valid(issued.chain[0].public_key())  # type: ignore[arg-type]
    response = ocsp_answer(runtime, issued)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is x509.ReasonFlags.key_compromise
    [event] = _events(runtime, "cert.revoke")
    assert event.target == issued.serial_hex and json.loads(event.detail)["reason"] == "keyCompromise"
    with pytest.raises(Conflict, match="was revoked on"):
        runtime.revocation.revoke_certificate(issued.serial_hex, "superseded", ADMIN)


@pytest.mark.parametrize(("serial", "error"), [("abcdef", NotFound), ("xyz", InvalidRequest), ("", InvalidRequest)])
def test_revoke_unknown_or_bad_serial(runtime: Runtime, serial: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        runtime.revocation.revoke_certificate(serial, "keyCompromise", ADMIN)


def test_unknown_reason_revokes_nothing(runtime: Runtime, device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000002")
    with pytest.raises(ProfileError, match="revocation reason"):
        runtime.revocation.revoke_certificate(issued.serial_hex, "lostInTheMail", ADMIN)
    assert runtime.issuance.get(issued.serial_hex).status == "valid"


def test_serial_normalization() -> None:
    assert normalize_serial("0x00:AB:cd") == "abcd"


# -- revoke by device and by profile, block and re-admit -------------------------------------


def test_revoke_device_revokes_live_certs_and_blocks(runtime: Runtime, fleet: str, device_cert: DeviceCert) -> None:
    dev_id = "IMEI:100000000000003"
    runtime.devices.register(dev_id, fleet, actor="test")
    first, second = device_cert(dev_id), device_cert(dev_id)
    other = device_cert("IMEI:100000000000004")
    outcome = runtime.revocation.revoke_device(dev_id, "cessationOfOperation", ADMIN)
    assert set(outcome.revoked) == {first.serial_hex, second.serial_hex} and outcome.blocked == (dev_id,)
    assert runtime.issuance.get(other.serial_hex).status == "valid"
    with runtime.database.session() as session:
        assert is_device_blocked(session, dev_id)
        assert not is_device_blocked(session, "IMEI:100000000000004")
    _publish(runtime)
    crl = _crl(runtime)
    assert {r.serial_number for r in crl} >= {first.certificate.serial_number, second.certificate.serial_number}
    assert [e.target for e in _events(runtime, "device.block")] == [dev_id]
    again = runtime.revocation.revoke_device(dev_id, "cessationOfOperation", ADMIN)
    assert again.revoked == () and again.blocked == ()
    runtime.revocation.readmit_device(dev_id, ADMIN)
    with runtime.database.session() as session:
        assert not is_device_blocked(session, dev_id)
        assert session.exec(select(DeviceRow.status).where(DeviceRow.dev_id == dev_id)).one() == "registered"
    with pytest.raises(Conflict, match="not blocked"):
        runtime.revocation.readmit_device(dev_id, ADMIN)
    assert runtime.issuance.get(first.serial_hex).status == "revoked"  # re-admission un-revokes nothing


def test_revoke_device_without_row_or_certs(runtime: Runtime, device_cert: DeviceCert) -> None:
    with pytest.raises(NotFound):
        runtime.revocation.revoke_device("IMEI:999", "keyCompromise", ADMIN)
    issued = device_cert("IMEI:100000000000005")  # certificates but no device row: revoke them, block nothing
    outcome = runtime.revocation.revoke_device("IMEI:100000000000005", "keyCompromise", ADMIN)
    assert outcome.revoked == (issued.serial_hex,) and outcome.blocked == ()
    with pytest.raises(NotFound):
        runtime.revocation.readmit_device("IMEI:100000000000005", ADMIN)


def test_revoke_profile(runtime: Runtime, fleet: str, device_cert: DeviceCert) -> None:
    dev_ids = [f"IMEI:2000000000000{i}" for i in range(3)]
    for dev_id in dev_ids:
        runtime.devices.register(dev_id, fleet, actor="test")
    issued = [device_cert(d) for d in dev_ids]
    outsider = device_cert("IMEI:300000000000001")
    outcome = runtime.revocation.revoke_profile(fleet, "affiliationChanged", ADMIN)
    assert set(outcome.revoked) == {i.serial_hex for i in issued} and set(outcome.blocked) == set(dev_ids)
    assert runtime.issuance.get(outsider.serial_hex).status == "valid"
    [event] = _events(runtime, "profile.revoke")
    assert json.loads(event.detail) == {"reason": "affiliationChanged", "certificates": 3, "devices": 3}
    with pytest.raises(NotFound):
        runtime.revocation.revoke_profile("no-such-profile", "keyCompromise", ADMIN)


# -- CRLs ------------------------------------------------------------------------------------


def test_crl_is_served_from_the_cache_not_rebuilt(runtime: Runtime) -> None:
    first = runtime.crls.current("issuing-1")
    for _ in range(20):
        assert runtime.crls.current("issuing-1") is first
    with runtime.database.session() as session:
        issuing_id = runtime.authorities.active_row(session).id
        kinds = [k for k in session.exec(select(CrlRow.kind).where(CrlRow.authority_id == issuing_id))]
    # `dmboot init` published one full, one delta and a CRL per partition (16 by default).
    assert sorted(set(kinds)) == ["delta", "full", "partition"]
    assert kinds.count("full") == kinds.count("delta") == 1 and kinds.count("partition") == 16


def test_the_publisher_rebuilds_before_next_update_and_only_then(runtime: Runtime) -> None:
    first = runtime.crls.current("issuing-1")
    assert first.this_update < first.refresh_at < first.next_update
    assert _publish(runtime, now=first.this_update + timedelta(minutes=5)) == {}  # nothing due
    numbers = _publish(runtime, now=first.refresh_at + timedelta(seconds=1))
    assert {"issuing-1", "issuing-1-delta", "issuing-1-p0", "root"} <= set(numbers)
    later = runtime.crls.current("issuing-1")
    assert later.number == numbers["issuing-1"] > first.number and later.next_update > first.next_update


def test_another_replica_sees_the_new_crl(runtime: Runtime, device_cert: DeviceCert) -> None:
    replica = CrlService(runtime.database)
    seen = replica.current("issuing-1")
    issued = device_cert("IMEI:100000000000006")
    runtime.revocation.revoke_certificate(issued.serial_hex, "superseded", ADMIN)
    _publish(runtime)
    fresh = replica.current("issuing-1")
    assert fresh.number > seen.number
    assert x509.load_der_x509_crl(fresh.der).get_revoked_certificate_by_serial_number(
        issued.certificate.serial_number) is not None


def test_crl_numbers_stay_unique_and_monotonic_under_concurrency(runtime: Runtime) -> None:
    errors: list[BaseException] = []
    replicas = [CrlPublisher(runtime.database, runtime.authorities, runtime.settings.public_url) for _ in range(6)]

    def publish(publisher: CrlPublisher) -> None:
        try:
            for _ in range(3):
                publisher.publish(force=True)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with runtime.database.session() as session:
        issuing_id = runtime.authorities.active_row(session).id
        rows = list(session.exec(select(CrlRow.number, CrlRow.kind, CrlRow.scope, CrlRow.der)
                                 .where(CrlRow.authority_id == issuing_id).order_by(col(CrlRow.id))))
    assert len({n for n, _, _, _ in rows}) == len(rows)
    assert [n for n, _, _, _ in rows] == sorted(n for n, _, _, _ in rows)  # written in number order
    served = [(kind, scope) for _, kind, scope, der in rows if der is not None]
    assert len(served) == len(set(served)) == 18  # one newest CRL per scope keeps its DER


def test_delta_crl_lists_revocations_since_its_base(runtime: Runtime, device_cert: DeviceCert) -> None:
    base = runtime.crls.current("issuing-1")
    issued = device_cert("IMEI:100000000000007")
    runtime.revocation.revoke_certificate(issued.serial_hex, "keyCompromise", ADMIN)
    # In the background the complete CRL waits (FULL_AFTER); the delta and the partition do not.
    numbers = _publish(runtime, full_after=timedelta(hours=1))
    assert "issuing-1" not in numbers and "issuing-1-delta" in numbers
    assert runtime.crls.current("issuing-1").number == base.number
    delta = _crl(runtime, "delta")
    indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value
    assert indicator.crl_number == base.number  # the oldest unexpired full CRL
    assert delta.get_revoked_certificate_by_serial_number(issued.certificate.serial_number) is not None
    full = _crl(runtime)
    assert full.extensions.get_extension_for_class(x509.FreshestCRL).value[0].full_name == [
        x509.UniformResourceIdentifier("https://dmboot.test/crl/issuing-1-delta.crl")]
    for complete in (full, delta):  # the same (complete) scope: no issuingDistributionPoint
        with pytest.raises(x509.ExtensionNotFound):
            complete.extensions.get_extension_for_class(x509.IssuingDistributionPoint)


def test_expired_certificates_leave_the_crl(runtime: Runtime, device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000008")
    runtime.revocation.revoke_certificate(issued.serial_hex, "keyCompromise", ADMIN)
    _publish(runtime)
    assert _crl(runtime).get_revoked_certificate_by_serial_number(issued.certificate.serial_number) is not None
    _publish(runtime, now=issued.certificate.not_valid_after_utc + timedelta(days=1))
    assert _crl(runtime).get_revoked_certificate_by_serial_number(issued.certificate.serial_number) is None


def test_root_crl_and_unknown_ca(runtime: Runtime) -> None:
    root = x509.load_der_x509_crl(runtime.crls.current("root").der)
    assert len(root) == 0 and root.issuer.rfc4514_string().endswith("Root CA")
    idp = root.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    # CA certificates only, and no URL: it applies to the root itself and to every issuing CA.
    assert idp.critical and idp.value.only_contains_ca_certs and idp.value.full_name is None
    with pytest.raises(NotFound):
        runtime.crls.current("nope")


# -- OCSP ----------------------------------------------------------------------------------


def test_ocsp_statuses_and_nonce(runtime: Runtime, device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000009")
    response = ocsp_answer(runtime, issued, nonce=b"k" * 16)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"k" * 16
    signer = response.certificates[0]
    assert signer.issuer == issued.chain[0].subject
    assert ExtendedKeyUsageOID.OCSP_SIGNING in signer.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        signer.public_key()).digest
    assert response.next_update_utc is not None and response.next_update_utc > response.this_update_utc


def test_ocsp_unknown_serial(runtime: Runtime, device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000010")
    with runtime.database.session() as session:
        row = session.exec(select(CertificateRow).where(CertificateRow.serial_hex == issued.serial_hex)).one()
        session.delete(row)  # as if another CA of the same key had issued it
    assert ocsp_answer(runtime, issued).certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def test_ocsp_for_a_foreign_issuer_is_unauthorized(runtime: Runtime, device_cert: DeviceCert) -> None:
    foreign = hierarchy_of(KeyType.P256, "Foreign")
    leaf, _ = foreign.leaf()
    response = ocsp_answer(runtime, leaf, issuer=foreign.issuing.certificate)
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_ocsp_malformed(runtime: Runtime) -> None:
    answer = runtime.ocsp.respond(b"\x30\x00")
    assert answer.response_status == "malformedRequest" and answer.cache_until is None
    assert ocsp.load_der_ocsp_response(answer.der).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_issuing_ca_is_good_under_the_root(runtime: Runtime) -> None:
    with runtime.database.session() as session:
        issuing = runtime.authorities.active_row(session)
        root = runtime.authorities.root_row(session)
    issuing_cert = x509.load_pem_x509_certificate(issuing.pem.encode())
    root_cert = x509.load_pem_x509_certificate(root.pem.encode())
    request = ocsp.OCSPRequestBuilder().add_certificate(issuing_cert, root_cert, hashes.SHA256()).build()
    response = ocsp.load_der_ocsp_response(runtime.ocsp.respond(request.public_bytes(Encoding.DER)).der)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.certificates[0].issuer == root_cert.subject


def test_ocsp_responder_created_once_and_renewed(runtime: Runtime, device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000011")
    ocsp_answer(runtime, issued)
    ocsp_answer(runtime, issued, nonce=b"1" * 16)
    with runtime.database.session() as session:
        signers = list(session.exec(select(OcspSignerRow)))
        assert len(signers) == 1
        recorded = session.exec(select(CertificateRow).where(CertificateRow.profile == "ocsp-signer")).one()
    assert recorded.serial_hex == signers[0].serial_hex and signers[0].key_ref.split(":")[1].startswith("ocsp/")
    late = signers[0].not_after - timedelta(days=1)
    request = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, issued.chain[0], CERT_ID_HASH).build()
    runtime.ocsp.respond(request.public_bytes(Encoding.DER), now=late)
    with runtime.database.session() as session:
        renewed = list(session.exec(select(OcspSignerRow)))
    assert len(renewed) == 2 and renewed[1].key_ref != renewed[0].key_ref  # a new key version


def test_ocsp_response_cache_follows_the_status(runtime: Runtime, device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000012")
    request = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, issued.chain[0], CERT_ID_HASH).build()
    der = request.public_bytes(Encoding.DER)
    first, second = runtime.ocsp.respond(der), runtime.ocsp.respond(der)
    assert first.der == second.der and first.cache_until is not None  # reused while fresh
    runtime.revocation.revoke_certificate(issued.serial_hex, "keyCompromise", ADMIN)
    third = runtime.ocsp.respond(der)
    assert third.cert_status is CertStatus.REVOKED and third.der != first.der


# -- expiry ----------------------------------------------------------------------------------


def test_expiring(runtime: Runtime, device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000013")
    revoked = device_cert("IMEI:100000000000014")
    runtime.revocation.revoke_certificate(revoked.serial_hex, "superseded", ADMIN)
    assert runtime.revocation.expiring(30) == []
    soon = runtime.revocation.expiring(30, now=issued.certificate.not_valid_after_utc - timedelta(days=10))
    serials = [r.serial_hex for r in soon]
    assert issued.serial_hex in serials and revoked.serial_hex not in serials
    assert serials == [r.serial_hex for r in sorted(soon, key=lambda r: r.not_after)]
    with pytest.raises(InvalidRequest):
        runtime.revocation.expiring(-1)
