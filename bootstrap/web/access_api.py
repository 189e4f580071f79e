"""Admin API for access control and the audit trail: admins, API tokens, audit events.

Every change here needs ``roles:manage`` (DM-AZ-001: separate from every data
permission); reading the audit trail needs ``audit:read``. Handlers parse,
authorize, call one service and render; the role rules themselves live in
bootstrap/services/admins/.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap.errors import InvalidRequest, UnsupportedMediaType
from bootstrap.runtime import Runtime
from bootstrap.services.audit_query import AuditFilter, event_json, search_events
from bootstrap.services.audit_verify import verify_chain
from bootstrap.web.auth import authorize
from bootstrap.web.openapi import API_PREFIX, operation
from bootstrap.web.params import SEQ_MAX, bounded_int, optional_int_param, page_limit

#: API tokens live at most 100 years; a factory line's quota fits a 32-bit column.
TTL_DAYS_MAX = 36_500
QUOTA_MAX = 2**31 - 1

__all__ = ["read_json", "routes"]

_ROLES = {"type": "array", "items": {"type": "string",
                                     "enum": ["security-admin", "provisioning-admin", "factory-line", "auditor"]}}
#: Roles in a request: at least one (an admin or token with no role could do nothing; the code refuses it).
_ROLES_GIVEN = {**_ROLES, "minItems": 1, "uniqueItems": True}
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


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else None


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        UnsupportedMediaType: not application/json.
        InvalidRequest: not a JSON object.
    """
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _strings(body: dict[str, Any], key: str, *, required: bool = True) -> list[str]:
    value = body.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{key} must be a list of strings", field=key)
    return value


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{key} is required (a string)", field=key)
    return value


# -- admins ------------------------------------------------------------------------------


@operation(permission="roles:manage", tags=["access"], responses={200: {"type": "array", "items": _ADMIN}})
async def list_admins(request: Request) -> Response:
    """List human admins and their roles."""
    await authorize(request, "roles:manage")
    return JSONResponse([a.as_json() for a in _runtime(request).admins.list_admins()])


@operation(permission="roles:manage", tags=["access"], responses={201: _ADMIN}, request={
    "type": "object", "required": ["username", "password", "roles"],
    "properties": {"username": {"type": "string"}, "password": {"type": "string", "minLength": 12},
                   "roles": _ROLES_GIVEN}})
async def create_admin(request: Request) -> Response:
    """Create a human admin."""
    principal = await authorize(request, "roles:manage")
    body = await read_json(request)
    username, password, roles = _string(body, "username"), _string(body, "password"), _strings(body, "roles")
    info = await run_in_threadpool(_runtime(request).admins.create, username, password, roles, actor=principal,
                                   request_id=_request_id(request))
    return JSONResponse(info.as_json(), status_code=201)


@operation(permission="roles:manage", tags=["access"], responses={200: _ADMIN})
async def get_admin(request: Request) -> Response:
    """One admin."""
    await authorize(request, "roles:manage")
    return JSONResponse(_runtime(request).admins.get(request.path_params["username"]).as_json())


@operation(permission="roles:manage", tags=["access"], responses={200: _ADMIN}, request={
    "type": "object", "properties": {"roles": _ROLES_GIVEN, "disabled": {"type": "boolean"}},
    "description": "roles replaces the admin's roles; disabled disables or re-enables the admin"})
async def update_admin(request: Request) -> Response:
    """Change an admin's roles or disable them.

    Nobody can add a role to themselves, and the last enabled security-admin keeps that role.
    """
    principal = await authorize(request, "roles:manage")
    body = await read_json(request)
    unknown = sorted(set(body) - {"roles", "disabled"})
    if unknown or not body:
        raise InvalidRequest("send roles and/or disabled", field=unknown[0] if unknown else None)
    admins, username, request_id = _runtime(request).admins, request.path_params["username"], _request_id(request)
    info = admins.get(username)
    if "roles" in body:
        info = admins.set_roles(username, _strings(body, "roles"), actor=principal, request_id=request_id)
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise InvalidRequest("disabled must be true or false", field="disabled")
        info = admins.set_disabled(username, body["disabled"], actor=principal, request_id=request_id)
    return JSONResponse(info.as_json())


# -- API tokens --------------------------------------------------------------------------


@operation(permission="roles:manage", tags=["access"], responses={200: {"type": "array", "items": _TOKEN}})
async def list_tokens(request: Request) -> Response:
    """List API tokens (never the tokens themselves)."""
    await authorize(request, "roles:manage")
    return JSONResponse(_runtime(request).tokens.describe_all())


@operation(permission="roles:manage", tags=["access"], request={
    "type": "object", "required": ["name", "roles"],
    "properties": {"name": {"type": "string"}, "roles": _ROLES_GIVEN,
                   "ttl_days": {"type": "integer", "minimum": 1, "maximum": TTL_DAYS_MAX},
                   "allowed_profiles": {"type": "array", "items": {"type": "string"}},
                   "device_quota": {"type": "integer", "minimum": 0, "maximum": QUOTA_MAX}}},
    responses={201: {"type": "object", "properties": {"name": {"type": "string"}, "token": {"type": "string"}},
                     "description": "the token, shown once"}})
async def create_token(request: Request) -> Response:
    """Create an API token; the response holds it once, only its hash is kept."""
    principal = await authorize(request, "roles:manage")
    body = await read_json(request)
    ttl_days, quota = body.get("ttl_days"), body.get("device_quota")
    if ttl_days is not None:
        ttl_days = bounded_int(ttl_days, "ttl_days", minimum=1, maximum=TTL_DAYS_MAX)
    if quota is not None:
        quota = bounded_int(quota, "device_quota", minimum=0, maximum=QUOTA_MAX)
    name = _string(body, "name")
    token = await run_in_threadpool(
        _runtime(request).tokens.create, name, _strings(body, "roles"), actor=principal.actor,
        ttl=timedelta(days=ttl_days) if ttl_days else None,
        allowed_profiles=_strings(body, "allowed_profiles", required=False), device_quota=quota)
    return JSONResponse({"name": name, "token": token}, status_code=201, headers={"Cache-Control": "no-store"})


@operation(permission="roles:manage", tags=["access"], responses={204: "revoked"})
async def revoke_token(request: Request) -> Response:
    """Revoke an API token."""
    principal = await authorize(request, "roles:manage")
    _runtime(request).tokens.revoke(request.path_params["name"], actor=principal.actor)
    return Response(status_code=204)


# -- audit -------------------------------------------------------------------------------

_AUDIT_PARAMS = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": text}
    for name, text in (("actor", "exact, or a prefix ending in *"), ("action", "exact, or a prefix ending in *"),
                       ("outcome", "success or failure"), ("target", "exact, or a prefix ending in *"),
                       ("since", "ISO 8601, inclusive"), ("until", "ISO 8601, exclusive"),
                       ("limit", "1-1000, default 100"), ("before", "seq: events older than this (paging)"))
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
    events = search_events(_runtime(request).database, where, limit=limit, before_seq=before)
    next_before = events[-1].seq if len(events) == min(limit, 1000) and events else None
    return JSONResponse({"events": [event_json(e) for e in events], "next_before": next_before})


@operation(permission="audit:read", tags=["audit"], responses={200: {"type": "object", "description":
                                                                    "ok, checked, head, problems"}})
async def verify_audit(request: Request) -> Response:
    """Verify the audit trail's hash chain; every problem names its row."""
    await authorize(request, "audit:read")
    report = await run_in_threadpool(verify_chain, _runtime(request).database)
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
