"""What every console page shares: who is logged in, the permission check, CSRF, rendering.

:func:`page` wraps a handler ``(request, user) -> Response``: it finds the session
(or redirects to the login page), checks the page's permission (a 403 page
otherwise), checks the CSRF token of every POST, and renders the project's errors
as an HTML page with the status the API would answer (bootstrap.web.problems).
The permission is also left on the endpoint for the OpenAPI-style role-matrix test.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from bootstrap.auth.principals import Principal
from bootstrap.errors import DmBootstrapError
from bootstrap.services.admins import AdminInfo
from bootstrap.web.common import request_id, runtime_of
from bootstrap.web.console.csrf import csrf_token, csrf_valid
from bootstrap.web.console.security import PRE_COOKIE, SESSION_COOKIE, set_cookie
from bootstrap.web.openapi import PERMISSION_ATTR
from bootstrap.web.problems import status_of
from pki.errors import PkiError

__all__ = ["ConsoleUser", "Handler", "form_text", "page", "pre_csrf", "render", "request_id", "runtime_of",
           "templates"]

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
Handler = Callable[[Request, "ConsoleUser"], Awaitable[Response]]
#: Pages shown in the navigation bar: (path, label, permission).
NAV = (
    ("/console/", "Dashboard", "ca:read"),
    ("/console/cas", "CAs & trust", "ca:read"),
    ("/console/servers", "Servers", "config:read"),
    ("/console/profiles", "Profiles", "config:read"),
    ("/console/devices", "Devices", "devices:read"),
    ("/console/certificates", "Certificates", "certs:read"),
    ("/console/claim-codes", "Claim codes", "devices:read"),
    ("/console/audit", "Audit", "audit:read"),
    ("/console/admins", "Admins", "roles:manage"),
    ("/console/tokens", "API tokens", "roles:manage"),
)


@dataclass(frozen=True)
class ConsoleUser:
    """The admin behind a console request."""

    admin: AdminInfo
    session_token: str

    @property
    def principal(self) -> Principal:
        return self.admin.principal

    @property
    def csrf(self) -> str:
        return csrf_token(self.session_token)

    def can(self, permission: str) -> bool:
        return self.principal.can(permission)


def render(request: Request, template: str, user: ConsoleUser | None, *, status_code: int = 200,
           **context: Any) -> Response:
    """Render ``template`` with the navigation the user may see and their CSRF token."""
    nav = [(path, label) for path, label, perm in NAV if user is not None and user.can(perm)]
    return templates.TemplateResponse(request, template, {
        "user": user, "nav": nav, "csrf": user.csrf if user else context.pop("csrf", ""), **context,
    }, status_code=status_code)


def current_user(request: Request) -> ConsoleUser | None:
    """The admin of the request's session cookie, if the session is live and complete."""
    token = request.cookies.get(SESSION_COOKIE, "")
    runtime = runtime_of(request)
    info = runtime.sessions.lookup(token) if token else None
    if info is None or info.kind != "admin" or info.stage != "active" or info.admin_id is None:
        return None
    admin = runtime.admins.by_id(info.admin_id)
    if admin is None or admin.disabled:
        return None
    return ConsoleUser(admin, token)


async def form_text(request: Request, name: str, default: str = "") -> str:
    """One text field of the posted form."""
    value = (await request.form()).get(name, default)
    return value if isinstance(value, str) else default


def pre_csrf(request: Request, response_factory: Callable[[str], Response]) -> Response:
    """Render a pre-login form: make the anonymous cookie if needed and pass its CSRF token."""
    pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(32)
    response = response_factory(csrf_token(pre))
    if request.cookies.get(PRE_COOKIE) != pre:
        set_cookie(response, PRE_COOKIE, pre)
    return response


async def pre_csrf_ok(request: Request) -> bool:
    """Whether a pre-login POST carries the CSRF token of its anonymous cookie."""
    return csrf_valid(request.cookies.get(PRE_COOKIE), (await request.form()).get("csrf"))


def error_page(request: Request, user: ConsoleUser | None, exc: DmBootstrapError | PkiError) -> Response:
    status, _, title = status_of(exc)
    return render(request, "error.html", user, status_code=status, title=title, message=exc.message)


def off_loop(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Run a page off the event loop: its sessions, database reads and scrypt checks block.

    The posted form is read on the loop first (it is I/O); then the page runs to its end in
    Starlette's threadpool, on an event loop of its own there (its ``await request.form()``
    returns the form already read).
    """

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            await request.form()
        async def whole() -> Response:
            return await handler(request)

        return await run_in_threadpool(asyncio.run, whole())

    return endpoint


def page(permission: str) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Make ``handler`` a console page needing ``permission``."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            user = current_user(request)
            if user is None:
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                return RedirectResponse(f"/console/login?next={target}", status_code=303)
            if not user.can(permission):
                return render(request, "error.html", user, status_code=403, title="Forbidden",
                              message=f"Your roles ({', '.join(user.admin.roles) or 'none'}) do not grant"
                                      f" {permission}.")
            if request.method == "POST" and not csrf_valid(user.session_token, (await request.form()).get("csrf")):
                return render(request, "error.html", user, status_code=403, title="Forbidden",
                              message="The form's security token is missing or stale; reload the page and retry.")
            try:
                return await handler(request, user)
            except (DmBootstrapError, PkiError) as exc:
                return error_page(request, user, exc)

        setattr(endpoint, PERMISSION_ATTR, permission)
        return endpoint

    return wrap
