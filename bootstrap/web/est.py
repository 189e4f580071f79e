"""EST (RFC 7030) over HTTPS: ``/.well-known/est/[<label>/]<operation>``.

=================  ======  ===================================  ==========================================
operation          method  request                              response
=================  ======  ===================================  ==========================================
cacerts            GET     -                                    application/pkcs7-mime, base64 certs-only
simpleenroll       POST    application/pkcs10, base64 DER       application/pkcs7-mime; smime-type=certs-only
simplereenroll     POST    application/pkcs10 (mTLS: current)   same
serverkeygen       POST    application/pkcs10                   multipart/mixed: application/pkcs8 +
                                                                application/pkcs7-mime (RFC 7030 4.4.2)
csrattrs           GET     -                                    application/csrattrs, base64 DER
=================  ======  ===================================  ==========================================

Bodies are base64 with ``Content-Transfer-Encoding: base64`` (RFC 7030 4.1.3; RFC 8951
makes base64 the rule whatever that header says); line breaks in requests are fine.
Errors are problem+json with a readable ``detail``; 401 carries ``WWW-Authenticate:
Basic`` (RFC 7030 3.2.3). Handlers parse, authenticate, call one service, render.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bootstrap.errors import AuthenticationFailed, NotFound, UnsupportedMediaType
from bootstrap.services.est import EstClient, EstLabel
from bootstrap.web.common import request_id, runtime_of
from bootstrap.web.problems import generic_refusal, problem
from bootstrap.web.tls import client_certificate, tls_info
from pki.authority import IssuedCertificate
from pki.encoding import pkcs7_certs_only
from pki.est import b64_body, b64_lines

__all__ = ["routes"]

PKCS7 = "application/pkcs7-mime"
CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
PKCS10 = "application/pkcs10"
CSRATTRS = "application/csrattrs"
PKCS8 = "application/pkcs8"
_B64 = {"Content-Transfer-Encoding": "base64"}
_REALM = 'Basic realm="dm-bootstrap EST", charset="UTF-8"'
_TLS12 = 0x0303
_OPERATIONS = ("cacerts", "simpleenroll", "simplereenroll", "serverkeygen", "csrattrs")




async def _label(request: Request) -> EstLabel:
    name = request.path_params.get("label")
    if name is None:  # the default label: nothing to look up
        return runtime_of(request).est.label(None)
    return await run_in_threadpool(runtime_of(request).est.label, str(name))


async def cacerts(request: Request) -> Response:
    """``GET cacerts`` (RFC 7030 4.1): the issuing CA and the root, PKCS#7 certs-only."""
    await _label(request)
    certificates = await run_in_threadpool(runtime_of(request).est.ca_certificates)
    return Response(b64_lines(pkcs7_certs_only(certificates)), media_type=PKCS7, headers=_B64)


async def csrattrs(request: Request) -> Response:
    """``GET csrattrs`` (RFC 7030 4.5): what the request should carry."""
    label = await _label(request)
    return Response(b64_lines(runtime_of(request).est.csr_attributes(label)), media_type=CSRATTRS, headers=_B64)


async def simpleenroll(request: Request) -> Response:
    """``POST simpleenroll`` (RFC 7030 4.2.1)."""
    label, csr, client = await _enrollment_request(request)
    issued = await run_in_threadpool(runtime_of(request).est.enroll, label, csr, client,
                                     request_id=request_id(request))
    return _certificate_response(issued)


async def simplereenroll(request: Request) -> Response:
    """``POST simplereenroll`` (RFC 7030 4.2.2): the current certificate over TLS, same identity."""
    label, csr, client = await _enrollment_request(request)
    issued = await run_in_threadpool(runtime_of(request).est.reenroll, label, csr, client,
                                     request_id=request_id(request))
    return _certificate_response(issued)


async def serverkeygen(request: Request) -> Response:
    """``POST serverkeygen`` (RFC 7030 4.4): the key pair is made here and returned once, unencrypted
    inside TLS (RFC 7030 4.4.2), never stored."""
    label, csr, client = await _enrollment_request(request)
    issued, key = await run_in_threadpool(runtime_of(request).est.server_keygen, label, csr, client,
                                          request_id=request_id(request))
    boundary = "est-" + secrets.token_hex(12)
    pkcs8 = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    parts = [(PKCS8, pkcs8), (CERTS_ONLY, pkcs7_certs_only([issued.certificate]))]
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {kind}\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode()
        + b64_lines(der, newline=b"\r\n") for kind, der in parts
    ) + f"--{boundary}--\r\n".encode()
    return Response(body, media_type=f"multipart/mixed; boundary={boundary}")


async def _enrollment_request(request: Request) -> tuple[EstLabel, bytes, EstClient]:
    label = await _label(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != PKCS10:
        raise UnsupportedMediaType(f"send the certification request as {PKCS10} (base64 DER), not {kind or 'nothing'}"
                                   " (RFC 7030 4.2.1)")
    csr = b64_body(await request.body())
    return label, csr, _client(request)


def _client(request: Request) -> EstClient:
    settings = runtime_of(request).settings
    certificate = client_certificate(request, trusted_proxies=settings.trusted_proxies,
                                     header=settings.client_cert_header)
    info = tls_info(request) or {}
    unique = info.get("tls_unique") if info.get("tls_version") == _TLS12 else None
    username, password = _basic(request.headers.get("authorization"))
    return EstClient(username=username, password=password, certificate=certificate,
                     tls_unique=bytes(unique) if unique else None)


def _basic(header: str | None) -> tuple[str | None, str | None]:
    """(username, password) of ``Authorization: Basic`` (RFC 7617), or (None, None)."""
    if not header:
        return None, None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationFailed("EST takes HTTP Basic (password = enrollment token) or a TLS client certificate")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise AuthenticationFailed("the Basic credentials are not base64 user:password") from None
    # RFC 7617 splits at the first colon, but DevIDs hold colons (IMEI:...) and enrollment
    # tokens never do (url-safe base64): split at the last one.
    username, sep, password = decoded.rpartition(":")
    if not sep or not password:
        raise AuthenticationFailed("the Basic credentials need a password: the enrollment token")
    return username or None, password


def _certificate_response(issued: IssuedCertificate) -> Response:
    return Response(b64_lines(pkcs7_certs_only([issued.certificate])), media_type=CERTS_ONLY, headers=_B64)


def _with_challenge(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """401 responses get ``WWW-Authenticate: Basic`` (RFC 7030 3.2.3, RFC 9110 11.6.1)."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except AuthenticationFailed as exc:
            return problem(401, "authentication-failed", "Authentication failed",
                           generic_refusal(request.url.path, exc) or exc.message,
                           instance=request.url.path, headers={"WWW-Authenticate": _REALM},
                           field=exc.field, request_id=request_id(request))

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


async def _unknown(request: Request) -> Response:
    raise NotFound(f"unknown EST operation; use one of {', '.join(_OPERATIONS)} (RFC 7030 3.2.2)")


def routes() -> list[Route]:
    handlers: dict[str, tuple[Callable[[Request], Awaitable[Response]], str]] = {
        "cacerts": (cacerts, "GET"),
        "csrattrs": (csrattrs, "GET"),
        "simpleenroll": (simpleenroll, "POST"),
        "simplereenroll": (simplereenroll, "POST"),
        "serverkeygen": (serverkeygen, "POST"),
    }
    base = "/.well-known/est"
    result: list[Route] = []
    for operation, (handler, method) in handlers.items():
        endpoint = _with_challenge(handler)
        result.append(Route(f"{base}/{operation}", endpoint, methods=[method]))
        result.append(Route(f"{base}/{{label}}/{operation}", endpoint, methods=[method]))
    result.append(Route(f"{base}/{{rest:path}}", _unknown, methods=["GET", "POST"]))
    return result
