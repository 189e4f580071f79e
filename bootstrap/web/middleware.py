"""ASGI middleware: the request body limit (request ids, metrics and access logs: bootstrap.web.observe)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bootstrap.errors import PayloadTooLarge

__all__ = ["BodyLimitMiddleware"]


class BodyLimitMiddleware:
    """Refuses bodies over ``limit`` bytes with 413 problem+json, before a handler reads them."""

    def __init__(self, app: ASGIApp, limit: int, overrides: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        #: Path prefix -> limit, for routes that stream large bodies (factory NDJSON batches).
        self.overrides = dict(overrides or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = next((v for prefix, v in self.overrides.items() if path.startswith(prefix)), self.limit)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit():
            if int(length) > limit:
                await self._refuse(send, limit)
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

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps(
            {
                "type": "urn:dmboot:problem:payload-too-large",
                "title": "Request body too large",
                "status": 413,
                "detail": f"the request body is larger than {limit} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
