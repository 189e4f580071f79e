"""Issuance through the service: recorded before returned, refusals leave no certificate."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import func, select

from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.store.models import AuditEvent, CertificateRow
from pki.errors import CsrEncodingError, CsrPolicyError, CsrSignatureError, KeyPolicyError, PkiError, ProfileError
from pki.identity import device_uri
from pki.keys import KeyType, generate_private_key
from pki.profiles import Names
from tests.factories import make_csr

ADMIN = Requester("test:admin", request_id="req-1")


def _count(runtime: Runtime, model: type) -> int:
    with runtime.database.session() as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def test_issued_certificate_is_recorded_with_its_audit_event(any_backend_runtime: Runtime) -> None:
    runtime = any_backend_runtime  # embedded, Vault Transit and Vault KV
    before = _count(runtime, CertificateRow)
    issued = runtime.issuance.issue_from_csr(make_csr("IMEI:1"), "device", ADMIN)
    row = runtime.issuance.get(issued.serial_hex)
    assert row.fingerprint == issued.fingerprint
    assert row.device_id == "IMEI:1"
    assert json.loads(row.sans) == [f"uri:{device_uri('IMEI:1')}"]
    assert row.pem == issued.pem
    assert _count(runtime, CertificateRow) == before + 1
    with runtime.database.session() as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.target == issued.serial_hex)).one()
    assert (event.action, event.outcome, event.request_id) == ("cert.issue", "success", "req-1")


def test_expected_identity_is_what_gets_certified(any_backend_runtime: Runtime) -> None:
    runtime = any_backend_runtime
    names = Names("dm.example.net", dns=("dm.example.net",))
    issued = runtime.issuance.issue_from_csr(make_csr(None), "dm-server", ADMIN, expected=names)
    assert issued.certificate.subject.rfc4514_string() == "CN=dm.example.net"


def _flip_signature(csr_der: bytes) -> bytes:
    return csr_der[:-3] + bytes([csr_der[-3] ^ 0x01]) + csr_der[-2:]


BAD_CSRS = [
    pytest.param(lambda: _flip_signature(make_csr(encoding=Encoding.DER)), "device", CsrSignatureError,
                 id="bad-signature"),
    pytest.param(lambda: make_csr(key=generate_private_key(KeyType.RSA2048)).replace(b"CERTIFICATE REQUEST", b"X"),
                 "device", CsrEncodingError, id="mangled-pem"),
    pytest.param(lambda: make_csr(dns=["evil.example"]), "device", CsrPolicyError, id="forbidden-san"),
    pytest.param(lambda: make_csr(ca=True), "device", CsrPolicyError, id="ca-flag"),
    pytest.param(lambda: b"\x30\x82\x01\x00garbage", "device", CsrEncodingError, id="garbage-der"),
    pytest.param(lambda: b"A" * 70_000, "device", CsrEncodingError, id="oversized"),
    pytest.param(lambda: make_csr(), "root", ProfileError, id="ca-profile"),
    pytest.param(lambda: make_csr(), "no-such-profile", ProfileError, id="unknown-profile"),
]


@pytest.mark.parametrize(("make", "profile", "error"), BAD_CSRS)
def test_refused_request_records_no_certificate(runtime: Runtime, make, profile: str, error: type[PkiError]) -> None:
    before = _count(runtime, CertificateRow)
    with pytest.raises(error) as caught:
        runtime.issuance.issue_from_csr(make(), profile, ADMIN)
    assert caught.value.message
    assert _count(runtime, CertificateRow) == before
    with runtime.database.session() as session:
        last = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()  # type: ignore[union-attr]
    assert last is not None and (last.action, last.outcome) == ("cert.issue", "failure")
    assert json.loads(last.detail)["error"] == type(caught.value).__name__


def test_weak_key_is_refused(runtime: Runtime) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - a weak key is the point
    with pytest.raises(KeyPolicyError, match="1024 bits is too weak"):
        runtime.issuance.issue_from_csr(make_csr(key=weak), "device", ADMIN)


def test_names_outside_the_expected_identity_are_refused(runtime: Runtime) -> None:
    csr = make_csr("IMEI:2", uris=[device_uri("IMEI:3")])
    with pytest.raises(CsrPolicyError, match="may not have"):
        runtime.issuance.issue_from_csr(csr, "device", ADMIN, expected=Names("IMEI:2", uris=(device_uri("IMEI:2"),)))


def test_a_failed_recording_returns_nothing(any_backend_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the database write fails, the caller gets the error, never the certificate."""
    runtime = any_backend_runtime
    import bootstrap.services.pipeline.issue as issue  # where every channel records

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(issue, "append_event", broken)
    before = _count(runtime, CertificateRow)
    with pytest.raises(RuntimeError, match="disk full"):
        runtime.issuance.issue_from_csr(make_csr(), "device", ADMIN)
    assert _count(runtime, CertificateRow) == before


def test_list_and_get(runtime: Runtime) -> None:
    issued = [runtime.issuance.issue_from_csr(make_csr(f"IMEI:{i}"), "device", ADMIN) for i in range(3)]
    listed = runtime.issuance.list(profile="device")
    assert [r.serial_hex for r in listed] == [i.serial_hex for i in reversed(issued)]
    assert runtime.issuance.get("0x" + issued[0].serial_hex.upper()).serial_hex == issued[0].serial_hex
