"""Logging in and out: password, then a TOTP code when the admin has one; or a client certificate."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bootstrap.errors import AuthenticationFailed, TooManyAttempts
from bootstrap.services.admins import LoginResult
from bootstrap.web.console.context import (
    current_user,
    form_text,
    pre_csrf,
    pre_csrf_ok,
    render,
    request_id,
    runtime_of,
)
from bootstrap.web.console.csrf import csrf_token, csrf_valid
from bootstrap.web.console.security import SESSION_COOKIE, clear_cookie, set_cookie
from bootstrap.web.tls import client_certificate

__all__ = ["login_form", "login_submit", "login_certificate", "logout", "totp_form", "totp_submit"]


def _next(raw: str) -> str:
    """Only our own console paths: never another host (open redirect)."""
    if raw.startswith("/console/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/console/"


def _has_certificate(request: Request) -> bool:
    settings = runtime_of(request).settings
    return client_certificate(request, trusted_proxies=settings.trusted_proxies,
                              header=settings.client_cert_header) is not None


async def login_form(request: Request) -> Response:
    """The login page."""
    if current_user(request) is not None:
        return RedirectResponse("/console/", status_code=303)
    nxt = _next(request.query_params.get("next", ""))
    return pre_csrf(request, lambda token: render(request, "login.html", None, csrf=token, next=nxt,
                                                  certificate=_has_certificate(request)))


def _refused(request: Request, exc: AuthenticationFailed, nxt: str) -> Response:
    status = 429 if isinstance(exc, TooManyAttempts) else 401
    response = pre_csrf(request, lambda token: render(request, "login.html", None, csrf=token, next=nxt,
                                                      error=exc.message, status_code=status,
                                                      certificate=_has_certificate(request)))
    if isinstance(exc, TooManyAttempts):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _started(request: Request, result: LoginResult, nxt: str) -> Response:
    runtime = runtime_of(request)
    client = request.client.host if request.client else None
    stage = "totp" if result.needs_totp else "active"
    runtime.sessions.purge_expired()  # sessions nobody came back to; lookups remove the others
    token = runtime.sessions.start_admin(result.admin.id, stage=stage, client=client)
    target = f"/console/login/totp?next={nxt}" if result.needs_totp else nxt
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, SESSION_COOKIE, token)
    return response


async def login_submit(request: Request) -> Response:
    """Check the username and password."""
    nxt = _next(await form_text(request, "next"))
    if not await pre_csrf_ok(request):
        return render(request, "error.html", None, status_code=403, title="Forbidden",
                      message="The login form expired; reload the page and try again.")
    username, password = await form_text(request, "username"), await form_text(request, "password")
    try:
        result = await run_in_threadpool(runtime_of(request).admins.login, username.strip(), password,
                                         request_id=request_id(request))
    except AuthenticationFailed as exc:
        return _refused(request, exc, nxt)
    return _started(request, result, nxt)


async def login_certificate(request: Request) -> Response:
    """Log in with the client certificate presented in the TLS handshake."""
    nxt = _next(await form_text(request, "next"))
    if not await pre_csrf_ok(request):
        return render(request, "error.html", None, status_code=403, title="Forbidden",
                      message="The login form expired; reload the page and try again.")
    settings = runtime_of(request).settings
    certificate = client_certificate(request, trusted_proxies=settings.trusted_proxies,
                                     header=settings.client_cert_header)
    try:
        if certificate is None:
            raise AuthenticationFailed("your browser presented no client certificate")
        result = runtime_of(request).admins.login_certificate(certificate, request_id=request_id(request))
    except AuthenticationFailed as exc:
        return _refused(request, exc, nxt)
    return _started(request, result, nxt)


def _pending(request: Request) -> tuple[str, int] | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    info = runtime_of(request).sessions.lookup(token) if token else None
    if info is None or info.stage != "totp" or info.admin_id is None:
        return None
    return token, info.admin_id


async def totp_form(request: Request) -> Response:
    """Ask for the TOTP code after the password."""
    pending = _pending(request)
    if pending is None:
        return RedirectResponse("/console/login", status_code=303)
    nxt = _next(request.query_params.get("next", ""))
    return render(request, "totp.html", None, csrf=csrf_token(pending[0]), next=nxt)


async def totp_submit(request: Request) -> Response:
    """Check the TOTP code; on success the session is replaced by a complete one."""
    pending = _pending(request)
    if pending is None:
        return RedirectResponse("/console/login", status_code=303)
    token, admin_id = pending
    nxt = _next(await form_text(request, "next"))
    if not csrf_valid(token, await form_text(request, "csrf")):
        return render(request, "error.html", None, status_code=403, title="Forbidden",
                      message="The form expired; log in again.")
    runtime = runtime_of(request)
    admin = runtime.admins.by_id(admin_id)
    try:
        if admin is None:
            raise AuthenticationFailed("the account is gone")
        runtime.admins.verify_totp(admin.username, await form_text(request, "code"), request_id=request_id(request))
    except AuthenticationFailed as exc:
        status = 429 if isinstance(exc, TooManyAttempts) else 401
        return render(request, "totp.html", None, csrf=csrf_token(token), next=nxt, error=exc.message,
                      status_code=status)
    response = RedirectResponse(nxt, status_code=303)
    set_cookie(response, SESSION_COOKIE, runtime.sessions.promote(token))
    return response


async def logout(request: Request) -> Response:
    """End the session, on the server as well as in the browser.

    Without a valid CSRF token too: a forged logout only ends a session, while a
    logout that cleared the cookie and left the session valid would leave a stolen
    cookie working after the admin believed it dead.
    """
    user = current_user(request)
    if user is not None:
        runtime = runtime_of(request)
        runtime.sessions.end(user.session_token)
        runtime.admins.logout(user.admin.username, request_id=request_id(request))
    response = RedirectResponse("/console/login", status_code=303)
    clear_cookie(response, SESSION_COOKIE)
    return response
