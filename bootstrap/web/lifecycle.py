"""Admin API for the certificate lifecycle: revoke, block and re-admit, expiry report.

=======  ==========================================  ===============  ================================
method   path                                        permission       body / query
=======  ==========================================  ===============  ================================
POST     /api/v1/certificates/{serial}/revoke        certs:revoke     {"reason": "keyCompromise"}
POST     /api/v1/devices/{dev_id}/revoke             certs:revoke     {"reason": ...}; blocks the device
POST     /api/v1/devices/{dev_id}/readmit            devices:write    -
POST     /api/v1/devices/{dev_id}/bootstrap-complete devices:bootstr. {"serial": hex}? - for DM servers
GET      /api/v1/certificates                        certs:read       ?expiring_within_days=N&limit=
=======  ==========================================  ===============  ================================

Reasons are RFC 5280 5.3.1 names (default ``unspecified``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap.body import NO_NUL
from bootstrap.services.issuance import Requester
from bootstrap.store.models import CertificateRow
from bootstrap.web.auth import authorize
from bootstrap.web.bodies import BootstrapCompleteBody, EmptyBody, RevokeBody
from bootstrap.web.common import read_model, request_id, runtime_of
from bootstrap.web.openapi import operation, request_body
from bootstrap.web.params import LIMIT_MAX, OFFSET_MAX, int_param, page_limit

__all__ = ["certificate_json", "routes"]

_OUTCOME = {"type": "object", "description": "what the revocation did", "properties": {
    "reason": {"type": "string"}, "revoked": {"type": "array", "items": {"type": "string"}},
    "already_revoked": {"type": "array", "items": {"type": "string"}},
    "blocked_devices": {"type": "array", "items": {"type": "string"}},
    "crl_numbers": {"type": "object", "additionalProperties": {"type": "integer"}}}}


@operation(permission="certs:revoke", tags=["certificates"], parameters=[
    {"name": "serial", "in": "path", "required": True, "description": "the serial number in hex",
     "schema": {"type": "string", "pattern": "^[0-9A-Fa-f]{1,40}$"}}],
           responses={200: _OUTCOME, 404: "no such certificate", 409: "revoked already"})
@request_body(RevokeBody, required=False)
async def revoke_certificate(request: Request) -> Response:
    """Revoke one certificate by serial (hex)."""
    principal = await authorize(request, "certs:revoke")
    reason = (await read_model(request, RevokeBody, optional=True)).reason
    outcome = await run_in_threadpool(runtime_of(request).revocation.revoke_certificate,
                                      str(request.path_params["serial"]), reason,
                                      Requester(principal.actor, request_id(request)))
    return JSONResponse(outcome.to_json())


@operation(permission="certs:revoke", tags=["devices"],
           responses={200: _OUTCOME, 404: "neither a device nor certificates with that DevID"})
@request_body(RevokeBody, required=False)
async def revoke_device(request: Request) -> Response:
    """Revoke every live certificate of a device and block it."""
    principal = await authorize(request, "certs:revoke")
    reason = (await read_model(request, RevokeBody, optional=True)).reason
    outcome = await run_in_threadpool(runtime_of(request).revocation.revoke_device,
                                      str(request.path_params["dev_id"]), reason,
                                      Requester(principal.actor, request_id(request)))
    return JSONResponse(outcome.to_json())


@operation(permission="devices:write", tags=["devices"],
           responses={200: "the device may enroll again", 404: "no such device", 409: "the device is not blocked"})
@request_body(EmptyBody, required=False)
async def readmit_device(request: Request) -> Response:
    """Let a blocked device enroll again."""
    principal = await authorize(request, "devices:write")
    await read_model(request, EmptyBody, optional=True)
    dev_id = str(request.path_params["dev_id"])
    await run_in_threadpool(runtime_of(request).revocation.readmit_device, dev_id,
                            Requester(principal.actor, request_id(request)))
    return JSONResponse({"dev_id": dev_id, "status": "registered"})


@operation(permission="devices:bootstrap-complete", tags=["devices"],
           responses={200: "the device is bootstrapped", 404: "no such device",
                      409: "the serial is not the device's current certificate"})
@request_body(BootstrapCompleteBody, required=False)
async def bootstrap_complete(request: Request) -> Response:
    """A DM server reports the BootstrapComplete alert of a device's first session (DM 2.0 package 1)."""
    principal = await authorize(request, "devices:bootstrap-complete")
    serial = (await read_model(request, BootstrapCompleteBody, optional=True)).serial
    dev_id = str(request.path_params["dev_id"])
    device = await run_in_threadpool(runtime_of(request).dm2.bootstrap_complete, dev_id, serial_hex=serial,
                                     request_id=request_id(request), actor=principal.actor)
    return JSONResponse({"dev_id": dev_id, "status": device.status})


@operation(permission="certs:read", tags=["certificates"], parameters=[
    {"name": "expiring_within_days", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 3650}},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 100, "minimum": 1,
                                                "maximum": LIMIT_MAX}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "default": 0, "minimum": 0,
                                                 "maximum": OFFSET_MAX}},
    {"name": "after", "in": "query", "description": "keyset cursor: next_after of the previous page",
     "schema": {"type": "integer", "minimum": 0, "maximum": OFFSET_MAX}},
    {"name": "profile", "in": "query", "schema": {"type": "string", "maxLength": 64, "pattern": NO_NUL}}])
async def list_certificates(request: Request) -> Response:
    """Certificates, newest first; with ``expiring_within_days``, valid ones expiring soonest first."""
    await authorize(request, "certs:read")
    runtime = runtime_of(request)
    limit = page_limit(request)
    days = request.query_params.get("expiring_within_days")
    if days is not None:
        within = int_param(request, "expiring_within_days", 0, maximum=36600)
        rows = await run_in_threadpool(runtime.revocation.expiring, within, limit=limit)
    else:
        after = request.query_params.get("after")
        rows = await run_in_threadpool(runtime.issuance.list, limit=limit, offset=int_param(request, "offset", 0),
                                       profile=request.query_params.get("profile"),
                                       after=int_param(request, "after", 0) if after is not None else None)
        if len(rows) == limit and rows and rows[-1].id is not None:
            return JSONResponse({"certificates": [certificate_json(r) for r in rows], "next_after": rows[-1].id})
    return JSONResponse({"certificates": [certificate_json(r) for r in rows]})




def certificate_json(row: CertificateRow) -> dict[str, Any]:
    """A certificate row as the API and ``dmboot cert --json`` show it."""
    return {"serial": row.serial_hex, "profile": row.profile, "subject": row.subject,
            "sans": json.loads(row.sans), "device_id": row.device_id, "key_type": row.key_type,
            "not_before": row.not_before.isoformat(), "not_after": row.not_after.isoformat(),
            "status": row.status, "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            "revocation_reason": row.revocation_reason, "fingerprint": row.fingerprint,
            "requested_by": row.requested_by, "superseded_by": row.superseded_by}


def routes() -> list[Route]:
    return [
        Route("/api/v1/certificates", list_certificates, methods=["GET"]),
        Route("/api/v1/certificates/{serial}/revoke", revoke_certificate, methods=["POST"]),
        Route("/api/v1/devices/{dev_id:path}/revoke", revoke_device, methods=["POST"]),
        Route("/api/v1/devices/{dev_id:path}/readmit", readmit_device, methods=["POST"]),
        Route("/api/v1/devices/{dev_id:path}/bootstrap-complete", bootstrap_complete, methods=["POST"]),
    ]
