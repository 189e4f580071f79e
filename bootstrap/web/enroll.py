"""The JSON enroll API for factory stations and non-DM clients, and service discovery.

``POST /api/v1/enroll`` takes ``{"dev_id", "csr" (PEM), "token"?, "mos"?, "features"?}``
as ``application/json`` and returns the bootstrap content as one JSON document.
Evidence, first match wins: ``token`` in the body; ``Authorization: DMBoot-HMAC``
(bootstrap.auth.hmac_scheme, over the exact body); the TLS client certificate
(ours: ``current-cert``, any other: ``idevid``). Every refusal - including a wrong
media type or malformed JSON - is an audit event.

``GET /.well-known/dm-bootstrap`` tells clients where everything is.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap import __version__
from bootstrap.auth import hmac_scheme
from bootstrap.auth.attestation import METHODS, Evidence
from bootstrap.dm.mo import ddf_url, trust_fingerprint
from bootstrap.errors import AuthenticationFailed
from bootstrap.runtime import Runtime
from bootstrap.services.authorities import authority_urls
from bootstrap.services.enrollment import EnrollmentOutcome
from bootstrap.web.bodies import EnrollBody
from bootstrap.web.common import JSON, refusals_recorded, request_id, runtime_of
from bootstrap.web.openapi import request_body
from bootstrap.web.problems import PROBLEM_TYPE
from bootstrap.web.tls import client_certificate, client_chain
from pki.identity import DEVICE_URI_PREFIX
from pki.tpm import TPM_RESIDENT_KEY_POLICY

__all__ = ["DISCOVERY_PATH", "ENROLL_PATH", "content_document", "request_evidence", "routes"]

ENROLL_PATH = "/api/v1/enroll"
DISCOVERY_PATH = "/.well-known/dm-bootstrap"



def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def content_document(outcome: EnrollmentOutcome) -> dict[str, Any]:
    """The bootstrap content as the JSON enroll API returns it (docs/api.md)."""
    content = outcome.content
    account = content.account
    return {
        "dev_id": content.dev_id,
        "status": outcome.device.status,
        "profile": outcome.profile.name,
        "serial": outcome.issued.serial_hex,
        "not_after": outcome.issued.certificate.not_valid_after_utc.isoformat(),
        "account": {"server_id": account.server_id, "server_uri": account.server_uri, "name": account.name,
                    "permitted_moids": list(account.permitted_moids), "notification": account.notification},
        "certificate_chain_pem": "".join(_pem(der) for der in content.certificate_chain),
        "trust_anchors": [{"role": a.role, "name": a.name, "fingerprint": trust_fingerprint(a.der), "pem": _pem(a.der)}
                          for a in content.trust_anchors],
        "data_repository_urls": list(content.data_repository_urls),
        "extra_mos": [mo.instance for mo in content.extra_mos],
        "delivery": content.delivery,
    }


def _evidence(request: Request, token: str | None, body: bytes) -> Evidence:
    if token:
        return Evidence("token", token=token, body=body)
    authorization = request.headers.get("authorization", "")
    if authorization.split(" ", 1)[0].lower() == hmac_scheme.SCHEME.lower():
        return Evidence("group-key", authorization=authorization, body=body)
    settings = runtime_of(request).settings
    cert = client_certificate(request, trusted_proxies=settings.trusted_proxies, header=settings.client_cert_header)
    if cert is not None:
        method = runtime_of(request).enrollment.certificate_method(cert)
        return Evidence(method, client_certificate=cert, intermediates=client_chain(request), body=body)
    raise AuthenticationFailed(f"no evidence: send a token, Authorization: {hmac_scheme.SCHEME} ..., or a TLS"
                               " client certificate", field="evidence")


#: The evidence of a JSON device request (its ``token`` member, DMBoot-HMAC, TLS), shared with web/dm1.py.
request_evidence = _evidence


@request_body(EnrollBody)
async def enroll(request: Request) -> Response:
    """Enroll one device; the answer is its certificate, account and trust anchors."""
    runtime = runtime_of(request)
    body = await request.body()
    async with refusals_recorded(request, channel="json") as device:
        enrollment = device.parse(EnrollBody, body)
        # A token is evidence as it stands; a client certificate is classified against the database.
        evidence = (Evidence("token", token=enrollment.token, body=body) if enrollment.token
                    else await run_in_threadpool(_evidence, request, enrollment.token, body))
    outcome = await run_in_threadpool(
        runtime.enrollment.enroll, enrollment.dev_id, evidence, enrollment.csr.encode(),
        declared_mos=None if enrollment.mos is None else [m.model_dump(exclude_none=True) for m in enrollment.mos],
        features=enrollment.features,
        channel="json", request_id=request_id(request))
    return JSONResponse(content_document(outcome), media_type=JSON)


def _discovery(runtime: Runtime) -> dict[str, Any]:
    base = runtime.settings.public_url.rstrip("/")
    with runtime.database.read_session() as session:
        issuers = [row.name for row in runtime.authorities.all_rows(session)]
    return {
        "service": "dm-bootstrap",
        "version": __version__,
        "endpoints": {
            "dm_bootstrap": f"{base}/dm/bootstrap",
            "enroll": f"{base}{ENROLL_PATH}",
            "est": f"{base}/.well-known/est",
            "ocsp": f"{base}/ocsp",
            "crls": [url for name in issuers for url in authority_urls(base, name).crl],
            "ca_chain": f"{base}/ca/chain.pem",
            "ca_certificates": [f"{base}/ca/{name}.pem" for name in issuers],
        },
        "media_types": {
            "dm_initiation": "application/vnd.oma.dm.initiation+json",
            "dm_request": "application/vnd.oma.dm.request+json",
            "dm_response": "application/vnd.oma.dm.response+json",
            "enroll_request": JSON,
            "enroll_response": JSON,
            "problem": PROBLEM_TYPE,
            "ddf": "application/vnd.syncml.dmddf+xml",
            "ca_chain": "application/pem-certificate-chain",
        },
        "attestation_methods": list(METHODS),
        "tpm": {"challenge": f"{base}/api/v1/enroll/tpm/challenge", "enroll": f"{base}/api/v1/enroll/tpm",
                "resident_key_policy": TPM_RESIDENT_KEY_POLICY, "docs": "docs/tpm.md"},
        "hmac_scheme": {"name": hmac_scheme.SCHEME, "version": hmac_scheme.VERSION,
                        "header": "Authorization", "max_skew_seconds": hmac_scheme.MAX_SKEW_SECONDS,
                        "device_key": "HMAC-SHA256(group key, DevID)"},
        "supported_mos": [{"MOID": moid, "DDF": ddf_url(moid, base_url=base)} for moid in runtime.ddfs.moids],
        "device_identity": {"subject": "CN=<DevID>", "san_uri_prefix": DEVICE_URI_PREFIX},
    }


async def discovery(request: Request) -> Response:
    """``/.well-known/dm-bootstrap``: endpoints, media types, attestation methods, supported MOs."""
    return JSONResponse(await run_in_threadpool(_discovery, runtime_of(request)))


def routes() -> list[Route]:
    """``POST /api/v1/enroll`` and ``GET /.well-known/dm-bootstrap``."""
    return [
        Route(ENROLL_PATH, enroll, methods=["POST"]),
        Route(DISCOVERY_PATH, discovery, methods=["GET"]),
    ]
