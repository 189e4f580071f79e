"""Prometheus metrics: every name the service exports, defined once, and the calls that feed them.

Two kinds live here:

* **Event metrics** (counters, histograms), counted where things happen: by the
  request middleware (``bootstrap.web.observe``), by the audit trail as events
  commit (:func:`audit_committed`), by issuance, OCSP and the failure log. Under
  ``dmboot serve --workers N`` they are shared through prometheus-client's
  multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set up by the serve command).
* **Fleet gauges** (audit head, expiring certificates, CRLs, factory batches,
  backend up/down), read from the database at scrape time with a short cache by
  :mod:`bootstrap.monitoring`; their names are listed in :data:`FLEET_GAUGES`.

Hooks for other parts of the service (call them, do not define new names elsewhere):

* :func:`observe_batch` - a group commit wrote ``n`` requests in one transaction;
* :func:`observe_issuance` - one certificate signed, with its latency;
* :func:`count_ocsp`, :func:`count_ocsp_cache` - one OCSP answer and its status; one cache lookup;
* :func:`count_backend_error` - a database, secret-store or signer failure (the failure
  log calls it, see :mod:`bootstrap.logs`).

Names and what to alert on: docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

__all__ = [
    "BACKEND_ERRORS",
    "CERTIFICATES_ISSUED",
    "ENROLLMENTS",
    "FLEET_GAUGES",
    "GROUP_COMMIT_BATCH",
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "ISSUANCE_SECONDS",
    "OCSP_CACHE",
    "OCSP_RESPONSES",
    "TLS_REFUSALS",
    "audit_committed",
    "count_backend_error",
    "count_ocsp",
    "count_ocsp_cache",
    "count_tls_refusal",
    "observe_batch",
    "observe_issuance",
    "observe_request",
]

#: Latency buckets (seconds) for requests and signing: 1 ms .. 10 s.
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter("dmboot_http_requests", "HTTP requests answered, by route template, method and status.",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("dmboot_http_request_duration_seconds",
                          "Time from request to the end of the response, by route template.", ["route"],
                          buckets=_LATENCY)
ENROLLMENTS = Counter("dmboot_enrollments",
                      "Enrollment attempts recorded in the audit trail, by channel (dm2, json, dm1, est, factory), "
                      "attestation method and outcome (success, failure); error is the refusal's class.",
                      ["channel", "method", "outcome", "error"])
CERTIFICATES_ISSUED = Counter("dmboot_certificates_issued", "Certificates issued and recorded, by profile.",
                              ["profile"])
ISSUANCE_SECONDS = Histogram("dmboot_issuance_duration_seconds",
                             "Time to sign one certificate (CA key local, in Vault KV or Vault Transit).",
                             ["profile"], buckets=_LATENCY)
GROUP_COMMIT_BATCH = Histogram("dmboot_group_commit_batch_size",
                               "Requests written per group-commit transaction.",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
BACKEND_ERRORS = Counter("dmboot_backend_errors",
                         "Failed requests caused by a backend: database, secrets (Vault/keystore), signer, app.",
                         ["backend", "error"])
OCSP_RESPONSES = Counter("dmboot_ocsp_responses",
                         "OCSP answers, by certificate status (good, revoked, unknown) or error status "
                         "(malformedRequest, unauthorized, tryLater, internalError).", ["status"])
OCSP_CACHE = Counter("dmboot_ocsp_cache", "OCSP response cache lookups (hit, miss).", ["result"])
TLS_REFUSALS = Counter("dmboot_tls_refusals",
                       "TLS handshakes refused on the service's listener, by OpenSSL's reason code "
                       "(CERTIFICATE_VERIFY_FAILED, UNSUPPORTED_PROTOCOL, ...) and the TLS version the client offered.",
                       ["reason", "version"])

#: Gauges computed at scrape time by bootstrap.monitoring (name -> help).
FLEET_GAUGES: Mapping[str, str] = {
    "dmboot_backend_up": "1 if the backend (database, secrets) answered the last probe, else 0.",
    "dmboot_audit_head_seq": "Sequence number of the newest audit event.",
    "dmboot_certificates_expiring": "Valid certificates whose notAfter falls within the next N days.",
    "dmboot_crl_age_seconds": "Seconds since thisUpdate of the newest CRL, per CA, kind and partition.",
    "dmboot_crl_next_update_seconds": "Seconds until nextUpdate of the newest CRL (negative: expired).",
    "dmboot_crl_size_bytes": "DER size of the newest CRL.",
    "dmboot_crl_number": "cRLNumber of the newest CRL.",
    "dmboot_crl_entries": "Revoked entries in the newest CRL.",
    "dmboot_factory_batch_items": "Items of all factory batches, by state (issued, existing, failed).",
    "dmboot_factory_batches": "Factory batches, by activity (active: updated in the last 5 minutes; total).",
    "dmboot_factory_batch_last_update_timestamp_seconds": "When a factory batch last made progress.",
    "dmboot_metrics_probe_errors": "1 if the last scrape-time probe of the database failed.",
}


class _Record(Protocol):
    """What :func:`audit_committed` reads of an audit record (bootstrap.services.audit.AuditRecord)."""

    @property
    def action(self) -> str: ...

    @property
    def outcome(self) -> str: ...

    @property
    def detail(self) -> Mapping[str, Any]: ...


# Label children cost a lock and a tuple build each time: keep the ones the request path uses.
_request_children: dict[tuple[str, str, str], Any] = {}
_duration_children: dict[str, Any] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """One HTTP request answered (called by the request middleware)."""
    key = (route, method, str(status))
    child = _request_children.get(key)
    if child is None:
        child = _request_children.setdefault(key, HTTP_REQUESTS.labels(*key))
    child.inc()
    timer = _duration_children.get(route)
    if timer is None:
        timer = _duration_children.setdefault(route, HTTP_DURATION.labels(route))
    timer.observe(seconds)


def observe_batch(size: int) -> None:
    """A group commit wrote ``size`` requests in one transaction."""
    GROUP_COMMIT_BATCH.observe(size)


def observe_issuance(profile: str, seconds: float) -> None:
    """One certificate of ``profile`` was signed in ``seconds``."""
    ISSUANCE_SECONDS.labels(profile).observe(seconds)


def count_ocsp(status: str) -> None:
    """One OCSP answer: the certificate status (good, revoked, unknown) or the error status."""
    OCSP_RESPONSES.labels(status).inc()


def count_ocsp_cache(hit: bool) -> None:
    """One lookup in an OCSP response cache (the in-process one today; pre-signed responses later)."""
    OCSP_CACHE.labels("hit" if hit else "miss").inc()


def count_tls_refusal(reason: str, version: str) -> None:
    """Count one refused TLS handshake (bootstrap/web/tls_refusals.py)."""
    TLS_REFUSALS.labels(reason, version).inc()


def count_backend_error(backend: str, error: str) -> None:
    """A request failed because of ``backend`` (database, secrets, signer, app) with ``error``."""
    BACKEND_ERRORS.labels(backend, error).inc()


#: Audit actions that are enrollments, and the channel each implies when the detail names none.
_ENROLL_ACTIONS = {"device.enroll": None, "est.enroll": "est", "est.reenroll": "est"}


def audit_committed(records: Iterable[_Record]) -> None:
    """Count the enrollments and issued certificates among audit events that just committed.

    The audit trail is where every channel records an enrollment, so counting it here
    counts each channel the same way. Requests that fail before anything can be recorded
    (a database outage) show in ``dmboot_backend_errors_total`` and the HTTP counters.
    """
    for record in records:
        detail = record.detail
        if record.action in _ENROLL_ACTIONS:
            channel = detail.get("channel") or _ENROLL_ACTIONS[record.action] or "unknown"
            method = detail.get("method") or detail.get("auth") or "unknown"
            error = "" if record.outcome == "success" else str(detail.get("error") or "unknown")
            ENROLLMENTS.labels(str(channel), str(method)[:32], record.outcome, error[:64]).inc()
        elif record.action == "cert.issue":
            if record.outcome == "success":
                CERTIFICATES_ISSUED.labels(str(detail.get("profile") or "unknown")).inc()
            if detail.get("channel") == "factory":
                error = "" if record.outcome == "success" else str(detail.get("error") or "unknown")
                ENROLLMENTS.labels("factory", "station", record.outcome, error[:64]).inc()
