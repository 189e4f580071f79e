"""OCSP responder certificates are renewed in the background, before any request needs it.

The ``ocsp-signer`` profile is 30 days (pki/profiles.py's table, notBefore backdated 5 minutes
for clock skew); renewal comes when a third of the life is left: 10 days and 100 seconds before
notAfter (worked by hand, not read from the code).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlmodel import col, select

from bootstrap.runtime import Runtime
from bootstrap.services.console_queries import dashboard
from bootstrap.services.ocsp_renewal import ResponderRenewal
from bootstrap.store.models import AuditEvent, OcspSignerRow, utcnow
from pki.authority import IssuedCertificate
from tests.revocation.helpers import CERT_ID_HASH

DeviceCert = Callable[[str], IssuedCertificate]


def _signers(runtime: Runtime) -> list[OcspSignerRow]:
    with runtime.database.session() as session:
        return list(session.exec(select(OcspSignerRow).order_by(col(OcspSignerRow.id))))


def _issuing_id(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        found = runtime.authorities.active_row(session).id
    assert found is not None
    return found


def test_renewal_comes_with_a_third_of_the_life_left_and_signs_the_next_answers(runtime: Runtime,
                                                                          device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000101")
    first = runtime.ocsp.current_responder(_issuing_id(runtime))
    end = first.not_valid_after_utc
    assert end - first.not_valid_before_utc == timedelta(days=30, minutes=5)

    assert runtime.ocsp_renewal.run(now=end - timedelta(days=10, seconds=101)) == []
    assert len(_signers(runtime)) == 1
    later = end - timedelta(days=10, seconds=99)
    assert runtime.ocsp_renewal.run(now=later) == [_issuing_id(runtime)]
    old, new = _signers(runtime)
    assert new.key_ref != old.key_ref and new.serial_hex != old.serial_hex  # a new key and certificate
    assert runtime.ocsp_renewal.run(now=later) == []  # once

    request = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, issued.chain[0], CERT_ID_HASH).build()
    response = ocsp.load_der_ocsp_response(runtime.ocsp.respond(request.public_bytes(Encoding.DER), now=later).der)
    assert format(response.certificates[0].serial_number, "x") == new.serial_hex.lower().lstrip("0")
    assert len(_signers(runtime)) == 2  # the request made nothing: it was ready
    with runtime.database.session() as session:
        events = list(session.exec(select(AuditEvent).where(AuditEvent.action == "ocsp.responder.issue")))
    assert [e.actor for e in events] == ["system:ocsp", "system:ocsp"]


def test_the_background_thread_renews_a_due_responder(runtime: Runtime) -> None:
    runtime.ocsp.current_responder(_issuing_id(runtime))
    # The thread's clock 21 days on: the responder certificate is past its renewal point.
    runtime.ocsp_renewal = ResponderRenewal(runtime.database, runtime.ocsp, check_every=0.0,
                                            clock=lambda: utcnow() + timedelta(days=21))
    runtime.crl_publisher.start()
    try:
        deadline = time.monotonic() + 120  # a wait for the thread, not a timing assertion
        while len(_signers(runtime)) < 2:
            assert time.monotonic() < deadline, "the background thread did not renew the responder"
            runtime.crl_publisher.wake()
            time.sleep(0.05)
    finally:
        runtime.crl_publisher.stop()
    newest = x509.load_pem_x509_certificate(_signers(runtime)[-1].pem.encode())
    assert newest.not_valid_before_utc > utcnow() + timedelta(days=20)
    # Renewed long before it expires: never among the dashboard's "expiring soon".
    assert all(c.profile != "ocsp-signer" for c in dashboard(runtime.database).expiring)
