"""ASGI middleware: request ids and the request body limit, in one layer."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bootstrap.errors import PayloadTooLarge

__all__ = ["RequestMiddleware"]

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestMiddleware:
    """One layer per request: the request id and the request body limit.

    - Takes a sane ``X-Request-ID`` from the client or makes one, and echoes it back.
    - Refuses bodies over ``limit`` bytes with 413 problem+json before a handler reads
      them. A declared ``Content-Length`` within the limit is all it checks: the HTTP
      parser delivers no more body than that. Only a chunked body (no length) has its
      reads counted.
    """

    def __init__(self, app: ASGIApp, limit: int, overrides: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        #: Path prefix -> limit, for routes that stream large bodies (factory NDJSON batches).
        self.overrides = dict(overrides or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given, length = b"", None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
            elif name == b"content-length":
                length = value
        request_id = given.decode("latin-1") if given and _SAFE_ID.match(given.decode("latin-1")) \
            else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append(id_header)
            await send(message)

        path = str(scope.get("path", ""))
        limit = next((v for prefix, v in self.overrides.items() if path.startswith(prefix)), self.limit)
        if length is not None and length.isdigit():
            if int(length) > limit:
                await self._refuse(send_with_id, limit)
                return
            await self.app(scope, receive, send_with_id)
            return
        await self.app(scope, _limited(receive, limit), send_with_id)

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


def _limited(receive: Receive, limit: int) -> Receive:
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            # Raised inside the handler's read: the app's error mapping turns it into 413.
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        return message

    return limited
