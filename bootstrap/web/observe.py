"""One pure-ASGI middleware for what an operator sees of each request: its id, its metrics, its log line.

Per request it takes a sane ``X-Request-ID`` from the client or makes one (and
echoes it), then, once the response is sent, counts it in
``dmboot_http_requests_total`` / ``dmboot_http_request_duration_seconds`` and writes
one line to the ``dmboot.access`` logger with: request id, method, route template
(never the concrete path: session references and serials stay out of logs),
status, duration, the credential scheme the client presented (``auth``: bearer,
basic, digest, hmac, certificate, session, none - never its value) and, when a
handler authenticated it, the principal's kind.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from starlette.routing import BaseRoute
from starlette.types import Message, Receive, Scope, Send

from bootstrap import metrics
from bootstrap.web.middleware import HttpMiddleware

__all__ = ["ObserveMiddleware", "route_template"]

access_log = logging.getLogger("dmboot.access")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
_SCHEMES = {b"bearer": "bearer", b"basic": "basic", b"digest": "digest", b"dmboot-hmac": "hmac"}
_UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The matched route's path template (with its mount prefix), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
    if path is None:
        return _UNMATCHED
    root = scope.get("root_path", "")
    if not root:
        return str(path) or "/"
    return f"{str(root)[len(str(scope.get('app_root_path', ''))):]}{path}" or "/"


def _auth_scheme(scope: Scope) -> str:
    authorization = b""
    cookie = False
    forwarded_cert = False
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"cookie":
            cookie = True
        elif name == b"x-ssl-client-cert" and value:
            forwarded_cert = True
    if authorization:
        return _SCHEMES.get(authorization.split(b" ", 1)[0].lower(), "other")
    tls = (scope.get("extensions") or {}).get("tls") or {}
    if tls.get("client_cert_chain") or forwarded_cert:
        return "certificate"
    return "session" if cookie else "none"


class ObserveMiddleware(HttpMiddleware):
    """Request id, request metrics and one access-log line per HTTP request."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        given = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
                break
        request_id = given.decode("latin-1") if given and _SAFE_ID.match(given.decode("latin-1")) \
            else secrets.token_hex(8)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500  # what the client gets if the app raises before it answers

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            metrics.observe_request(route, scope["method"], status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("%s %s %d", scope["method"], route, status, extra={
                    "request_id": request_id, "method": scope["method"], "route": route, "status": status,
                    "duration_ms": round(seconds * 1000, 2), "auth": _auth_scheme(scope),
                    "principal": state.get("principal_kind"),
                })
