"""Group commit: requests share a transaction, each fails alone (issue 12, item 2)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from sqlmodel import Session, select

from bootstrap.auth import hmac_scheme
from bootstrap.auth.attestation import Evidence
from bootstrap.auth.principals import hash_token
from bootstrap.errors import AuthenticationFailed
from bootstrap.runtime import Runtime
from bootstrap.services.audit import append_event
from bootstrap.services.audit_verify import verify_chain
from bootstrap.services.enrollment import EnrollmentOutcome
from bootstrap.store.models import AuditEvent, CertificateRow, DeviceRow, EnrollmentTokenRow, UsedNonceRow
from pki.errors import CsrPolicyError
from tests.enrollment.support import ADMIN, GROUP
from tests.factories import make_csr

GOOD = [f"IMEI:3500000000004{i:02d}" for i in range(5)]
BAD = "IMEI:350000000000499"


def _wait_until(condition: object, what: str) -> None:
    for _ in range(2000):
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def test_one_bad_request_in_a_batch_fails_alone_and_consumes_nothing(configured: Runtime) -> None:
    committer = configured.issuance.pipeline.committer
    tokens = {}
    for dev_id in [*GOOD, BAD]:
        configured.devices.register(dev_id, GROUP, actor=ADMIN)
        tokens[dev_id] = configured.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]
    release = threading.Event()

    def hold(session: Session) -> None:  # keeps the writer busy while the batch queues up
        append_event(session, actor="test", action="test.hold", outcome="success")
        release.wait()

    batches = committer.batches
    with ThreadPoolExecutor(max_workers=len(GOOD) + 2) as pool:
        holder = pool.submit(committer.run, hold)
        _wait_until(lambda: committer.queued == 0 and not holder.done(), "the writer took the holder")
        futures: dict[str, Future[EnrollmentOutcome]] = {
            dev_id: pool.submit(configured.enrollment.enroll, dev_id, Evidence("token", token=tokens[dev_id]),
                                make_csr(dev_id, ca=dev_id == BAD)) for dev_id in [*GOOD, BAD]}
        _wait_until(lambda: committer.queued == len(futures), "every request queued")
        release.set()
        holder.result()
        with pytest.raises(CsrPolicyError):
            futures[BAD].result()
        issued = {dev_id: futures[dev_id].result().issued.serial_hex for dev_id in GOOD}
    assert committer.batches == batches + 2  # the holder's, then ONE for all six requests
    with configured.database.session() as session:
        serials = set(session.exec(select(CertificateRow.serial_hex).where(
            CertificateRow.device_id.in_([*GOOD, BAD]))))  # type: ignore[union-attr]
        used = {row.dev_id: row.used_at for row in session.exec(select(EnrollmentTokenRow).where(
            EnrollmentTokenRow.token_hash.in_([hash_token(t) for t in tokens.values()])))}  # type: ignore[attr-defined]
        enrolled = {e.target for e in session.exec(select(AuditEvent).where(
            AuditEvent.action == "device.enroll", AuditEvent.outcome == "success"))}
    assert serials == set(issued.values())
    assert used[BAD] is None and all(used[d] is not None for d in GOOD)
    assert enrolled == set(GOOD)
    report = verify_chain(configured.database)
    assert report.ok, report.problems


def test_a_lone_request_commits_at_once(configured: Runtime) -> None:
    committer = configured.issuance.pipeline.committer
    before = committer.batches, committer.requests
    configured.devices.register(GOOD[0], GROUP, actor=ADMIN)
    token = configured.devices.create_token(dev_id=GOOD[0], actor=ADMIN)[1]
    configured.enrollment.enroll(GOOD[0], Evidence("token", token=token), make_csr(GOOD[0]))
    assert (committer.batches, committer.requests) == (before[0] + 1, before[1] + 1)


def _statements(configured: Runtime) -> tuple[list[str], object]:
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()).upper())

    return seen, record


def test_a_lone_request_runs_without_a_savepoint(configured: Runtime) -> None:
    """A lone request is its own transaction: no SAVEPOINT / RELEASE round trips (perf, issue 12)."""
    from sqlalchemy import event

    configured.devices.register(GOOD[1], GROUP, actor=ADMIN)
    token = configured.devices.create_token(dev_id=GOOD[1], actor=ADMIN)[1]
    seen, record = _statements(configured)
    event.listen(configured.database.engine, "before_cursor_execute", record)
    try:
        configured.enrollment.enroll(GOOD[1], Evidence("token", token=token), make_csr(GOOD[1]))
    finally:
        event.remove(configured.database.engine, "before_cursor_execute", record)
    assert any("INSERT INTO CERTIFICATE " in s for s in seen)
    assert not any(s.startswith(("SAVEPOINT", "RELEASE")) for s in seen)


def test_a_lone_bad_request_consumes_nothing(configured: Runtime) -> None:
    configured.devices.register(BAD, GROUP, actor=ADMIN)
    token = configured.devices.create_token(dev_id=BAD, actor=ADMIN)[1]
    with pytest.raises(CsrPolicyError):
        configured.enrollment.enroll(BAD, Evidence("token", token=token), make_csr(BAD, ca=True))
    with configured.database.session() as session:
        assert session.exec(select(EnrollmentTokenRow.used_at).where(
            EnrollmentTokenRow.token_hash == hash_token(token))).one() is None
        assert not session.exec(select(CertificateRow).where(CertificateRow.device_id == BAD)).first()
    configured.enrollment.enroll(BAD, Evidence("token", token=token), make_csr(BAD))  # the token still works
    assert verify_chain(configured.database).ok


def test_a_batch_reads_its_profile_s_servers_once_and_inserts_its_certificates_at_once(configured: Runtime) -> None:
    """Profile content is read once per transaction, and the certificates are one INSERT (perf, issue 12)."""
    from sqlalchemy import event

    committer = configured.issuance.pipeline.committer
    devices = GOOD[2:5]
    tokens = {}
    for dev_id in devices:
        configured.devices.register(dev_id, GROUP, actor=ADMIN)
        tokens[dev_id] = configured.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]
    release = threading.Event()

    def hold(session: Session) -> None:
        release.wait()

    seen, record = _statements(configured)
    with ThreadPoolExecutor(max_workers=len(devices) + 1) as pool:
        holder = pool.submit(committer.run, hold)
        _wait_until(lambda: committer.queued == 0 and not holder.done(), "the writer took the holder")
        futures = [pool.submit(configured.enrollment.enroll, dev_id, Evidence("token", token=tokens[dev_id]),
                               make_csr(dev_id)) for dev_id in devices]
        _wait_until(lambda: committer.queued == len(futures), "every request queued")
        event.listen(configured.database.engine, "before_cursor_execute", record)
        try:
            release.set()
            holder.result()
            serials = {f.result().issued.serial_hex for f in futures}
        finally:
            event.remove(configured.database.engine, "before_cursor_execute", record)
    assert len(serials) == len(devices)
    assert sum("FROM DM_SERVER" in s for s in seen) == 1, seen
    assert sum("INSERT INTO CERTIFICATE " in s for s in seen) == 1, seen
    assert sum("UPDATE CERTIFICATE SET SUPERSEDED_BY" in s for s in seen) == 1, seen  # one statement for the batch
    # The chain head is locked once, at the batch's commit, not at each request's savepoint.
    assert sum(s.startswith("SELECT") and "FROM AUDIT_HEAD" in s for s in seen) == 1, seen
    # The batch's devices and tokens are read (and locked) in one statement each, its token
    # claims and device updates are one statement each, and no request needs a SAVEPOINT.
    assert sum(s.startswith("SELECT") and "FROM DEVICE " in s for s in seen) == 1, seen
    assert sum(s.startswith("SELECT") and "FROM ENROLLMENT_TOKEN " in s for s in seen) == 1, seen
    assert sum("UPDATE ENROLLMENT_TOKEN " in s for s in seen) == 1, seen
    assert sum("UPDATE DEVICE " in s for s in seen) == 1, seen
    if configured.database.engine.dialect.name == "postgresql":  # and all four are ONE round trip
        (insert,) = [s for s in seen if "INSERT INTO CERTIFICATE " in s]
        assert all(u in insert for u in ("UPDATE ENROLLMENT_TOKEN ", "UPDATE DEVICE ", "UPDATE CERTIFICATE SET"))
    assert not any(s.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")) for s in seen), seen
    with configured.database.session() as session:
        assert set(session.exec(select(CertificateRow.serial_hex).where(
            CertificateRow.device_id.in_(devices)))) == serials  # type: ignore[union-attr]


def _one_batch(configured: Runtime, calls: list[Any]) -> list[Future[Any]]:
    """Run ``calls`` (functions of no argument) as one group commit: queued while a holder keeps the writer busy."""
    committer = configured.issuance.pipeline.committer
    release = threading.Event()
    batches = committer.batches
    pool = ThreadPoolExecutor(max_workers=len(calls) + 1)
    holder = pool.submit(committer.run, lambda session: release.wait())
    _wait_until(lambda: committer.queued == 0 and not holder.done(), "the writer took the holder")
    futures = [pool.submit(call) for call in calls]
    _wait_until(lambda: committer.queued == len(futures), "every request queued")
    release.set()
    holder.result()
    for future in futures:
        future.exception()  # wait
    pool.shutdown()
    assert committer.batches >= batches + 1
    return futures


def test_one_token_twice_in_one_batch_enrolls_once(configured: Runtime) -> None:
    """Both requests pass the batch's locking read; the second is refused as if after the first's commit."""
    dev_id = "IMEI:350000000000610"
    configured.devices.register(dev_id, GROUP, actor=ADMIN)
    token = configured.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]
    futures = _one_batch(configured, [
        lambda: configured.enrollment.enroll(dev_id, Evidence("token", token=token), make_csr(dev_id))
        for _ in range(2)])
    errors = [f.exception() for f in futures]
    assert sum(e is None for e in errors) == 1, errors
    refused = next(e for e in errors if e is not None)
    assert isinstance(refused, AuthenticationFailed) and "was used already" in refused.message
    with configured.database.session() as session:
        assert len(session.exec(select(CertificateRow).where(CertificateRow.device_id == dev_id)).all()) == 1
        assert session.exec(select(EnrollmentTokenRow.used_by).where(
            EnrollmentTokenRow.token_hash == hash_token(token))).one() == dev_id
    assert verify_chain(configured.database).ok


def test_a_request_that_wrote_and_failed_leaves_nothing_and_the_batch_commits(configured: Runtime) -> None:
    """Group-key registers the device and spends a nonce (direct writes, so the request opens its
    savepoint just before them); its CSR is then refused: the device and the nonce are rolled back
    alone, the token enrollments of the same batch commit."""
    new = "IMEI:350000000000620"
    body = b"the request body"
    key = bytes.fromhex(configured.devices.export_device_keys(GROUP, [new], actor=ADMIN)[new])
    header = hmac_scheme.authorization_header(key, GROUP, new, body)
    good = ["IMEI:350000000000621", "IMEI:350000000000622"]
    tokens = {}
    for dev_id in good:
        configured.devices.register(dev_id, GROUP, actor=ADMIN)
        tokens[dev_id] = configured.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]
    calls = [lambda d=d: configured.enrollment.enroll(d, Evidence("token", token=tokens[d]), make_csr(d))
             for d in good]
    calls.insert(1, lambda: configured.enrollment.enroll(
        new, Evidence("group-key", authorization=header, body=body), make_csr(new, ca=True)))
    futures = _one_batch(configured, calls)
    assert isinstance(futures[1].exception(), CsrPolicyError)
    assert {futures[i].result().issued.certificate.subject.rfc4514_string() for i in (0, 2)} == {
        f"CN={d}" for d in good}
    with configured.database.session() as session:
        assert session.exec(select(DeviceRow).where(DeviceRow.dev_id == new)).first() is None
        assert session.exec(select(UsedNonceRow)).all() == []
    # The nonce was not spent: the same signed request enrolls once the CSR is good.
    fresh = hmac_scheme.authorization_header(key, GROUP, new, body)
    configured.enrollment.enroll(new, Evidence("group-key", authorization=fresh, body=body), make_csr(new))
    assert verify_chain(configured.database).ok


def test_a_read_that_fails_in_the_database_reruns_the_batch_alone(configured: Runtime) -> None:
    """A request whose read fails has lost the shared transaction (PostgreSQL aborts it):
    the batch runs again, each request alone, and only that request fails."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    good = ["IMEI:350000000000631", "IMEI:350000000000632"]
    tokens = {}
    for dev_id in good:
        configured.devices.register(dev_id, GROUP, actor=ADMIN)
        tokens[dev_id] = configured.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]
    committer = configured.issuance.pipeline.committer

    def bad_read(session: Session) -> None:
        session.connection().execute(text("SELECT no_such_column FROM device")).all()

    calls: list[Any] = [lambda d=d: configured.enrollment.enroll(d, Evidence("token", token=tokens[d]),
                                                                 make_csr(d)) for d in good]
    calls.insert(1, lambda: committer.run(bad_read))
    futures = _one_batch(configured, calls)
    assert isinstance(futures[1].exception(), DBAPIError)
    assert all(futures[i].exception() is None for i in (0, 2)), [futures[i].exception() for i in (0, 2)]
    with configured.database.session() as session:
        assert {r for r in session.exec(select(CertificateRow.device_id).where(
            CertificateRow.device_id.in_(good)))} == set(good)  # type: ignore[union-attr]
    assert verify_chain(configured.database).ok


def test_one_device_twice_in_one_batch_ends_with_the_later_certificate(configured: Runtime) -> None:
    """Two tokens of one device in one batch: both enroll; the device's current certificate is the
    later one, which supersedes the earlier (the batch's updates are one statement per table)."""
    dev_id = "IMEI:350000000000640"
    configured.devices.register(dev_id, GROUP, actor=ADMIN)
    tokens = [configured.devices.create_token(dev_id=dev_id, actor=ADMIN)[1] for _ in range(2)]
    futures = _one_batch(configured, [
        lambda t=t: configured.enrollment.enroll(dev_id, Evidence("token", token=t), make_csr(dev_id))
        for t in tokens])
    serials = {f.result().issued.serial_hex for f in futures}
    assert len(serials) == 2
    with configured.database.session() as session:
        current = session.exec(select(DeviceRow.current_serial).where(DeviceRow.dev_id == dev_id)).one()
        rows = {r.serial_hex: r for r in session.exec(select(CertificateRow).where(
            CertificateRow.device_id == dev_id))}
    assert current in serials
    (earlier,) = serials - {current}
    assert rows[earlier].superseded_by == current
    assert rows[current].superseded_by is None
