"""DM 2.0 bootstrap routes: thin handlers over :class:`~bootstrap.services.dm2.Dm2BootstrapService`.

``POST /dm/bootstrap`` takes package 1 (``application/vnd.oma.dm.initiation+json``) and
answers package 2 (``application/vnd.oma.dm.request+json``, with ``OMADM-Accept``
listing the formats the client may use for HPUT/HPOST bodies). In the specification's
flow package 2 ends with ``CONT`` to ``/dm/bootstrap/<signed reference>``, where the
device posts package 3 (``application/vnd.oma.dm.response+json``) and gets the last
package 2, ``{"CMD": [["END"]]}``. Ours (inline profiles): package 3 goes to
``/dm/bootstrap`` with the ``OMADM-Session`` header and is answered 204.
``GET /dm/objects/{capability}`` serves HGET data (single use);
``GET /ddf/{MOID}`` serves the DDFs our ``DDF`` URLs point at.

How a device authenticates, first match wins:

- ``Authorization: Basic`` or ``Digest`` (DM 2.0 Security; bootstrap.auth.http_auth): user
  name = DevID, password = the one-time enrollment token or the group-derived key (hex);
- ours: ``Authorization: DMBoot-Token <enrollment token>``, ``DMBoot-HMAC ...``
  (bootstrap.auth.hmac_scheme), or ``ext-dmboot.Token`` in package 1;
- a TLS client certificate: issued by one of our issuing CAs means ``current-cert``,
  any other ``idevid``.

Without any, the answer is 401 with ``WWW-Authenticate: Digest ...`` and ``Basic ...``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bootstrap.auth import http_auth
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
from bootstrap.services.dm2 import BOOTSTRAP_PATH, OBJECTS_PATH
from bootstrap.web import dm1
from bootstrap.web.common import request_id, runtime_of
from bootstrap.web.device_http import DEVID_HEADER, TOKEN_SCHEME, accepts
from bootstrap.web.tls import client_certificate, client_chain
from bootstrap.web.tpm import tpm_proof

__all__ = ["OMADM_ACCEPT_HEADER", "routes"]

#: DM 2.0: a response header listing the media types the client may use for HPUT/HPOST bodies.
OMADM_ACCEPT_HEADER = "OMADM-Accept"
_HMAC_SCHEME = "DMBoot-HMAC"
_DEVICE_KEY = re.compile(r"[0-9a-f]{64}")
_TOKEN_PREFIX = "dmt_"  # noqa: S105 - a prefix, not a secret




def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def bootstrap(request: Request) -> Response:
    """``POST /dm/bootstrap``: package 1 -> package 2, or (ours) package 3 -> 204."""
    media_type = _media_type(request)
    if media_type == INITIATION_MEDIA_TYPE:
        return await _initiation(request)
    if media_type == RESPONSE_MEDIA_TYPE:
        return await _response(request)
    raise UnsupportedMediaType(
        f"{media_type or 'a body without Content-Type'} is not a DM 2.0 package here; send package 1 as "
        f"{INITIATION_MEDIA_TYPE} or package 3 as {RESPONSE_MEDIA_TYPE}", field="Content-Type")


def _package2(body: bytes, headers: dict[str, str] | None = None) -> Response:
    sent = {OMADM_ACCEPT_HEADER: MO_INSTANCE_MEDIA_TYPE, "Cache-Control": "no-store", **(headers or {})}
    return Response(body, media_type=REQUEST_MEDIA_TYPE, headers=sent)


async def _initiation(request: Request) -> Response:
    if not accepts(request.headers.get("accept"), REQUEST_MEDIA_TYPE):
        if dm1.wants_dm1(request.headers.get("accept")):
            return await dm1.from_package1(request, _evidence)
        raise NotAcceptable(f"package 2 is {REQUEST_MEDIA_TYPE}; the Accept header excludes it", field="Accept")
    body = await request.body()
    initiation = parse_initiation(body, dev_id=request.headers.get(DEVID_HEADER))
    evidence = await _evidence(request, body, initiation)
    try:
        package = await run_in_threadpool(runtime_of(request).dm2.start, initiation, evidence,
                                          request_id=request_id(request))
    except AuthenticationFailed as exc:  # a credential that did not verify: every 401 offers the schemes
        exc.challenges = http_auth.challenges(runtime_of(request).dm2.nonces)  # type: ignore[attr-defined]
        raise
    return _package2(package.body, {SESSION_HEADER: package.session} if package.session else None)


async def _evidence(request: Request, body: bytes, initiation: Initiation) -> Evidence:
    try:
        return await _find_evidence(request, body, initiation)
    except http_auth.StaleNonce as exc:
        exc.challenges = http_auth.challenges(runtime_of(request).dm2.nonces, stale=True)  # type: ignore[attr-defined]
        raise
    except AuthenticationFailed as exc:
        if request.url.path == BOOTSTRAP_PATH:
            exc.challenges = http_auth.challenges(runtime_of(request).dm2.nonces)  # type: ignore[attr-defined]
        raise


async def _find_evidence(request: Request, body: bytes, initiation: Initiation) -> Evidence:
    header = request.headers.get("authorization")
    if header:
        if initiation.token is not None:
            raise InvalidRequest("send the enrollment token in the Authorization header or in ext-dmboot.Token, "
                                 "not both", field="ext-dmboot/Token")
        return await _from_header(request, header.strip(), body, initiation)
    if initiation.token is not None:
        return Evidence("token", token=initiation.token, body=body)
    if initiation.tpm is not None:  # ours: round 2 of TPM attestation (docs/tpm.md)
        return Evidence("tpm", tpm=tpm_proof(initiation.tpm, initiation.csr or b""), body=body)
    settings = runtime_of(request).settings
    cert = client_certificate(request, trusted_proxies=settings.trusted_proxies, header=settings.client_cert_header)
    if cert is None:
        raise AuthenticationFailed("no device credential: use HTTP Basic or Digest (user name: the DevID), "
                                   "or connect with a manufacturer (IDevID) or current device certificate")
    method = await run_in_threadpool(runtime_of(request).enrollment.certificate_method, cert)
    return Evidence(method, client_certificate=cert, intermediates=client_chain(request), body=body)


async def _from_header(request: Request, header: str, body: bytes, initiation: Initiation) -> Evidence:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == TOKEN_SCHEME.lower() and value.strip():
        return Evidence("token", token=value.strip(), body=body)
    if scheme.lower() == _HMAC_SCHEME.lower():
        return Evidence("group-key", authorization=header, body=body)
    dm2 = runtime_of(request).dm2
    credential = http_auth.parse_authorization(header, method=request.method, nonces=dm2.nonces,
                                               user=initiation.dev_id)
    if credential is None:
        raise AuthenticationFailed(f"on /dm use Authorization: Basic or Digest (or ours: {TOKEN_SCHEME}, "
                                   f"{_HMAC_SCHEME}), or a TLS client certificate", field="Authorization")
    if credential.username != initiation.dev_id:
        raise AuthenticationFailed("the user name must be the DevID of OMADM-DevID", field="Authorization")
    if isinstance(credential, http_auth.BasicCredential):
        if credential.password.startswith(_TOKEN_PREFIX):
            return Evidence("token", token=credential.password, body=body, http=credential)
        if _DEVICE_KEY.fullmatch(credential.password):
            return Evidence("group-key", body=body, http=credential)
        raise AuthenticationFailed("the password is neither an enrollment token (dmt_...) nor a device key "
                                   "(64 lowercase hex digits)", field="Authorization")
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if credential.uri != target:
        raise AuthenticationFailed("the Digest uri is not this request's", field="Authorization")
    method = await run_in_threadpool(dm2.digest_method, initiation.dev_id)
    return Evidence(method, body=body, http=credential)


async def _response(request: Request) -> Response:
    """Ours (inline profiles): package 3 with the ``OMADM-Session`` header -> 204."""
    body = await request.body()
    response = parse_response(body)
    await run_in_threadpool(runtime_of(request).dm2.finish, response, session_ref=request.headers.get(SESSION_HEADER),
                            dev_id=request.headers.get(DEVID_HEADER), request_id=request_id(request))
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


async def resume(request: Request) -> Response:
    """``POST /dm/bootstrap/{reference}`` (the CONT ServerURI): package 3 -> the last package 2, END."""
    media_type = _media_type(request)
    if media_type != RESPONSE_MEDIA_TYPE:
        raise UnsupportedMediaType(f"post package 3 here, as {RESPONSE_MEDIA_TYPE}", field="Content-Type")
    response = parse_response(await request.body())
    body = await run_in_threadpool(runtime_of(request).dm2.resume, response,
                                   reference=str(request.path_params["reference"]),
                                   dev_id=request.headers.get(DEVID_HEADER), request_id=request_id(request))
    return _package2(body)


async def data_object(request: Request) -> Response:
    """``GET /dm/objects/{capability}``: MO data published for HGET (single use)."""
    found = await run_in_threadpool(runtime_of(request).dm2.published, str(request.path_params["ref"]))
    return Response(found.body, media_type=MO_INSTANCE_MEDIA_TYPE,
                    headers={DEVID_HEADER: found.dev_id, "Cache-Control": "no-store"})


def ddf(request: Request) -> Response:
    """``GET /ddf/{MOID}``: a registered DDF, as the ``DDF`` member of our MO instances names it."""
    moid = unquote(str(request.path_params["moid"]))
    found = runtime_of(request).dm2.ddfs.find(moid)
    source = Path(found.source) if found is not None else None
    if source is None or not source.is_file():
        raise NotFound(f"no DDF is served for {moid!r}", field="MOID")
    return Response(source.read_bytes(), media_type=DDF_MEDIA_TYPE)


def routes() -> list[Route]:
    return [
        Route(BOOTSTRAP_PATH, bootstrap, methods=["POST"]),
        Route(BOOTSTRAP_PATH + "/{reference}", resume, methods=["POST"]),
        Route(OBJECTS_PATH + "/{ref}", data_object, methods=["GET"]),
        Route("/ddf/{moid:path}", ddf, methods=["GET"]),
    ]
