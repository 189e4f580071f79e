"""ASGI middleware: the base every HTTP-only middleware shares, a problem sent from ASGI, the body limit.

Request ids, metrics and access logs: bootstrap.web.observe; NUL refusal: bootstrap.web.guards;
the console's security headers: bootstrap.web.console.security.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bootstrap.errors import PayloadTooLarge

__all__ = ["BodyLimitMiddleware", "HttpMiddleware", "send_problem"]


class HttpMiddleware:
    """A pure ASGI middleware that acts on HTTP requests only: lifespan and websocket scopes pass through.

    Subclasses define :meth:`http`, called once per HTTP request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one HTTP request (``scope["type"] == "http"``)."""
        raise NotImplementedError


async def send_problem(send: Send, status: int, problem: str, title: str, detail: str) -> None:
    """Send a whole RFC 9457 problem+json response from ASGI, before any handler ran.

    Args:
        send: The ASGI send callable.
        status: The HTTP status.
        problem: The problem type's last part (``urn:dmboot:problem:<problem>``).
        title: The problem's title.
        detail: What was wrong.
    """
    body = json.dumps({"type": f"urn:dmboot:problem:{problem}", "title": title, "status": status,
                       "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware(HttpMiddleware):
    """Refuses bodies over ``limit`` bytes with 413 problem+json, before a handler reads them."""

    def __init__(self, app: ASGIApp, limit: int, overrides: Mapping[str, int] | None = None) -> None:
        super().__init__(app)
        self.limit = limit
        #: Path prefix -> limit, for routes that stream large bodies (factory NDJSON batches).
        self.overrides = dict(overrides or {})

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        limit = next((v for prefix, v in self.overrides.items() if path.startswith(prefix)), self.limit)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit():
            if int(length) > limit:
                await send_problem(send, 413, "payload-too-large", "Request body too large",
                                   f"the request body is larger than {limit} bytes")
                return
            # A declared length within the limit is all there is to check: the HTTP parser
            # delivers no more body than that. Only a chunked body has its reads counted.
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                # Raised inside the handler's read: the app's error mapping turns it into 413.
                raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
            return message

        await self.app(scope, limited, send)
