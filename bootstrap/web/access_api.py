"""Admin API for access control and the audit trail: admins, API tokens, audit events.

Every change here needs ``roles:manage`` (DM-AZ-001: separate from every data
permission); reading the audit trail needs ``audit:read``. Handlers parse,
authorize, call one service and render; the role rules themselves live in
bootstrap/services/admins/.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap.body import NO_NUL
from bootstrap.errors import InvalidRequest
from bootstrap.services.audit_query import AuditFilter, event_json, search_events
from bootstrap.services.audit_verify import verify_chain
from bootstrap.web.auth import authorize
from bootstrap.web.bodies import AdminBody, AdminUpdateBody, ApiTokenBody
from bootstrap.web.common import call, read_model, request_id, runtime_of
from bootstrap.web.openapi import API_PREFIX, operation, request_body
from bootstrap.web.params import LIMIT_MAX, SEQ_MAX, optional_int_param, page_limit

__all__ = ["routes"]

_ROLES = {"type": "array", "items": {"type": "string",
                                     "enum": ["security-admin", "provisioning-admin", "factory-line", "auditor"]}}
_ADMIN = {"type": "object", "properties": {
    "username": {"type": "string"}, "roles": _ROLES, "totp_enabled": {"type": "boolean"},
    "disabled": {"type": "boolean"}, "cert_fingerprint": {"type": ["string", "null"]},
    "created_by": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
    "last_login_at": {"type": ["string", "null"], "format": "date-time"}}}
_TOKEN = {"type": "object", "properties": {
    "name": {"type": "string"}, "roles": _ROLES, "allowed_profiles": {"type": "array", "items": {"type": "string"}},
    "device_quota": {"type": ["integer", "null"]}, "expires_at": {"type": ["string", "null"]},
    "revoked": {"type": "boolean"}, "created_by": {"type": "string"}, "created_at": {"type": "string"}}}
_EVENT = {"type": "object", "properties": {
    "seq": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}, "actor": {"type": "string"},
    "action": {"type": "string"}, "outcome": {"type": "string", "enum": ["success", "failure"]},
    "target": {"type": ["string", "null"]}, "request_id": {"type": ["string", "null"]}, "detail": {},
    "prev_hash": {"type": "string"}, "hash": {"type": "string"}}}


# -- admins ------------------------------------------------------------------------------


@operation(permission="roles:manage", tags=["access"], responses={200: {"type": "array", "items": _ADMIN}})
async def list_admins(request: Request) -> Response:
    """List human admins and their roles."""
    await authorize(request, "roles:manage")
    return JSONResponse([a.as_json() for a in runtime_of(request).admins.list_admins()])


@operation(permission="roles:manage", tags=["access"], responses={201: _ADMIN})
@request_body(AdminBody)
async def create_admin(request: Request) -> Response:
    """Create a human admin."""
    principal = await authorize(request, "roles:manage")
    body = await read_model(request, AdminBody)
    info = await call(runtime_of(request).admins.create, body.username, body.password, list(body.roles),
                      actor=principal, request_id=request_id(request))
    return JSONResponse(info.as_json(), status_code=201)


@operation(permission="roles:manage", tags=["access"], responses={200: _ADMIN})
async def get_admin(request: Request) -> Response:
    """One admin."""
    await authorize(request, "roles:manage")
    return JSONResponse(runtime_of(request).admins.get(request.path_params["username"]).as_json())


@operation(permission="roles:manage", tags=["access"], responses={200: _ADMIN})
@request_body(AdminUpdateBody)
async def update_admin(request: Request) -> Response:
    """Change an admin's roles or disable them.

    Nobody can add a role to themselves, and the last enabled security-admin keeps that role.
    """
    principal = await authorize(request, "roles:manage")
    body = await read_model(request, AdminUpdateBody)
    if body.roles is None and body.disabled is None:
        raise InvalidRequest("send roles and/or disabled", field="body")
    admins, username, rid = runtime_of(request).admins, request.path_params["username"], request_id(request)
    info = admins.get(username)
    if body.roles is not None:
        info = admins.set_roles(username, list(body.roles), actor=principal, request_id=rid)
    if body.disabled is not None:
        info = admins.set_disabled(username, body.disabled, actor=principal, request_id=rid)
    return JSONResponse(info.as_json())


# -- API tokens --------------------------------------------------------------------------


@operation(permission="roles:manage", tags=["access"], responses={200: {"type": "array", "items": _TOKEN}})
async def list_tokens(request: Request) -> Response:
    """List API tokens (never the tokens themselves)."""
    await authorize(request, "roles:manage")
    return JSONResponse(runtime_of(request).tokens.describe_all())


@operation(permission="roles:manage", tags=["access"],
           responses={201: {"type": "object", "properties": {"name": {"type": "string"}, "token": {"type": "string"}},
                            "description": "the token, shown once"}})
@request_body(ApiTokenBody)
async def create_token(request: Request) -> Response:
    """Create an API token; the response holds it once, only its hash is kept."""
    principal = await authorize(request, "roles:manage")
    body = await read_model(request, ApiTokenBody)
    token = await call(
        runtime_of(request).tokens.create, body.name, list(body.roles), actor=principal.actor,
        ttl=timedelta(days=body.ttl_days) if body.ttl_days else None, allowed_profiles=list(body.allowed_profiles),
        device_quota=body.device_quota)
    return JSONResponse({"name": body.name, "token": token}, status_code=201, headers={"Cache-Control": "no-store"})


@operation(permission="roles:manage", tags=["access"], responses={204: "revoked"})
async def revoke_token(request: Request) -> Response:
    """Revoke an API token."""
    principal = await authorize(request, "roles:manage")
    runtime_of(request).tokens.revoke(request.path_params["name"], actor=principal.actor)
    return Response(status_code=204)


# -- audit -------------------------------------------------------------------------------

_TEXT = {"type": "string", "maxLength": 256, "pattern": NO_NUL}
_AUDIT_PARAMS = [
    {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    for name, schema, text in (
        ("actor", _TEXT, "exact, or a prefix ending in *"), ("action", _TEXT, "exact, or a prefix ending in *"),
        ("outcome", {"type": "string", "enum": ["success", "failure"]}, "success or failure"),
        ("target", _TEXT, "exact, or a prefix ending in *"),
        ("since", {"type": "string", "format": "date-time"}, "ISO 8601, inclusive"),
        ("until", {"type": "string", "format": "date-time"}, "ISO 8601, exclusive"),
        ("limit", {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX}, "1-1000, default 100"),
        ("before", {"type": "integer", "minimum": 1, "maximum": SEQ_MAX}, "seq: events older than this (paging)"))
]




@operation(permission="audit:read", tags=["audit"], parameters=_AUDIT_PARAMS,
           responses={200: {"type": "object", "properties": {"events": {"type": "array", "items": _EVENT},
                                                            "next_before": {"type": ["integer", "null"]}}}})
async def list_audit(request: Request) -> Response:
    """Audit events, newest first, filtered."""
    await authorize(request, "audit:read")
    where = AuditFilter.parse(dict(request.query_params))
    limit = page_limit(request)
    before = optional_int_param(request, "before", minimum=1, maximum=SEQ_MAX)
    events = search_events(runtime_of(request).database, where, limit=limit, before_seq=before)
    next_before = events[-1].seq if len(events) == min(limit, 1000) and events else None
    return JSONResponse({"events": [event_json(e) for e in events], "next_before": next_before})


@operation(permission="audit:read", tags=["audit"], responses={200: {"type": "object", "description":
                                                                    "ok, checked, head, problems"}})
async def verify_audit(request: Request) -> Response:
    """Verify the audit trail's hash chain; every problem names its row."""
    await authorize(request, "audit:read")
    report = await run_in_threadpool(verify_chain, runtime_of(request).database)
    return JSONResponse(report.as_json())


def routes() -> list[Route]:
    return [
        Route(f"{API_PREFIX}/admins", list_admins, methods=["GET"]),
        Route(f"{API_PREFIX}/admins", create_admin, methods=["POST"]),
        Route(f"{API_PREFIX}/admins/{{username}}", get_admin, methods=["GET"]),
        Route(f"{API_PREFIX}/admins/{{username}}", update_admin, methods=["PATCH"]),
        Route(f"{API_PREFIX}/tokens", list_tokens, methods=["GET"]),
        Route(f"{API_PREFIX}/tokens", create_token, methods=["POST"]),
        Route(f"{API_PREFIX}/tokens/{{name}}", revoke_token, methods=["DELETE"]),
        Route(f"{API_PREFIX}/audit", list_audit, methods=["GET"]),
        Route(f"{API_PREFIX}/audit/verify", verify_audit, methods=["GET"]),
    ]
