"""Health and readiness, and the CA certificates relying parties fetch."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap.errors import NotFound
from bootstrap.logs import failures
from bootstrap.runtime import Runtime
from bootstrap.secrets import CheckResult
from bootstrap.web.auth import principal_of
from bootstrap.web.common import runtime_of
from bootstrap.web.problems import problem
from bootstrap.web.tls import client_certificate, tls_info
from pki.authority import fingerprint

__all__ = ["routes"]

PEM_CHAIN = "application/pem-certificate-chain"  # RFC 8555 9.1
DER_CERT = "application/pkix-cert"  # RFC 2585
_SECRETS_RETRY_AFTER = 5



async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the database answers, the CA is initialized and the secret store passes its checks.

    Vault sealed, stopped or denying makes the service not ready (503 with Retry-After);
    it becomes ready again by itself once Vault is back.
    """
    # The database and Vault calls block: keep them off the event loop.
    return await run_in_threadpool(_readiness, runtime_of(request))


def _readiness(runtime: Runtime) -> Response:
    # Anonymous callers see which check failed, never the driver's or Vault's message (hosts,
    # ports, paths): that goes to the log, one line per failure class.
    checks: dict[str, str] = {}
    try:
        with runtime.database.read_session() as session:
            session.execute(text("SELECT 1"))
            runtime.authorities.active_row(session)
        checks["database"] = "ok"
        checks["ca"] = "ok"
    except Exception as exc:  # readiness reports, it does not raise
        failures.record("readiness: database", exc)
        checks["error"] = type(exc).__name__
        return problem(503, "not-ready", "Not ready", "the database is unavailable or not initialized; "
                       "see the service log", headers={"Retry-After": "5"}, checks=checks)
    try:
        failed = [r for r in runtime.store.check() if not r.ok]
    except Exception as exc:  # a store's check() should not raise; readiness reports anyway
        failed = [CheckResult("secret store", False, f"{type(exc).__name__}: {exc}")]
    if failed:
        checks["secrets"] = "failed"
        for result in failed:
            failures.record(f"readiness: {result.name}", RuntimeError(result.detail or "failed"))
        return problem(
            503, "secret-store-unavailable", "Not ready: the secret store fails its checks",
            "failed: " + ", ".join(r.name for r in failed) + "; see the service log",
            headers={"Retry-After": str(_SECRETS_RETRY_AFTER)}, checks=checks,
            failed=[{"name": r.name} for r in failed],
        )
    checks["secrets"] = "ok"
    return JSONResponse({"status": "ready", "checks": checks})


def _certificate(request: Request, name: str) -> x509.Certificate:
    runtime = runtime_of(request)
    with runtime.database.read_session() as session:
        for row in runtime.authorities.all_rows(session):
            if row.name == name:
                return x509.load_pem_x509_certificate(row.pem.encode())
    raise NotFound(f"no CA named {name!r}")


def ca_certificate(request: Request) -> Response:
    """Sync: Starlette runs it in its threadpool (it reads the database).

    ``/ca/{name}.pem`` or ``.der``: one of our CA certificates (AIA caIssuers points here)."""
    name, _, suffix = str(request.path_params["file"]).rpartition(".")
    if suffix not in ("pem", "der"):
        raise NotFound("CA certificates are served as <name>.pem or <name>.der")
    cert = _certificate(request, name)
    if suffix == "der":
        return Response(cert.public_bytes(Encoding.DER), media_type=DER_CERT)
    return Response(cert.public_bytes(Encoding.PEM), media_type="application/x-pem-file")


def ca_bundle(request: Request) -> Response:
    """``/ca/bundle.pem``: every issuing CA still within its validity (active first), then the root.

    After ``dmboot ca rotate`` certificates of the retired issuing CA stay in use until
    they expire; relying parties that load this bundle trust both during the overlap.
    """
    runtime = runtime_of(request)
    with runtime.database.read_session() as session:
        rows = runtime.authorities.bundle_rows(session)
    return Response("".join(r.pem for r in rows), media_type=PEM_CHAIN)


def ca_chain(request: Request) -> Response:
    """``/ca/chain.pem``: the active issuing CA followed by the root."""
    runtime = runtime_of(request)
    with runtime.database.read_session() as session:
        issuing = runtime.authorities.active_row(session)
        root = runtime.authorities.root_row(session)
    return Response(issuing.pem + root.pem, media_type=PEM_CHAIN)


def whoami(request: Request) -> Response:
    """``/api/v1/whoami``: what the service sees of the caller - for debugging proxies and mTLS."""
    runtime = runtime_of(request)
    principal = principal_of(request)
    cert = client_certificate(
        request, trusted_proxies=runtime.settings.trusted_proxies, header=runtime.settings.client_cert_header
    )
    info = tls_info(request) or {}
    return JSONResponse(
        {
            "principal": {"name": principal.name, "kind": principal.kind, "roles": sorted(principal.roles)}
            if principal
            else None,
            "client_certificate": {
                "subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(),
                "fingerprint": fingerprint(cert),
            }
            if cert
            else None,
            "tls_version": info.get("tls_version"),
            "request_id": request.scope.get("state", {}).get("request_id"),
        }
    )


def routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/ca/chain.pem", ca_chain, methods=["GET"]),
        Route("/ca/bundle.pem", ca_bundle, methods=["GET"]),
        Route("/ca/{file}", ca_certificate, methods=["GET"]),
        Route("/api/v1/whoami", whoami, methods=["GET"]),
    ]
