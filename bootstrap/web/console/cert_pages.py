"""Console page for certificates: search by serial, fingerprint or DevID; revoke one by serial."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bootstrap.services.console_queries import search_certificates
from bootstrap.services.issuance import Requester
from bootstrap.web.console.context import ConsoleUser, page, render, request_id, runtime_of
from bootstrap.web.console.device_pages import REVOKE_REASONS

__all__ = ["certificate_revoke", "certificates"]

PAGE_SIZE = 50


@page("certs:read")
async def certificates(request: Request, user: ConsoleUser) -> Response:
    """Search certificates; pages of 50 with the total."""
    q = request.query_params.get("q", "").strip()
    offset = request.query_params.get("offset", "0")
    start = int(offset) if offset.isdigit() else 0
    rows, total = search_certificates(runtime_of(request).database, q, limit=PAGE_SIZE, offset=start)
    return render(request, "certificates.html", user, certs=rows, total=total, q=q, offset=start,
                  page_size=PAGE_SIZE, reasons=REVOKE_REASONS, revoked=request.query_params.get("revoked") == "1")


@page("certs:revoke")
async def certificate_revoke(request: Request, user: ConsoleUser) -> Response:
    """Revoke one certificate; the serial typed again confirms it."""
    form = await request.form()
    serial = request.path_params["serial"]
    if str(form.get("confirm", "")).strip().lower() != serial.lower():
        # The certificate again, nothing revoked, and what to type: not a bare error page.
        rows, total = search_certificates(runtime_of(request).database, serial, limit=PAGE_SIZE, offset=0)
        return render(request, "certificates.html", user, status_code=400, certs=rows, total=total, q=serial,
                      offset=0, page_size=PAGE_SIZE, reasons=REVOKE_REASONS, revoked=False, open_serial=serial,
                      error=f"Nothing was revoked: the confirmation did not match. Type the serial {serial} to"
                            " revoke it.")
    runtime_of(request).revocation.revoke_certificate(serial, str(form.get("reason", "unspecified")),
                                                      Requester(user.principal.actor, request_id(request)))
    return RedirectResponse(f"/console/certificates?q={serial}&revoked=1", status_code=303)
