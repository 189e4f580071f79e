"""Console pages for the audit trail (viewer with filters, chain check) and admins (roles:manage)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from bootstrap.auth.permissions import ROLES
from bootstrap.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from bootstrap.services.audit_query import AuditFilter, export_events, search_events
from bootstrap.services.audit_verify import verify_chain
from bootstrap.web.console.context import ConsoleUser, page, render, request_id, runtime_of
from bootstrap.web.params import SEQ_MAX, optional_int_param

__all__ = ["admin_create", "admin_roles", "admin_toggle", "admins", "audit", "audit_export", "audit_verify"]

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
    query = urlencode({k: v for k, v in params.items() if k not in ("before", "format")})
    return render(request, "audit.html", user, events=[(e, _detail(e.detail)) for e in events], filters=params,
                  error=error, more=more, query=query)


@page("audit:read")
async def audit_export(request: Request, user: ConsoleUser) -> Response:
    """The events the filters select, oldest first, as JSON lines or CSV (a download)."""
    params = {k: v for k, v in request.query_params.items() if v}
    kind = params.pop("format", "jsonl")
    if kind not in _EXPORTS:
        raise InvalidRequest("format must be jsonl or csv", field="format")
    lines = export_events(runtime_of(request).database, AuditFilter.parse(params))
    media_type, body = _EXPORTS[kind]
    return StreamingResponse(body(lines), media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="audit.{kind}"'})


def _detail(raw: str) -> list[tuple[str, str]]:
    """An event's detail as (key, text) pairs a person reads; JSON values stay JSON."""
    try:
        value = json.loads(raw)
    except ValueError:
        return [("", raw)] if raw else []
    if not isinstance(value, dict):
        return [("", json.dumps(value))]
    return [(k, v if isinstance(v, str) else json.dumps(v, separators=(", ", ": "))) for k, v in value.items()]


_CSV_COLUMNS = ("seq", "at", "actor", "action", "outcome", "target", "request_id", "detail", "hash")


def _csv(lines: Iterator[str]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_COLUMNS)
    for line in lines:
        event: dict[str, Any] = json.loads(line)
        event["detail"] = json.dumps(event["detail"], sort_keys=True)
        writer.writerow([_cell(event.get(c)) for c in _CSV_COLUMNS])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: DevIDs and targets come from outside (CWE-1236)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _jsonl(lines: Iterator[str]) -> Iterator[str]:
    return lines


_EXPORTS: dict[str, tuple[str, Callable[[Iterator[str]], Iterator[str]]]] = {
    "jsonl": ("application/jsonl", _jsonl), "csv": ("text/csv; charset=utf-8", _csv)}


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
