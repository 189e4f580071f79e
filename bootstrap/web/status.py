"""Health and readiness, and the CA certificates relying parties fetch."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap.errors import NotFound
from bootstrap.runtime import Runtime
from bootstrap.web.problems import problem

__all__ = ["routes"]

PEM_CHAIN = "application/pem-certificate-chain"  # RFC 8555 9.1
DER_CERT = "application/pkix-cert"  # RFC 2585


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the database answers and the CA is initialized."""
    runtime = _runtime(request)
    checks: dict[str, str] = {}
    try:
        with runtime.database.session() as session:
            session.execute(text("SELECT 1"))
            runtime.authorities.active_row(session)
        checks["database"] = "ok"
        checks["ca"] = "ok"
    except Exception as exc:  # readiness reports, it does not raise
        checks["error"] = type(exc).__name__
        return problem(
            503, "not-ready", "Not ready", f"{type(exc).__name__}: {exc}", headers={"Retry-After": "5"}, checks=checks
        )
    return JSONResponse({"status": "ready", "checks": checks})


def _certificate(request: Request, name: str) -> x509.Certificate:
    runtime = _runtime(request)
    with runtime.database.session() as session:
        for row in runtime.authorities.all_rows(session):
            if row.name == name:
                return x509.load_pem_x509_certificate(row.pem.encode())
    raise NotFound(f"no CA named {name!r}")


async def ca_certificate(request: Request) -> Response:
    """``/ca/{name}.pem`` or ``.der``: one of our CA certificates (AIA caIssuers points here)."""
    name, _, suffix = str(request.path_params["file"]).rpartition(".")
    if suffix not in ("pem", "der"):
        raise NotFound("CA certificates are served as <name>.pem or <name>.der")
    cert = _certificate(request, name)
    if suffix == "der":
        return Response(cert.public_bytes(Encoding.DER), media_type=DER_CERT)
    return Response(cert.public_bytes(Encoding.PEM), media_type="application/x-pem-file")


async def ca_chain(request: Request) -> Response:
    """``/ca/chain.pem``: the active issuing CA followed by the root."""
    runtime = _runtime(request)
    with runtime.database.session() as session:
        issuing = runtime.authorities.active_row(session)
        root = runtime.authorities.root_row(session)
    return Response(issuing.pem + root.pem, media_type=PEM_CHAIN)


def routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/ca/chain.pem", ca_chain, methods=["GET"]),
        Route("/ca/{file}", ca_certificate, methods=["GET"]),
    ]
