"""Console pages for the audit trail (viewer with filters, chain check) and admins (roles:manage)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bootstrap.auth.permissions import ROLES
from bootstrap.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from bootstrap.services.audit_query import AuditFilter, search_events
from bootstrap.services.audit_verify import verify_chain
from bootstrap.web.console.context import ConsoleUser, page, render, request_id, runtime_of
from bootstrap.web.params import SEQ_MAX, optional_int_param

__all__ = ["admin_create", "admin_roles", "admin_toggle", "admins", "audit", "audit_verify"]

_PAGE = 100
_DONE = {"created": "Admin created.", "roles": "Roles changed.", "toggled": "Admin updated."}


@page("audit:read")
async def audit(request: Request, user: ConsoleUser) -> Response:
    """Audit events, newest first, filtered by actor, action, outcome, target and time."""
    params = {k: v for k, v in request.query_params.items() if v}
    error = None
    try:
        where = AuditFilter.parse(params)
    except InvalidRequest as exc:
        where, error = AuditFilter(), exc.message
    try:
        before = optional_int_param(request, "before", minimum=1, maximum=SEQ_MAX)
    except InvalidRequest as exc:
        before, error = None, exc.message
    events = search_events(runtime_of(request).database, where, limit=_PAGE, before_seq=before)
    more = events[-1].seq if len(events) == _PAGE else None
    query = "&".join(f"{k}={v}" for k, v in params.items() if k != "before")
    return render(request, "audit.html", user, events=events, filters=params, error=error, more=more, query=query)


@page("audit:read")
async def audit_verify(request: Request, user: ConsoleUser) -> Response:
    """Walk the hash chain now and show what is wrong, row by row."""
    report = await run_in_threadpool(verify_chain, runtime_of(request).database)
    return render(request, "audit_verify.html", user, report=report)


@page("roles:manage")
async def admins(request: Request, user: ConsoleUser) -> Response:
    """Admins and their roles."""
    return render(request, "admins.html", user, admins=runtime_of(request).admins.list_admins(),
                  roles=sorted(ROLES), done=_DONE.get(request.query_params.get("done", "")))


async def _admins_error(request: Request, user: ConsoleUser, message: str, status: int) -> Response:
    return render(request, "admins.html", user, status_code=status, admins=runtime_of(request).admins.list_admins(),
                  roles=sorted(ROLES), error=message)


@page("roles:manage")
async def admin_create(request: Request, user: ConsoleUser) -> Response:
    """Create an admin with a first password and roles."""
    form = await request.form()
    try:
        await run_in_threadpool(runtime_of(request).admins.create, str(form.get("username", "")).strip(),
                                str(form.get("password", "")), [str(r) for r in form.getlist("roles")],
                                actor=user.principal, request_id=request_id(request))
    except (InvalidRequest, Conflict, PermissionDenied) as exc:
        return await _admins_error(request, user, exc.message, 403 if isinstance(exc, PermissionDenied) else 400)
    return RedirectResponse("/console/admins?done=created", status_code=303)


@page("roles:manage")
async def admin_roles(request: Request, user: ConsoleUser) -> Response:
    """Replace an admin's roles (nobody adds to their own; the last security-admin stays)."""
    form = await request.form()
    try:
        runtime_of(request).admins.set_roles(request.path_params["username"], [str(r) for r in form.getlist("roles")],
                                             actor=user.principal, request_id=request_id(request))
    except (InvalidRequest, Conflict, PermissionDenied, NotFound) as exc:
        return await _admins_error(request, user, exc.message, 403 if isinstance(exc, PermissionDenied) else 409)
    return RedirectResponse("/console/admins?done=roles", status_code=303)


@page("roles:manage")
async def admin_toggle(request: Request, user: ConsoleUser) -> Response:
    """Disable or re-enable an admin."""
    form = await request.form()
    try:
        runtime_of(request).admins.set_disabled(request.path_params["username"], form.get("disabled") == "1",
                                                actor=user.principal, request_id=request_id(request))
    except (Conflict, PermissionDenied, NotFound) as exc:
        return await _admins_error(request, user, exc.message, 403 if isinstance(exc, PermissionDenied) else 409)
    return RedirectResponse("/console/admins?done=toggled", status_code=303)
