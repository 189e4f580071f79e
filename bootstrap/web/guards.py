"""Input checks at the edge, the same for every route and both databases: no NUL characters.

PostgreSQL cannot store a NUL in text and its driver raises; SQLite stores it.
Rather than let each database decide (a 500 on one, a stored NUL on the other),
a NUL anywhere a name or value can come from is refused here with 400:

- the path and the query string (raw, or percent-encoded as ``%00``) at once;
- JSON bodies (``\\u0000``) and form bodies (``%00``) while the handler reads them.

Binary bodies (WBXML, DER, OCSP) are left alone: NUL is an ordinary byte there.
"""

from __future__ import annotations

import re

from starlette.types import Message, Receive, Scope, Send

from bootstrap.errors import InvalidRequest
from bootstrap.web.middleware import HttpMiddleware, send_problem

__all__ = ["NulGuardMiddleware"]

_PERCENT_NUL = re.compile(rb"%00")
# \u0000 preceded by an even number of backslashes (so not the text "\\u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
_TAIL = 16  # bytes kept from the previous chunk, so a pattern split across chunks is still seen


def _body_pattern(content_type: bytes) -> re.Pattern[bytes] | None:
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or media.endswith(b"+json"):
        return _JSON_NUL
    if media == b"application/x-www-form-urlencoded":
        return _PERCENT_NUL
    return None


class NulGuardMiddleware(HttpMiddleware):
    """Refuses NUL characters in the path, the query string and textual bodies with 400 problem+json."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        raw_path = bytes(scope.get("raw_path") or b"")
        query = bytes(scope.get("query_string", b""))
        if "\x00" in path or b"\x00" in query or _PERCENT_NUL.search(query) or _PERCENT_NUL.search(raw_path):
            await send_problem(send, 400, "invalid-request", "Invalid request",
                               "the request path or query contains a NUL character")
            return
        pattern = _body_pattern(dict(scope["headers"]).get(b"content-type", b""))
        if pattern is None:
            await self.app(scope, receive, send)
            return
        tail = b""

        async def checked() -> Message:
            nonlocal tail
            message = await receive()
            chunk = tail + message.get("body", b"")
            if b"\x00" in chunk or pattern.search(chunk):
                # Raised inside the handler's read: the app's error mapping turns it into 400.
                raise InvalidRequest("the request body contains a NUL character", field="body")
            tail = chunk[-_TAIL:]
            return message

        await self.app(scope, checked, send)
