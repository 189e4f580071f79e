"""Console pages for devices (search, detail, revoke) and claim codes (one-time enrollment tokens)."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bootstrap.errors import Conflict, InvalidRequest, NotFound
from bootstrap.services.console_queries import count_devices, device_certificates, device_history
from bootstrap.services.devices import DEVICE_STATUSES
from bootstrap.services.issuance import Requester
from bootstrap.web.console.context import ConsoleUser, page, render, request_id, runtime_of

__all__ = ["claim_code_create", "claim_codes", "device_detail", "device_revoke", "devices"]

#: Devices per page of the device list.
DEVICE_PAGE = 100

#: Reasons an operator picks from when revoking a device (RFC 5280 CRLReason names).
REVOKE_REASONS = ("keyCompromise", "cessationOfOperation", "affiliationChanged", "superseded",
                  "privilegeWithdrawn", "unspecified")


@page("devices:read")
async def devices(request: Request, user: ConsoleUser) -> Response:
    """Search devices by DevID, status and profile."""
    params = request.query_params
    q, status, profile = params.get("q", "").strip(), params.get("status", ""), params.get("profile", "")
    runtime = runtime_of(request)
    offset = int(params["offset"]) if params.get("offset", "").isdigit() else 0
    filters = {"q": q or None, "status": status or None, "profile": profile or None}
    found = runtime.devices.search(**filters, limit=DEVICE_PAGE, offset=offset)
    total = count_devices(runtime.database, **filters)
    return render(request, "devices.html", user, devices=found, q=q, status=status, profile=profile,
                  statuses=DEVICE_STATUSES, profiles=[p.row.name for p in runtime.config.list_profiles()],
                  total=total, offset=offset, page_size=DEVICE_PAGE)


@page("devices:read")
async def device_detail(request: Request, user: ConsoleUser) -> Response:
    """A device: status, certificates, declared MOs, audit history."""
    return _device_page(request, user, request.path_params["dev_id"])


def _device_page(request: Request, user: ConsoleUser, dev_id: str, *, error: str | None = None,
                 status_code: int = 200) -> Response:
    runtime = runtime_of(request)
    device = runtime.devices.get(dev_id)
    certs = device_certificates(runtime.database, dev_id)
    history = device_history(runtime.database, dev_id, [c.serial_hex for c in certs])
    return render(request, "device.html", user, device=device, certs=certs, history=history,
                  reasons=REVOKE_REASONS, revoked=request.query_params.get("done") == "revoked", error=error,
                  status_code=status_code)


@page("certs:revoke")
async def device_revoke(request: Request, user: ConsoleUser) -> Response:
    """Revoke every live certificate of the device and block it."""
    form = await request.form()
    dev_id = request.path_params["dev_id"]
    if str(form.get("confirm", "")).strip() != dev_id:
        # The device again, nothing revoked, and what to type: not a bare error page.
        return _device_page(request, user, dev_id, status_code=400,
                            error=f"Nothing was revoked: the confirmation did not match. Type the DevID {dev_id}"
                                  " to revoke its certificates and block it.")
    runtime_of(request).revocation.revoke_device(dev_id, str(form.get("reason", "unspecified")),
                                                 Requester(user.principal.actor, request_id(request)))
    return RedirectResponse(f"/console/devices/{dev_id}?done=revoked", status_code=303)


@page("devices:read")
async def claim_codes(request: Request, user: ConsoleUser) -> Response:
    """Claim codes (one-time enrollment tokens): state only; a code is shown once, when made."""
    runtime = runtime_of(request)
    return render(request, "claim_codes.html", user, tokens=runtime.devices.list_tokens(limit=200),
                  profiles=[p.row.name for p in runtime.config.list_profiles()])


@page("devices:write")
async def claim_code_create(request: Request, user: ConsoleUser) -> Response:
    """Make a claim code for a DevID (registering the device in the profile first if needed)."""
    form = await request.form()
    runtime = runtime_of(request)
    dev_id, profile = str(form.get("dev_id", "")).strip(), str(form.get("profile", ""))
    days = str(form.get("ttl_days", "30"))
    try:
        if not days.isdigit() or not 1 <= int(days) <= 366:
            raise InvalidRequest("the code lives 1 to 366 days", field="ttl_days")
        if not dev_id:
            raise InvalidRequest("a claim code is bound to one DevID", field="dev_id")
        try:
            runtime.devices.get(dev_id)
        except NotFound:
            runtime.devices.register(dev_id, profile, actor=user.principal.actor)
        view, code = runtime.devices.create_token(profile=profile or None, dev_id=dev_id,
                                                  ttl=timedelta(days=int(days)), actor=user.principal.actor)
    except (InvalidRequest, NotFound, Conflict) as exc:
        return render(request, "claim_codes.html", user, status_code=400,
                      tokens=runtime.devices.list_tokens(limit=200),
                      profiles=[p.row.name for p in runtime.config.list_profiles()],
                      error={"field": exc.field, "message": exc.message}, values=dict(form))
    response = render(request, "claim_code_created.html", user, token=view, code=code)
    response.headers["Cache-Control"] = "no-store"
    return response
