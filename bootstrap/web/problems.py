"""RFC 9457 problem details: the one place where errors become HTTP responses.

Domain errors know nothing of HTTP; this table maps them by class ancestry (the
most specific class listed wins). Problem ``type`` URIs are ``urn:dmboot:problem:<slug>``,
listed in docs/api.md.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from bootstrap import errors as e
from bootstrap.logs import failures
from bootstrap.web.common import request_id
from pki import errors as p

__all__ = ["PROBLEM_TYPE", "MethodNotAllowed", "exception_handlers", "generic_refusal", "problem",
           "status_of"]

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"

# class -> (status, slug, title); looked up along the exception's MRO.
_TABLE: dict[type[BaseException], tuple[int, str, str]] = {
    p.CsrEncodingError: (400, "bad-csr", "The certification request cannot be decoded"),
    p.CsrSignatureError: (400, "bad-csr-signature", "The certification request's signature does not verify"),
    p.CsrPolicyError: (400, "csr-policy", "The certification request asks for something the profile forbids"),
    p.KeyPolicyError: (400, "key-policy", "The key type or size is not allowed"),
    p.ProfileError: (400, "bad-profile", "Unknown or unusable certificate profile"),
    p.EncodingError: (400, "bad-encoding", "The input cannot be decoded"),
    p.IssuanceError: (503, "cannot-issue", "The certificate authority cannot issue now"),
    p.SignerUnavailable: (503, "signer-unavailable", "The CA key is unreachable; retry later"),
    p.SignerError: (502, "signer-failed", "The CA key failed to sign"),
    e.ConfigurationError: (500, "configuration", "The service is misconfigured"),
    e.NotInitialized: (503, "not-initialized", "The service is not initialized"),
    e.NotFound: (404, "not-found", "Not found"),
    e.Conflict: (409, "conflict", "Conflict"),
    e.InvalidRequest: (400, "invalid-request", "Invalid request"),
    e.UnsupportedMediaType: (415, "unsupported-media-type", "Unsupported media type"),
    e.NotAcceptable: (406, "not-acceptable", "None of the accepted formats can be produced"),
    e.PayloadTooLarge: (413, "payload-too-large", "Request body too large"),
    e.AuthenticationFailed: (401, "authentication-failed", "Authentication failed"),
    e.TooManyAttempts: (429, "too-many-attempts", "Too many failed attempts; retry later"),
    e.PermissionDenied: (403, "forbidden", "Forbidden"),
    e.QuotaExceeded: (403, "quota-exceeded", "The station's device quota is used up"),
    e.SecretStoreError: (500, "secret-store", "The secret store failed"),
    e.SecretAccessDenied: (503, "secret-store-denied", "The secret store refused the service's credentials"),
    e.SecretStoreUnavailable: (503, "secret-store-unavailable", "The secret store is unavailable; retry later"),
}


# Device-facing channels: a device that fails to authenticate learns that it was refused and how
# to authenticate, never why (a used token, an unknown DevID, a profile without a group key would each tell an
# unauthenticated caller something about our state). The reason stays in the audit event and
# the log. The field (which header or member) stays: it names no state. A caller that did
# authenticate and may not do something (PermissionDenied, 403) is told why.
# Path prefix -> (the one detail of that channel, classes that get it).
_GENERIC_REFUSALS: dict[str, tuple[str, tuple[type[Exception], ...]]] = {
    "/api/v1/enroll": ("enrollment refused: send a valid enrollment token, a dmboot-hmac signature or a "
                       "client certificate for this DevID", (e.AuthenticationFailed,)),
    "/dm/": ("bootstrap refused: the device credential does not authorize this DevID",
             (e.AuthenticationFailed,)),
    "/dm1/": ("bootstrap refused: the device credential does not authorize this DevID",
              (e.AuthenticationFailed,)),
    "/.well-known/est/": ("EST refused: send HTTP Basic with a valid enrollment token, or a client certificate "
                          "this service accepts", (e.AuthenticationFailed,)),
    "/api/v1/factory/": ("factory stations authenticate with a valid API token or station certificate",
                         (e.AuthenticationFailed,)),
}


def generic_refusal(path: str, exc: BaseException) -> str | None:
    """The one detail a device channel gives for ``exc``, or None when ``exc`` may be told as it is.

    TooManyAttempts (429, with Retry-After) and a station's QuotaExceeded stay specific.
    """
    if isinstance(exc, e.TooManyAttempts | e.QuotaExceeded):
        return None
    for prefix, (detail, classes) in _GENERIC_REFUSALS.items():
        if path.startswith(prefix) and isinstance(exc, classes):
            log.info("refused on %s: %s: %s", path, type(exc).__name__, getattr(exc, "message", exc))
            return detail
    return None


def problem(status: int, slug: str, title: str, detail: str, *, instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {"type": f"urn:dmboot:problem:{slug}", "title": title, "status": status,
                            "detail": detail}
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_TYPE)


def _lookup(exc: BaseException) -> tuple[int, str, str]:
    for cls in type(exc).__mro__:
        if cls in _TABLE:
            return _TABLE[cls]
    return 500, "internal", "Internal error"


def status_of(exc: BaseException) -> tuple[int, str, str]:
    """(status, slug, title) for ``exc``: the console renders errors with the API's mapping."""
    return _lookup(exc)


async def _domain_error(request: Request, exc: Exception) -> Response:
    generic = generic_refusal(request.url.path, exc)
    headers: dict[str, str] = {}
    if generic is not None:
        response = problem(401, "authentication-failed", "Authentication failed", generic,
                           instance=request.url.path, field=getattr(exc, "field", None),
                           request_id=request_id(request))
    else:
        status, slug, title = _lookup(exc)
        retry_after = getattr(exc, "retry_after", None)
        if status in (429, 503):
            headers["Retry-After"] = str(retry_after or 30)
        if status >= 500:  # an outage fails every request alike: one line per class, with counts
            failures.record(slug, exc)
        detail = getattr(exc, "message", str(exc))
        response = problem(status, slug, title, detail, instance=request.url.path, headers=headers,
                           field=getattr(exc, "field", None), request_id=request_id(request))
    for challenge in getattr(exc, "challenges", ()):  # a 401 may offer several schemes (RFC 9110 11.6.1)
        response.headers.append("WWW-Authenticate", challenge)
    return response


class MethodNotAllowed(HTTPException):
    """A 405 whose Allow header the handler knows better than the router."""

    def __init__(self, *allowed: str) -> None:
        super().__init__(405, headers={"Allow": ", ".join(allowed)})


def _allowed(request: Request) -> str:
    # Starlette answers 405 from the first route whose path matched and lists only that route's
    # methods; a path served by several routes (GET here, POST there) allows all of theirs.
    methods: set[str] = set()
    for route in getattr(request.app, "routes", []):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and not isinstance(exc, MethodNotAllowed):
        headers["Allow"] = _allowed(request) or headers.get("Allow", "")
    return problem(exc.status_code, slug, str(exc.detail), str(exc.detail), instance=request.url.path,
                   headers=headers, request_id=request_id(request))


async def _unexpected(request: Request, exc: Exception) -> Response:
    failures.record(f"internal:{type(exc).__name__}", exc, with_traceback=True)
    return problem(500, "internal", "Internal error", "An unexpected error occurred; it has been logged.",
                   instance=request.url.path, request_id=request_id(request))


def exception_handlers() -> dict[Any, Any]:
    """Handlers by class: domain errors, HTTP errors, the database driver's errors, then anything else."""
    return {
        e.DmBootstrapError: _domain_error,
        p.PkiError: _domain_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }
