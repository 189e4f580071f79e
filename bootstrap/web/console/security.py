"""Browser-facing protections of the console: response headers and cookies.

Every console and subscriber response gets a strict Content-Security-Policy (our
own stylesheet, no scripts at all, no framing, forms only to ourselves),
``X-Frame-Options: DENY``, ``nosniff``, no referrer and HSTS; pages are
``no-store`` so a shared machine's back button shows nothing after logout.
Cookies are ``__Host-`` prefixed: Secure, Path=/, no Domain - plus HttpOnly and
SameSite=Strict.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from bootstrap.web.middleware import HttpMiddleware

__all__ = ["CSP", "PRE_COOKIE", "SESSION_COOKIE", "SecurityHeadersMiddleware", "clear_cookie", "set_cookie"]

CSP = ("default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; object-src 'none';"
       " base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SESSION_COOKIE = "__Host-dmboot-session"
#: Before login: an anonymous cookie the login and claim forms' CSRF tokens derive from.
PRE_COOKIE = "__Host-dmboot-pre"
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=31536000"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeadersMiddleware(HttpMiddleware):
    """Adds the console's security headers; HTML responses also get ``Cache-Control: no-store``."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [h for h in _HEADERS if h[0] not in present]
                content_type = dict(headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html") and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    """Set a console cookie: Secure, HttpOnly, SameSite=Strict, Path=/ (``__Host-``)."""
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict")


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")
