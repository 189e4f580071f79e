"""/metrics, read back with prometheus-client's own parser: event counters and the fleet gauges.

The app runs in-process (TestClient); the metrics listener is the real one on a free
loopback port. Counters are process-wide, so tests compare before and after.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlalchemy import text
from starlette.testclient import TestClient

from bootstrap import metrics
from bootstrap.app import create_app
from bootstrap.monitoring import FleetCollector, metrics_registry, start_metrics_server
from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.store.db import Database
from tests.enrollment.support import ADMIN, GROUP, configure
from tests.factories import make_csr
from tests.revocation.helpers import CERT_ID_HASH
from tests.support.metrics import Samples, scrape, value
from tests.support.servers import free_port

DEV = "IMEI:350000000000099"


@pytest.fixture
def served(runtime: Runtime) -> Iterator[tuple[TestClient, str]]:
    """The app and a metrics listener (no cache: every scrape probes the database)."""
    configure(runtime)
    port = free_port()
    server = start_metrics_server("127.0.0.1", port, metrics_registry(FleetCollector(runtime.database, runtime.store,
                                                                                      ttl=0)))
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            yield client, f"http://127.0.0.1:{port}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_enrollments_issuance_and_requests_are_counted(served: tuple[TestClient, str], runtime: Runtime) -> None:
    client, url = served
    runtime.devices.register(DEV, GROUP, actor=ADMIN)
    token = runtime.devices.create_token(dev_id=DEV, actor=ADMIN)[1]
    body: dict[str, Any] = {"dev_id": DEV, "csr": make_csr(DEV).decode(), "token": token}
    before = scrape(url)
    assert client.post("/api/v1/enroll", json=body).status_code == 200
    assert client.post("/api/v1/enroll", json=body).status_code == 401  # the token is spent
    after = scrape(url)
    enrolled = {"channel": "json", "method": "token"}
    assert _delta(before, after, "dmboot_enrollments_total", **enrolled, outcome="success", error="") == 1
    assert _delta(before, after, "dmboot_enrollments_total", **enrolled, outcome="failure",
                  error="AuthenticationFailed") == 1
    assert _delta(before, after, "dmboot_certificates_issued_total", profile="device") == 1
    assert _delta(before, after, "dmboot_issuance_duration_seconds_count", profile="device") == 1
    route = {"route": "/api/v1/enroll", "method": "POST"}
    assert _delta(before, after, "dmboot_http_requests_total", **route, status="200") == 1
    assert _delta(before, after, "dmboot_http_requests_total", **route, status="401") == 1
    assert _delta(before, after, "dmboot_http_request_duration_seconds_count", route="/api/v1/enroll") == 2
    with runtime.database.session() as session:
        last = session.execute(text("SELECT max(seq) FROM audit_event")).scalar()
    assert value(after, "dmboot_audit_head_seq") == last
    assert value(after, "dmboot_backend_up", backend="database") == 1
    assert value(after, "dmboot_backend_up", backend="secrets") == 1


def test_expiring_certificates_and_the_crl(served: tuple[TestClient, str], runtime: Runtime) -> None:
    client, url = served
    serials = {}
    for days in (5, 20, 60):
        issued = runtime.issuance.issue_from_csr(make_csr(f"IMEI:35000000000{days:04d}"), "device",
                                                 Requester(ADMIN), validity=timedelta(days=days))
        serials[days] = issued.serial_hex
    runtime.revocation.revoke_certificate(serials[60], "keyCompromise", Requester(ADMIN))
    runtime.crl_publisher.publish(force=True)  # CRLs are published in the background; publish this one now
    samples = scrape(url)
    # Certificates ending in 5 and 20 days (the service's own TLS certificate lasts longer; the revoked one is out).
    assert value(samples, "dmboot_certificates_expiring", days="7") == 1
    assert value(samples, "dmboot_certificates_expiring", days="30") == 2
    served_crl = client.get("/crl/issuing-1.crl")
    assert served_crl.status_code == 200
    crl = x509.load_der_x509_crl(served_crl.content)
    labels = {"ca": "issuing-1", "kind": "full", "partition": ""}
    assert value(samples, "dmboot_crl_size_bytes", **labels) == len(served_crl.content)
    assert value(samples, "dmboot_crl_number", **labels) == crl.extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number
    assert value(samples, "dmboot_crl_entries", **labels) == 1
    assert value(samples, "dmboot_crl_age_seconds", **labels) >= 0
    assert value(samples, "dmboot_crl_next_update_seconds", **labels) > 0


def test_ocsp_answers_and_cache_lookups(served: tuple[TestClient, str], runtime: Runtime) -> None:
    client, url = served
    issued = runtime.issuance.issue_from_csr(make_csr("IMEI:350000000000123"), "device", Requester(ADMIN))
    request = ocsp.OCSPRequestBuilder().add_certificate(issued.certificate, issued.chain[0], CERT_ID_HASH).build()
    before = scrape(url)
    for _ in range(2):
        answer = client.post("/ocsp", content=request.public_bytes(Encoding.DER),
                             headers={"content-type": "application/ocsp-request"})
        assert ocsp.load_der_ocsp_response(answer.content).certificate_status == ocsp.OCSPCertStatus.GOOD
    assert client.post("/ocsp", content=b"\x30\x03junk", headers={"content-type": "application/ocsp-request"}
                       ).status_code == 200
    after = scrape(url)
    assert _delta(before, after, "dmboot_ocsp_responses_total", status="good") == 2
    assert _delta(before, after, "dmboot_ocsp_responses_total", status="malformedRequest") == 1
    assert _delta(before, after, "dmboot_ocsp_cache_total", result="miss") == 1
    assert _delta(before, after, "dmboot_ocsp_cache_total", result="hit") == 1


def test_group_commit_batch_sizes(served: tuple[TestClient, str]) -> None:
    _, url = served
    before = scrape(url)
    for size in (1, 3, 3, 100):
        metrics.observe_batch(size)
    after = scrape(url)
    name = "dmboot_group_commit_batch_size"
    # Cumulative buckets, worked by hand: 1 <= 1; 3, 3 <= 4; 100 <= 128.
    assert [_delta(before, after, f"{name}_bucket", le=le) for le in ("1.0", "2.0", "4.0", "64.0", "128.0")] \
        == [1, 1, 3, 3, 4]
    assert _delta(before, after, f"{name}_sum") == 107
    assert _delta(before, after, f"{name}_count") == 4


def test_an_issuance_is_one_group_commit_batch(served: tuple[TestClient, str], runtime: Runtime) -> None:
    _, url = served
    before = scrape(url)
    runtime.issuance.issue_from_csr(make_csr("IMEI:350000000000456"), "device", Requester(ADMIN))
    after = scrape(url)
    # A lone request is committed at once, alone: one batch of one.
    assert _delta(before, after, "dmboot_group_commit_batch_size_count") == 1
    assert _delta(before, after, "dmboot_group_commit_batch_size_sum") == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_metrics_token_is_required_when_set(runtime: Runtime) -> None:
    port = free_port()
    server = start_metrics_server("127.0.0.1", port, metrics_registry(), token="scrape-secret")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for given in (None, "wrong"):
            headers = {"Authorization": f"Bearer {given}"} if given else {}
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)  # noqa: S310
            assert refused.value.code == 401
            refused.value.close()
        assert ("dmboot_group_commit_batch_size_count", ()) in scrape(url, token="scrape-secret")
        with pytest.raises(urllib.error.HTTPError) as elsewhere:
            other = urllib.request.Request(url.replace("/metrics", "/other"),  # noqa: S310 - a local URL
                                           headers={"Authorization": "Bearer scrape-secret"})
            urllib.request.urlopen(other, timeout=10)  # noqa: S310
        assert elsewhere.value.code == 404
        elsewhere.value.close()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unreachable_database_is_reported_not_raised(runtime: Runtime) -> None:
    gone = Database(f"postgresql://127.0.0.1:{free_port()}/nothing?connect_timeout=2")
    registry = metrics_registry(FleetCollector(gone, runtime.store, ttl=0))
    port = free_port()
    server = start_metrics_server("127.0.0.1", port, registry)
    try:
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        gone.dispose()
    assert value(samples, "dmboot_backend_up", backend="database") == 0
    assert value(samples, "dmboot_backend_up", backend="secrets") == 1
    assert value(samples, "dmboot_metrics_probe_errors") == 1
    assert ("dmboot_audit_head_seq", ()) not in samples
