"""Pre-signed OCSP responses: shared by every replica, replaced by a revocation, queued before
anyone asks; nonce requests are signed live.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlmodel import select

from bootstrap.runtime import Runtime
from bootstrap.services.ocsp import RESPONSE_VALIDITY, OcspResponder
from bootstrap.store.models import OcspResponseRow
from pki.authority import IssuedCertificate
from pki.ocsp import CertStatus
from tests.revocation.conftest import ADMIN
from tests.revocation.helpers import CERT_ID_HASH, ocsp_answer

DeviceCert = Callable[[str], IssuedCertificate]

# -- pre-signed OCSP responses ---------------------------------------------------------------


def test_pre_signed_responses_are_shared_and_a_revocation_replaces_them(runtime: Runtime,
                                                                        device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000015")
    request = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, issued.chain[0], CERT_ID_HASH).build()
    der = request.public_bytes(Encoding.DER)
    assert runtime.ocsp.respond_cached(der) is None  # nothing signed yet: the caller takes the slow path
    signed = runtime.ocsp.respond(der)
    assert runtime.ocsp.respond_cached(der) == signed  # now from memory, without the database
    replica = OcspResponder(runtime.database, runtime.authorities, runtime.store, "dm-bootstrap", sync_seconds=0)
    assert replica.respond(der).der == signed.der  # the same bytes from the table, not signed again
    assert signed.this_update is not None and signed.cache_until == signed.this_update + RESPONSE_VALIDITY
    runtime.revocation.revoke_certificate(issued.serial_hex, "keyCompromise", ADMIN)
    assert runtime.ocsp.respond_cached(der) is None  # evicted here at once
    assert runtime.ocsp.respond(der).cert_status is CertStatus.REVOKED
    # The other replica learns it from the revocation feed at its next sync (here: every request).
    assert replica.respond(der).cert_status is CertStatus.REVOKED
    with runtime.database.session() as session:
        stored = list(session.exec(select(OcspResponseRow.cert_status).where(
            OcspResponseRow.serial_hex == issued.serial_hex)))
    assert stored == ["revoked"]


def test_nonce_requests_are_signed_live_and_not_stored(runtime: Runtime, device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000016")
    request = (ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, issued.chain[0], CERT_ID_HASH)
               .add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False).build())
    der = request.public_bytes(Encoding.DER)
    first, second = runtime.ocsp.respond(der), runtime.ocsp.respond(der)
    assert runtime.ocsp.respond_cached(der) is None
    assert first.cache_until is None and second.cache_until is None  # not cacheable
    with runtime.database.session() as session:
        assert list(session.exec(select(OcspResponseRow))) == []


def test_the_background_publisher_lists_a_revocation(runtime: Runtime, device_cert: DeviceCert) -> None:
    issued = device_cert("IMEI:100000000000017")
    scope = f"issuing-1-p{issued.certificate.serial_number % 16}"
    before = runtime.crls.current("issuing-1", "partition", scope).number
    runtime.crl_publisher.start()
    try:
        runtime.revocation.revoke_certificate(issued.serial_hex, "superseded", ADMIN)  # wakes the publisher
        deadline = time.monotonic() + 120  # a wait for the thread, not a timing assertion
        while runtime.crls.current("issuing-1", "partition", scope).number == before:
            assert time.monotonic() < deadline, "the background publisher did not publish"
            time.sleep(0.05)
    finally:
        runtime.crl_publisher.stop()
    partition = x509.load_der_x509_crl(runtime.crls.current("issuing-1", "partition", scope).der)
    assert partition.get_revoked_certificate_by_serial_number(issued.certificate.serial_number) is not None


def test_a_revocation_queues_its_response_to_be_signed_before_anyone_asks(runtime: Runtime,
                                                                         device_cert: DeviceCert) -> None:
    issued, other = device_cert("IMEI:100000000000018"), device_cert("IMEI:100000000000019")
    runtime.revocation.revoke_certificate(other.serial_hex, "keyCompromise", ADMIN)
    assert runtime.ocsp.presign_revoked() == 0  # no OCSP responder yet: not made for this
    assert ocsp_answer(runtime, other).certificate_status is ocsp.OCSPCertStatus.REVOKED  # the first request makes it
    runtime.revocation.revoke_certificate(issued.serial_hex, "keyCompromise", ADMIN)
    assert runtime.ocsp.presign_revoked() == 1
    with runtime.database.session() as session:
        [stored] = list(session.exec(select(OcspResponseRow).where(OcspResponseRow.serial_hex == issued.serial_hex)))
    assert stored.cert_status == "revoked" and stored.hash_algorithm == "sha1"
    request = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, issued.chain[0], CERT_ID_HASH).build()
    answer = runtime.ocsp.respond(request.public_bytes(Encoding.DER))
    assert answer.der == stored.der  # served as pre-signed
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is x509.ReasonFlags.key_compromise
