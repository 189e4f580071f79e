"""DM 2.0 bootstrap routes: thin handlers over :class:`~bootstrap.services.dm2.Dm2BootstrapService`.

``POST /dm/bootstrap`` takes package 1 (``application/vnd.oma.dm.initiation+json``)
and answers package 2 (``application/vnd.oma.dm.request+json``) with the session
reference in ``OMADM-Session``; the same URL takes package 3
(``application/vnd.oma.dm.response+json``) with that header back and answers 204.
``GET /dm/objects/{ref}`` is where data repositories fetch MO data published for
HGET; ``GET /ddf/{MOID}`` serves the DDFs our ``DDF`` URLs point at.

How a device authenticates (ours, docs/dm2-exchange.md), first match wins:

- ``Authorization: DMBoot-Token <enrollment token>`` (``Bearer`` is for API clients);
- ``Authorization: DMBoot-HMAC ...`` (bootstrap.auth.hmac_scheme), over the exact body;
- ``ext-dmboot.Token`` in package 1;
- a TLS client certificate: issued by one of our issuing CAs means ``current-cert``,
  any other ``idevid``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bootstrap.auth.attestation import Evidence
from bootstrap.dm.ddf import DDF_MEDIA_TYPE
from bootstrap.dm.mo import MO_INSTANCE_MEDIA_TYPE
from bootstrap.dm.package import (
    INITIATION_MEDIA_TYPE,
    REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
    Initiation,
    parse_initiation,
    parse_response,
)
from bootstrap.dm.session import SESSION_HEADER
from bootstrap.errors import AuthenticationFailed, InvalidRequest, NotAcceptable, NotFound, UnsupportedMediaType
from bootstrap.runtime import Runtime
from bootstrap.services.dm2 import BOOTSTRAP_PATH
from bootstrap.web.tls import client_certificate

__all__ = ["DEVID_HEADER", "OMADM_ACCEPT_HEADER", "TOKEN_SCHEME", "accepts", "routes"]

DEVID_HEADER = "OMADM-DevID"
#: DM 2.0's header for other formats the client takes; ours: the formats of MO data (PUT/HGET).
OMADM_ACCEPT_HEADER = "OMADM-Accept"
#: Ours: the Authorization scheme for a one-time enrollment token on /dm.
TOKEN_SCHEME = "DMBoot-Token"  # noqa: S105 - a scheme name, not a secret
_HMAC_SCHEME = "DMBoot-HMAC"


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else None


def accepts(header: str | None, media_type: str) -> bool:
    """Whether an Accept-style header (RFC 9110 12.5.1) admits ``media_type``; no header admits all."""
    if header is None or not header.strip():
        return True
    major = media_type.partition("/")[0]
    for item in header.split(","):
        media_range, *params = (p.strip() for p in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and media_range.lower() in ("*/*", f"{major}/*", media_type):
            return True
    return False


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def bootstrap(request: Request) -> Response:
    """``POST /dm/bootstrap``: package 1 -> package 2, or package 3 -> 204."""
    media_type = _media_type(request)
    if media_type == INITIATION_MEDIA_TYPE:
        return await _initiation(request)
    if media_type == RESPONSE_MEDIA_TYPE:
        return await _response(request)
    raise UnsupportedMediaType(
        f"{media_type or 'a body without Content-Type'} is not a DM 2.0 package here; send package 1 as "
        f"{INITIATION_MEDIA_TYPE} or package 3 as {RESPONSE_MEDIA_TYPE}", field="Content-Type")


async def _initiation(request: Request) -> Response:
    if not accepts(request.headers.get("accept"), REQUEST_MEDIA_TYPE):
        from bootstrap.web import dm1  # a DM 1.x client asking for SyncML; web/dm1.py imports this module

        if dm1.wants_dm1(request.headers.get("accept")):
            return await dm1.from_package1(request, _evidence)
        raise NotAcceptable(f"package 2 is {REQUEST_MEDIA_TYPE}; the Accept header excludes it", field="Accept")
    if not accepts(request.headers.get(OMADM_ACCEPT_HEADER), MO_INSTANCE_MEDIA_TYPE):
        raise NotAcceptable(f"MO data is sent as {MO_INSTANCE_MEDIA_TYPE}; {OMADM_ACCEPT_HEADER} excludes it",
                            field=OMADM_ACCEPT_HEADER)
    body = await request.body()
    initiation = parse_initiation(body, dev_id=request.headers.get(DEVID_HEADER))
    evidence = await _evidence(request, body, initiation)
    package = await run_in_threadpool(_runtime(request).dm2.start, initiation, evidence,
                                      request_id=_request_id(request))
    return Response(package.body, media_type=REQUEST_MEDIA_TYPE,
                    headers={SESSION_HEADER: package.session, "Cache-Control": "no-store"})


async def _evidence(request: Request, body: bytes, initiation: Initiation) -> Evidence:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if initiation.token is not None:
            raise InvalidRequest("send the enrollment token in the Authorization header or in ext-dmboot.Token, "
                                 "not both", field="ext-dmboot/Token")
        if scheme.lower() == TOKEN_SCHEME.lower() and value.strip():
            return Evidence("token", token=value.strip(), body=body)
        if scheme.lower() == _HMAC_SCHEME.lower():
            return Evidence("group-key", authorization=header.strip(), body=body)
        raise AuthenticationFailed(f"on /dm use Authorization: {TOKEN_SCHEME} <enrollment token> or "
                                   f"{_HMAC_SCHEME} ..., or a TLS client certificate", field="Authorization")
    if initiation.token is not None:
        return Evidence("token", token=initiation.token, body=body)
    settings = _runtime(request).settings
    cert = client_certificate(request, trusted_proxies=settings.trusted_proxies, header=settings.client_cert_header)
    if cert is None:
        raise AuthenticationFailed(f"no device credential: send Authorization: {TOKEN_SCHEME} or {_HMAC_SCHEME}, "
                                   "or connect with a manufacturer (IDevID) or current device certificate")
    method = await run_in_threadpool(_runtime(request).enrollment.certificate_method, cert)
    return Evidence(method, client_certificate=cert, body=body)


async def _response(request: Request) -> Response:
    body = await request.body()
    response = parse_response(body)
    await run_in_threadpool(_runtime(request).dm2.finish, response, session_ref=request.headers.get(SESSION_HEADER),
                            dev_id=request.headers.get(DEVID_HEADER), request_id=_request_id(request))
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


async def data_object(request: Request) -> Response:
    """``GET /dm/objects/{ref}``: MO data published for HGET, for data repositories to serve."""
    row = await run_in_threadpool(_runtime(request).dm2.published, str(request.path_params["ref"]))
    return Response(row.body.encode("utf-8"), media_type=MO_INSTANCE_MEDIA_TYPE,
                    headers={"ETag": f'"{row.cv}"', DEVID_HEADER: row.dev_id, "Cache-Control": "no-store"})


def ddf(request: Request) -> Response:
    """``GET /ddf/{MOID}``: a registered DDF, as the ``DDF`` member of our MO instances names it."""
    moid = unquote(str(request.path_params["moid"]))
    found = _runtime(request).dm2.ddfs.find(moid)
    source = Path(found.source) if found is not None else None
    if source is None or not source.is_file():
        raise NotFound(f"no DDF is served for {moid!r}", field="MOID")
    return Response(source.read_bytes(), media_type=DDF_MEDIA_TYPE)


def routes() -> list[Route]:
    return [
        Route(BOOTSTRAP_PATH, bootstrap, methods=["POST"]),
        Route("/dm/objects/{ref}", data_object, methods=["GET"]),
        Route("/ddf/{moid:path}", ddf, methods=["GET"]),
    ]
