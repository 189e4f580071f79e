"""Subscriber self-service pages (use cases B.1, B.2): claim a device with its DevID and claim
code, choose its DM server, choose configuration packages for its next bootstrap.

No admin account: the claim code is the credential, and it opens a short
subscriber session limited to that one device (bootstrap/services/subscriber.py).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bootstrap.errors import AuthenticationFailed, DmBootstrapError, InvalidRequest, TooManyAttempts
from bootstrap.services.subscriber import SubscriberService
from bootstrap.web.console.context import form_text, pre_csrf, pre_csrf_ok, render, request_id, runtime_of
from bootstrap.web.console.csrf import csrf_token, csrf_valid
from bootstrap.web.console.security import SESSION_COOKIE, clear_cookie, set_cookie
from bootstrap.web.problems import status_of

__all__ = ["claim_form", "claim_submit", "device_page", "leave", "packages_save", "server_save"]


def _service(request: Request) -> SubscriberService:
    return SubscriberService(runtime_of(request).database)


def _session(request: Request) -> tuple[str, str] | None:
    """(session token, DevID) of a live subscriber session."""
    token = request.cookies.get(SESSION_COOKIE, "")
    info = runtime_of(request).sessions.lookup(token) if token else None
    if info is None or info.kind != "subscriber" or info.dev_id is None:
        return None
    return token, info.dev_id


async def claim_form(request: Request) -> Response:
    """Enter the DevID and the claim code printed on the device."""
    return pre_csrf(request, lambda token: render(request, "subscriber/claim.html", None, csrf=token))


async def claim_submit(request: Request) -> Response:
    """Check the claim code (not consuming it) and open a subscriber session for the device."""
    dev_id, code = await form_text(request, "dev_id"), await form_text(request, "code")
    if not await pre_csrf_ok(request):
        return render(request, "error.html", None, status_code=403, title="Forbidden",
                      message="The form expired; reload the page and try again.")
    try:
        dev_id = _service(request).claim(dev_id, code, request_id=request_id(request))
    except (AuthenticationFailed, InvalidRequest) as exc:
        status = 429 if isinstance(exc, TooManyAttempts) else status_of(exc)[0]
        message = exc.message
        return pre_csrf(request, lambda token: render(request, "subscriber/claim.html", None, csrf=token,
                                                      error=message, dev_id=dev_id, status_code=status))
    client = request.client.host if request.client else None
    response = RedirectResponse("/subscriber/device", status_code=303)
    set_cookie(response, SESSION_COOKIE, runtime_of(request).sessions.start_subscriber(dev_id, client=client))
    return response


def _device(request: Request, token: str, dev_id: str, *, error: str | None = None, saved: str | None = None,
            status_code: int = 200) -> Response:
    view = _service(request).view(dev_id)
    return render(request, "subscriber/device.html", None, csrf=csrf_token(token), device=view, error=error,
                  saved=saved, status_code=status_code)


async def device_page(request: Request) -> Response:
    """The claimed device: its management authority and configuration packages."""
    session = _session(request)
    if session is None:
        return RedirectResponse("/subscriber/", status_code=303)
    return _device(request, *session, saved=request.query_params.get("done"))


async def _change(request: Request, action: str) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/subscriber/", status_code=303)
    token, dev_id = session
    form = await request.form()
    if not csrf_valid(token, form.get("csrf")):
        return render(request, "error.html", None, status_code=403, title="Forbidden",
                      message="The form expired; reload the page and try again.")
    service = _service(request)
    try:
        if action == "server":
            service.choose_server(dev_id, str(form.get("server_id", "")), request_id=request_id(request))
        else:
            service.set_packages(dev_id, [str(p) for p in form.getlist("packages")], request_id=request_id(request))
    except DmBootstrapError as exc:
        return _device(request, token, dev_id, error=exc.message, status_code=status_of(exc)[0])
    return RedirectResponse(f"/subscriber/device?done={action}", status_code=303)


async def server_save(request: Request) -> Response:
    """Choose the DM server that will manage the device."""
    return await _change(request, "server")


async def packages_save(request: Request) -> Response:
    """Choose the configuration packages for the next bootstrap."""
    return await _change(request, "packages")


async def leave(request: Request) -> Response:
    """End the subscriber session."""
    session = _session(request)
    if session is not None and csrf_valid(session[0], await form_text(request, "csrf")):
        runtime_of(request).sessions.end(session[0])
    response = RedirectResponse("/subscriber/", status_code=303)
    clear_cookie(response, SESSION_COOKIE)
    return response
