"""Console page for API tokens (Bearer): list, create (shown once), revoke."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bootstrap.auth.permissions import ROLES
from bootstrap.errors import Conflict, InvalidRequest
from bootstrap.web.console.context import ConsoleUser, page, render, runtime_of

__all__ = ["token_create", "token_revoke", "tokens"]


def _listing(request: Request, user: ConsoleUser, status_code: int = 200, **extra: object) -> Response:
    found = runtime_of(request).tokens.describe_all()
    return render(request, "tokens.html", user, status_code=status_code, tokens=found, roles=sorted(ROLES),
                  revoked=request.query_params.get("revoked", ""), **extra)


@page("roles:manage")
async def tokens(request: Request, user: ConsoleUser) -> Response:
    """Every API token: roles, profiles, quota, expiry, last use, state (never the token)."""
    return _listing(request, user)


@page("roles:manage")
async def token_create(request: Request, user: ConsoleUser) -> Response:
    """Create a token; the page that shows it is the only place it ever appears."""
    form = await request.form()
    name = str(form.get("name", "")).strip()
    days = str(form.get("ttl_days", "")).strip()
    profiles = [p.strip() for p in str(form.get("profiles", "")).split(",") if p.strip()]
    try:
        if days and not days.isdigit():
            raise InvalidRequest("days must be a whole number", field="ttl_days")
        if not name:
            raise InvalidRequest("a token needs a name", field="name")
        token = runtime_of(request).tokens.create(
            name, [str(r) for r in form.getlist("roles")], actor=user.principal.actor,
            ttl=timedelta(days=int(days)) if days else None, allowed_profiles=profiles or None)
    except (InvalidRequest, Conflict) as exc:
        return _listing(request, user, status_code=400, error=exc.message, values=dict(form))
    response = render(request, "token_created.html", user, name=name, token=token)
    response.headers["Cache-Control"] = "no-store"
    return response


@page("roles:manage")
async def token_revoke(request: Request, user: ConsoleUser) -> Response:
    """Revoke a token by name."""
    name = request.path_params["name"]
    runtime_of(request).tokens.revoke(name, actor=user.principal.actor)
    return RedirectResponse(f"/console/tokens?revoked={name}", status_code=303)
