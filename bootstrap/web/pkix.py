"""CRLs and OCSP over HTTP, for relying parties (DM servers, data repositories, TLS stacks).

* ``GET /crl/<CA>.crl``, ``/crl/<CA>-delta.crl`` and ``/crl/<CA>-p<N>.crl`` (a partition):
  DER CRLs, ``application/pkix-crl`` (RFC 5280 4.2.1.13 / RFC 2585), as the background
  publisher stored them (never built here); ETag is the CRL number.
* ``POST /ocsp`` (``application/ocsp-request``) and ``GET /ocsp/<url-encoded base64>``
  (RFC 6960 A.1): ``application/ocsp-response``. Errors the OCSP way (RFC 6960 2.3):
  HTTP 200 with malformedRequest / unauthorized / tryLater. Responses without a nonce
  are pre-signed and cacheable until nextUpdate, Last-Modified = thisUpdate (RFC 5019
  6.2); a GET this process holds in memory is answered on the event loop. With a
  nonce, not cacheable at all.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from email.utils import format_datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bootstrap.errors import NotFound, UnsupportedMediaType
from bootstrap.services.ocsp import OcspAnswer
from bootstrap.store.models import utcnow
from bootstrap.web.common import runtime_of
from pki.ocsp import MAX_REQUEST_BYTES, OcspRequestError, decode_get_request

__all__ = ["CRL_TYPE", "OCSP_REQUEST", "OCSP_RESPONSE", "routes"]

CRL_TYPE = "application/pkix-crl"  # RFC 2585 4.2
OCSP_REQUEST = "application/ocsp-request"  # RFC 6960 A.1
OCSP_RESPONSE = "application/ocsp-response"
#: Caches may keep a CRL this long at most; a revocation publishes a new one at once.
CRL_MAX_AGE = 300



async def crl(request: Request) -> Response:
    """``/crl/{file}``: the full, delta or partition CRL of one of our CAs."""
    file = str(request.path_params["file"])
    if not file.endswith(".crl"):
        raise NotFound("CRLs are served as /crl/<CA name>.crl, <CA name>-delta.crl and <CA name>-p<N>.crl")
    crls = runtime_of(request).crls
    issuer, kind, scope = await run_in_threadpool(crls.resolve, file.removesuffix(".crl"))
    published = await run_in_threadpool(crls.current, issuer, kind, scope)
    etag = f'"{issuer}-{published.number}"'
    now = utcnow()
    max_age = max(0, min(CRL_MAX_AGE, int((published.next_update - now).total_seconds())))
    headers = {
        "ETag": etag,
        "Last-Modified": _http_date(published.this_update),
        "Expires": _http_date(published.next_update),
        "Cache-Control": f"public, max-age={max_age}, no-transform",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(published.der, media_type=CRL_TYPE, headers=headers)


async def ocsp_post(request: Request) -> Response:
    """``POST /ocsp``: a DER OCSPRequest in the body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != OCSP_REQUEST:
        raise UnsupportedMediaType(f"send the OCSP request as {OCSP_REQUEST} (RFC 6960 A.1.1), not {kind or 'nothing'}")
    body = await request.body()
    return await _answer(request, body)


async def ocsp_get(request: Request) -> Response:
    """``GET /ocsp/{request}``: the DER OCSPRequest, base64 and URL-encoded (RFC 6960 A.1.1)."""
    # The raw path keeps %2F and '+' as the client sent them; path_params would decode them.
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    encoded = raw.split("?", 1)[0].split("/ocsp/", 1)[-1]
    # A pre-signed response this process holds answers without a thread or the database.
    cached = runtime_of(request).ocsp.respond_cached(encoded)
    if cached is not None:
        return _ocsp_response(cached)
    try:
        der = decode_get_request(encoded)
    except OcspRequestError:
        der = b""  # parse_request answers malformedRequest
    return await _answer(request, der[:MAX_REQUEST_BYTES + 1])


async def _answer(request: Request, der: bytes) -> Response:
    answer: OcspAnswer = await run_in_threadpool(runtime_of(request).ocsp.respond, der)
    return _ocsp_response(answer)


def _ocsp_response(answer: OcspAnswer) -> Response:
    headers = {"X-OCSP-Response-Status": answer.response_status}
    if answer.cache_until is not None:
        # RFC 5019 6.2: Last-Modified = thisUpdate, Expires = nextUpdate, an ETag, and a
        # max-age no later than nextUpdate.
        now = utcnow()
        max_age = max(0, int((answer.cache_until - now).total_seconds()))
        headers.update({
            "Cache-Control": f"public, max-age={max_age}, no-transform, must-revalidate",
            "Expires": _http_date(answer.cache_until),
            "Last-Modified": _http_date(answer.this_update or now),
            "ETag": '"' + hashlib.sha256(answer.der).hexdigest()[:32] + '"',
        })
    else:
        headers["Cache-Control"] = "no-store"
    return Response(answer.der, media_type=OCSP_RESPONSE, headers=headers)


@functools.lru_cache(maxsize=4096)  # pre-signed responses repeat their dates on every hit
def _http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def routes() -> list[Route]:
    return [
        Route("/crl/{file}", crl, methods=["GET"]),
        Route("/ocsp", ocsp_post, methods=["POST"]),
        Route("/ocsp/", ocsp_post, methods=["POST"]),
        Route("/ocsp/{request:path}", ocsp_get, methods=["GET"]),
    ]
