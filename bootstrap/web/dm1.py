"""DM 1.x routes: thin handlers over :class:`~bootstrap.services.dm1.Dm1Service`.

``POST /dm1/bootstrap`` takes ``{"dev_id", "csr"? (PEM), "token"?, "imsi"?, "sec"?}``
as ``application/json`` and answers the SyncML DM 1.2 bootstrap message:
``application/vnd.syncml.dm+wbxml; SEC=...; MAC=...`` unless the Accept header
excludes WBXML, then ``application/vnd.syncml.dm+xml`` (MAC over the XML bytes),
then the TNDS form ``application/vnd.syncml.dmtnds+xml`` (no MAC), then an OMA Client
Provisioning document ``application/vnd.wap.connectivity-wbxml; SEC=...; MAC=...``. With a CSR the
new certificate chain travels in ``DMBoot-Certificate-Chain`` (base64 DER, device
first, comma-separated): DMAcc 1.0 has no node for it.

The device authenticates as on ``/api/v1/enroll`` (``token`` member, DMBoot-HMAC,
TLS client certificate; bootstrap.web.enroll) or, as on ``/dm``, with
``Authorization: DMBoot-Token <token>``. Every refusal is an audit event.

``GET /api/v1/dm1/credentials/{dev_id}`` gives a DM 1.x server the device's
client and server credentials (Bearer token with ``dm1:credentials``; audited).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap.auth.attestation import Evidence
from bootstrap.dm.cp import CP_MEDIA_TYPE
from bootstrap.dm.package import Initiation, parse_initiation
from bootstrap.dm.syncml import TNDS_XML_MEDIA_TYPE, WBXML_MEDIA_TYPE, XML_MEDIA_TYPE
from bootstrap.errors import NotAcceptable
from bootstrap.services.dm1 import Dm1Package
from bootstrap.web.auth import authorize
from bootstrap.web.bodies import Dm1Body
from bootstrap.web.common import refusals_recorded, request_id, runtime_of
from bootstrap.web.device_http import DEVID_HEADER, TOKEN_SCHEME, accepts
from bootstrap.web.enroll import request_evidence
from bootstrap.web.openapi import operation

__all__ = ["BOOTSTRAP_PATH", "CERTIFICATE_CHAIN_HEADER", "CREDENTIALS_PATH", "IMSI_HEADER", "from_package1",
           "negotiate", "render", "routes", "wants_dm1"]

BOOTSTRAP_PATH = "/dm1/bootstrap"
CREDENTIALS_PATH = "/api/v1/dm1/credentials/{dev_id}"
#: Ours: the certificate chain issued for a CSR, as base64 DER values separated by commas.
CERTIFICATE_CHAIN_HEADER = "DMBoot-Certificate-Chain"
#: Ours: the IMSI, for NETWORKID MACs, when a DM 2.0 package 1 asks for a DM 1.x answer.
IMSI_HEADER = "DMBoot-IMSI"
_FORMS = (WBXML_MEDIA_TYPE, XML_MEDIA_TYPE, TNDS_XML_MEDIA_TYPE, CP_MEDIA_TYPE)
_SIDE = {"type": "object", "properties": {k: {"type": "string"} for k in ("name", "secret", "nonce", "auth_md5")}}



def negotiate(accept: str | None) -> str:
    """The form to answer in: WBXML, else XML, else TNDS, else Client Provisioning, as Accept admits.

    Raises:
        NotAcceptable: the header admits none of them.
    """
    for form in _FORMS:
        if accepts(accept, form):
            return form
    raise NotAcceptable(f"the DM 1.x bootstrap is {', '.join(_FORMS)}; the Accept header excludes all",
                        field="Accept")


def wants_dm1(accept: str | None) -> bool:
    """Whether an Accept header names a DM 1.x form (asked when it excludes the DM 2.0 package 2)."""
    return accept is not None and any(accepts(accept, form) for form in _FORMS)


async def from_package1(request: Request,
                        evidence_of: Callable[[Request, bytes, Initiation], Awaitable[Evidence]]) -> Response:
    """``POST /dm/bootstrap`` with package 1 and an Accept that asks for SyncML: the DM 1.x bootstrap.

    Delegated from bootstrap.web.dm2, whose evidence extraction ``evidence_of`` is; the
    CSR of package 1 is issued for; the IMSI, if the SEC mode needs one, is in ``DMBoot-IMSI``.
    """
    form = negotiate(request.headers.get("accept"))
    body = await request.body()
    initiation = parse_initiation(body, dev_id=request.headers.get(DEVID_HEADER))
    evidence = await evidence_of(request, body, initiation)
    package = await run_in_threadpool(runtime_of(request).dm1.bootstrap, initiation.dev_id, evidence,
                                      csr=initiation.csr or None, imsi=request.headers.get(IMSI_HEADER),
                                      request_id=request_id(request))
    return render(package, form)


def render(package: Dm1Package, form: str) -> Response:
    """The response for ``package`` in ``form`` (a media type :func:`negotiate` returned)."""
    headers = {"Cache-Control": "no-store"}
    if package.certificate_chain:
        headers[CERTIFICATE_CHAIN_HEADER] = ", ".join(base64.b64encode(d).decode() for d in package.certificate_chain)
    if form == TNDS_XML_MEDIA_TYPE:
        return Response(package.tnds, media_type=TNDS_XML_MEDIA_TYPE, headers=headers)
    message = {WBXML_MEDIA_TYPE: package.wbxml, XML_MEDIA_TYPE: package.xml, CP_MEDIA_TYPE: package.cp}[form]
    headers["Content-Type"] = message.content_type
    return Response(message.body, headers=headers)


def _evidence(request: Request, token: str | None, body: bytes) -> Evidence:
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == TOKEN_SCHEME.lower() and value.strip():
        return Evidence("token", token=value.strip(), body=body)
    return request_evidence(request, token, body)


async def bootstrap(request: Request) -> Response:
    """``POST /dm1/bootstrap``: a DM 1.x device's SyncML DM bootstrap message."""
    runtime = runtime_of(request)
    body = await request.body()
    async with refusals_recorded(request, channel="dm1") as device:
        form = negotiate(request.headers.get("accept"))
        start = device.parse(Dm1Body, body)
        evidence = await run_in_threadpool(_evidence, request, start.token, body)
    package = await run_in_threadpool(runtime.dm1.bootstrap, start.dev_id, evidence,
                                      csr=start.csr.encode() if start.csr else None, imsi=start.imsi, sec=start.sec,
                                      request_id=request_id(request))
    return render(package, form)


@operation(permission="dm1:credentials", tags=["dm1"], responses={
    200: {"type": "object", "properties": {"dev_id": {"type": "string"}, "server_id": {"type": "string"},
                                           "auth_type": {"enum": ["DIGEST", "HMAC"]}, "auth_scheme": {"type": "string"},
                                           "version": {"type": "integer"}, "ref": {"type": "string"},
                                           "client": _SIDE, "server": _SIDE}},
    404: "unknown device, or no DM 1.x credentials yet"})
async def credentials(request: Request) -> Response:
    """A device's DM 1.x credentials (AAuthName, AAuthSecret, nonce; client and server), for its DM server."""
    principal = await authorize(request, "dm1:credentials")
    view = await run_in_threadpool(runtime_of(request).dm1.credentials, str(request.path_params["dev_id"]),
                                   actor=principal.actor, request_id=request_id(request))
    return JSONResponse(view.to_json(), headers={"Cache-Control": "no-store"})


def routes() -> list[Route]:
    return [
        Route(BOOTSTRAP_PATH, bootstrap, methods=["POST"]),
        Route(CREDENTIALS_PATH, credentials, methods=["GET"]),
    ]
