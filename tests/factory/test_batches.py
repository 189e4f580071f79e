"""Factory batches through the service: idempotency, keys, refusals, races (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from cryptography import x509
from sqlmodel import select

from bootstrap.errors import PermissionDenied, QuotaExceeded
from bootstrap.factory.service import FactoryService, Station
from bootstrap.factory.types import BatchSpec, ItemOutcome, ItemRequest
from bootstrap.runtime import Runtime
from bootstrap.services.audit_verify import verify_chain
from bootstrap.store.models import ApiTokenRow, AuditEvent, CertificateRow, DeviceRow, FactoryItemRow
from pki.keys import KeyType
from tests.factories import make_csr
from tests.factory.conftest import certificate_count, certificates_per_device, decrypt_pkcs8, same_key

PASSWORD = "factory-test-password-0123456789"


def _csr_items(count: int, prefix: str = "IMEI:35") -> list[ItemRequest]:
    return [ItemRequest(f"{prefix}{i:013d}", csr=make_csr(f"{prefix}{i:013d}").decode()) for i in range(count)]


def _keygen_items(count: int, prefix: str = "KEY:") -> list[ItemRequest]:
    return [ItemRequest(f"{prefix}{i}", keygen=KeyType.P256, attributes={"model": "X1", "serial": i})
            for i in range(count)]


def _run(runtime: Runtime, items: list[ItemRequest], *, key: str = "batch-1", station: Station | None = None,
         profile: str = "line") -> list[ItemOutcome]:
    service = runtime.factory.batches
    batch = service.open_batch(station or Station.local(), BatchSpec(profile, key, password=PASSWORD))
    outcomes = service.submit(batch, items)
    service.finish(batch)
    return outcomes


def _station(runtime: Runtime, *, quota: int | None = None, profiles: tuple[str, ...] = ("line",),
             name: str = "line-1") -> Station:
    token = runtime.tokens.create(name, ["factory-line"], actor="test", allowed_profiles=list(profiles),
                                  device_quota=quota)
    return Station.of(runtime.tokens.authenticate(token))


def test_a_retry_returns_the_same_certificates_and_issues_none(line: Runtime) -> None:
    items = _csr_items(5)
    first = _run(line, items)
    assert [o.status for o in first] == ["issued"] * 5
    again = _run(line, items, key="batch-1")
    other_batch = _run(line, items[:2], key="another-batch")
    assert [o.status for o in again] == ["existing"] * 5
    assert [o.serial for o in again] == [o.serial for o in first]
    assert [o.certificate_pem for o in other_batch] == [o.certificate_pem for o in first[:2]]
    assert certificates_per_device(line) == {i.dev_id: 1 for i in items}
    cert = x509.load_pem_x509_certificate((first[0].certificate_pem or "").encode())
    assert cert.subject.rfc4514_string() == f"CN={items[0].dev_id}"
    with line.database.session() as session:
        device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == items[0].dev_id)).one()
    assert (device.status, device.current_serial) == ("enrolled", first[0].serial)


def test_a_server_generated_key_is_encrypted_and_redelivered_on_retry(line: Runtime) -> None:
    items = _keygen_items(3)
    first = _run(line, items)
    again = _run(line, items)
    for one, two in zip(first, again, strict=True):
        assert one.key is not None and one.key_format == "pkcs8"
        assert b"ENCRYPTED PRIVATE KEY" in one.key
        assert two.status == "existing" and two.key == one.key and two.serial == one.serial
        assert two.key_note is not None and two.key_note.startswith("redelivered")
        cert = x509.load_pem_x509_certificate((one.certificate_pem or "").encode())
        assert same_key(decrypt_pkcs8(one.key, PASSWORD.encode()), cert)
    with line.database.session() as session:
        item = session.exec(select(FactoryItemRow).where(FactoryItemRow.dev_id == "KEY:0")).one()
    assert item.attributes == {"model": "X1", "serial": 0}
    assert item.key_ref is not None and "factory/keys/" in item.key_ref  # a reference, never the key


def test_after_the_retention_window_a_retry_gets_the_certificate_and_a_note(line: Runtime) -> None:
    factory = FactoryService(line.database, line.store, line.authorities, line.tokens, key_retention=timedelta(0))
    batch = factory.batches.open_batch(Station.local(), BatchSpec("line", "b", password=PASSWORD))
    first = factory.batches.submit(batch, _keygen_items(1))
    again = factory.batches.submit(batch, _keygen_items(1))
    assert first[0].key is not None
    assert again[0].status == "existing" and again[0].key is None and again[0].serial == first[0].serial
    assert again[0].key_note is not None and again[0].key_note.startswith("not-kept")


def test_a_retry_with_another_key_is_refused_and_issues_nothing(line: Runtime) -> None:
    _run(line, _csr_items(1))
    before = certificate_count(line)
    other = [ItemRequest("IMEI:350000000000000", csr=make_csr("IMEI:350000000000000").decode())]
    outcome = _run(line, other)[0]
    assert outcome.status == "failed" and outcome.error is not None and outcome.error.type == "conflict"
    assert "another key" in outcome.error.detail
    assert certificate_count(line) == before


def test_a_revoked_device_is_not_reissued(line: Runtime) -> None:
    first = _run(line, _csr_items(1))[0]
    with line.database.session() as session:
        row = session.exec(select(CertificateRow).where(CertificateRow.serial_hex == first.serial)).one()
        row.status = "revoked"
        session.add(row)
    outcome = _run(line, _csr_items(1))[0]
    assert outcome.status == "failed" and outcome.error is not None and outcome.error.type == "revoked"


@pytest.mark.parametrize(("case", "expected"), [
    ("bad-csr", "bad-csr"),
    ("wrong-cn", "csr-policy"),
    ("blocked", "forbidden"),
    ("other-profile", "conflict"),
], ids=["garbage-csr", "csr-for-another-devid", "blocked-device", "device-of-another-profile"])
def test_a_refused_item_fails_alone(line: Runtime, case: str, expected: str) -> None:
    dev_id = "IMEI:351111111111111"
    item = ItemRequest(dev_id, csr=make_csr(dev_id).decode())
    if case == "bad-csr":
        item = ItemRequest(dev_id, csr="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    elif case == "wrong-cn":
        item = ItemRequest(dev_id, csr=make_csr("IMEI:359999999999999").decode())
    elif case == "blocked":
        line.devices.register(dev_id, "line", actor="test")
        line.devices.update(dev_id, status="blocked", actor="test")
    else:
        line.devices.register(dev_id, "other", actor="test")
    good = _csr_items(1, prefix="IMEI:36")
    outcomes = _run(line, [item, *good])
    assert outcomes[0].status == "failed" and outcomes[0].error is not None
    assert outcomes[0].error.type == expected
    assert outcomes[1].status == "issued"
    assert certificates_per_device(line) == {good[0].dev_id: 1}


def test_a_pre_registered_device_is_issued_and_enrolled(line: Runtime) -> None:
    line.devices.register("IMEI:350000000000000", "line", actor="test")
    outcome = _run(line, _csr_items(1))[0]
    assert outcome.status == "issued"
    with line.database.session() as session:
        device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == "IMEI:350000000000000")).one()
    assert (device.status, device.current_serial) == ("enrolled", outcome.serial)


def test_a_devid_repeated_in_one_request_gets_one_certificate(line: Runtime) -> None:
    items = _csr_items(1)
    outcomes = _run(line, [items[0], items[0]])
    assert [o.status for o in outcomes] == ["issued", "existing"]
    assert outcomes[0].serial == outcomes[1].serial
    assert certificates_per_device(line) == {items[0].dev_id: 1}


def test_a_station_outside_its_profiles_is_refused_and_audited(line: Runtime) -> None:
    station = _station(line, profiles=("line",))
    with pytest.raises(PermissionDenied, match="may not provision devices of enrollment profile 'other'"):
        _run(line, _csr_items(2), station=station, profile="other")
    assert certificates_per_device(line) == {}
    with line.database.session() as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "factory.batch")).one()
    assert (event.actor, event.outcome) == ("token:line-1", "failure")


def test_the_quota_is_taken_per_chunk_and_never_overdrawn(line: Runtime) -> None:
    station = _station(line, quota=3)
    service = line.factory.batches
    batch = service.open_batch(station, BatchSpec("line", "q", password=PASSWORD))
    items = _csr_items(2)
    assert [o.status for o in service.submit(batch, items)] == ["issued", "issued"]
    with pytest.raises(QuotaExceeded, match="does not cover 2 more devices"):
        service.submit(batch, _csr_items(2, prefix="IMEI:36"))
    assert len(certificates_per_device(line)) == 2
    assert [o.status for o in service.submit(batch, items)] == ["existing", "existing"]  # retries are free
    with line.database.session() as session:
        assert session.exec(select(ApiTokenRow.device_quota).where(ApiTokenRow.name == "line-1")).one() == 1


def test_the_audit_chain_holds_one_event_per_certificate(line: Runtime) -> None:
    outcomes = _run(line, _keygen_items(4) + _csr_items(3))
    with line.database.session() as session:
        events = [e for e in session.exec(select(AuditEvent).where(AuditEvent.action == "cert.issue"))
                  if '"channel":"factory"' in e.detail]
    assert sorted(e.target or "" for e in events) == sorted(o.serial or "" for o in outcomes)
    assert not any("PRIVATE" in e.detail for e in events)
    assert verify_chain(line.database).ok


def test_racing_submits_of_the_same_batch_give_one_set_of_certificates(line: Runtime) -> None:
    items = _keygen_items(120, prefix="RACE:")
    results: list[list[ItemOutcome]] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            results.append(_run(line, items, key="same-batch"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert certificates_per_device(line) == {i.dev_id: 1 for i in items}
    serials = [[o.serial for o in r] for r in results]
    assert serials[0] == serials[1] == serials[2]
    keys = [[o.key for o in r] for r in results]
    assert keys[0] == keys[1] == keys[2]


@pytest.mark.parametrize(("uris", "status"), [
    (["urn:dmboot:devid:IMEI:350000000000000"], "issued"),
    (["urn:dmboot:devid:IMEI:359999999999999"], "failed"),
], ids=["own-uri", "foreign-uri"])
def test_a_csr_with_extensions_takes_the_full_check(line: Runtime, uris: list[str], status: str) -> None:
    csr = make_csr("IMEI:350000000000000", uris=uris).decode()
    outcome = _run(line, [ItemRequest("IMEI:350000000000000", csr=csr)])[0]
    assert outcome.status == status
    if status == "failed":
        assert outcome.error is not None and outcome.error.type == "csr-policy"
