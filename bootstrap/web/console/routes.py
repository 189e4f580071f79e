"""The console's and the subscriber pages' routes, each mount behind the security headers."""

from __future__ import annotations

from pathlib import Path

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bootstrap.web.console import (
    access_pages,
    cert_pages,
    config_pages,
    device_pages,
    login,
    subscriber_pages,
    token_pages,
)
from bootstrap.web.console.security import SecurityHeadersMiddleware

__all__ = ["routes"]

_STATIC = Path(__file__).with_name("static")


async def _to_console(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=307)


def routes() -> list[BaseRoute]:
    headers = [Middleware(SecurityHeadersMiddleware)]
    console = [
        Route("/", config_pages.dashboard, methods=["GET"]),
        Route("/login", login.login_form, methods=["GET"]),
        Route("/login", login.login_submit, methods=["POST"]),
        Route("/login/totp", login.totp_form, methods=["GET"]),
        Route("/login/totp", login.totp_submit, methods=["POST"]),
        Route("/login/certificate", login.login_certificate, methods=["POST"]),
        Route("/logout", login.logout, methods=["POST"]),
        Route("/cas", config_pages.cas, methods=["GET"]),
        Route("/cas/manufacturers", config_pages.maker_add, methods=["POST"]),
        Route("/servers", config_pages.servers, methods=["GET"]),
        Route("/servers", config_pages.server_add, methods=["POST"]),
        Route("/repositories", config_pages.repository_add, methods=["POST"]),
        Route("/profiles", config_pages.profiles, methods=["GET"]),
        Route("/profiles", config_pages.profile_save, methods=["POST"]),
        Route("/profiles/new", config_pages.profile_new, methods=["GET"]),
        Route("/profiles/{name}", config_pages.profile_edit, methods=["GET"]),
        Route("/profiles/{name}", config_pages.profile_save, methods=["POST"]),
        Route("/devices", device_pages.devices, methods=["GET"]),
        Route("/devices/{dev_id:path}/revoke", device_pages.device_revoke, methods=["POST"]),
        Route("/devices/{dev_id:path}", device_pages.device_detail, methods=["GET"]),
        Route("/certificates", cert_pages.certificates, methods=["GET"]),
        Route("/certificates/{serial}/revoke", cert_pages.certificate_revoke, methods=["POST"]),
        Route("/claim-codes", device_pages.claim_codes, methods=["GET"]),
        Route("/claim-codes", device_pages.claim_code_create, methods=["POST"]),
        Route("/audit", access_pages.audit, methods=["GET"]),
        Route("/audit/verify", access_pages.audit_verify, methods=["GET"]),
        Route("/tokens", token_pages.tokens, methods=["GET"]),
        Route("/tokens", token_pages.token_create, methods=["POST"]),
        Route("/tokens/{name}/revoke", token_pages.token_revoke, methods=["POST"]),
        Route("/admins", access_pages.admins, methods=["GET"]),
        Route("/admins", access_pages.admin_create, methods=["POST"]),
        Route("/admins/{username}/roles", access_pages.admin_roles, methods=["POST"]),
        Route("/admins/{username}/disabled", access_pages.admin_toggle, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(_STATIC)), name="console-static"),
    ]
    subscriber = [
        Route("/", subscriber_pages.claim_form, methods=["GET"]),
        Route("/claim", subscriber_pages.claim_submit, methods=["POST"]),
        Route("/device", subscriber_pages.device_page, methods=["GET"]),
        Route("/device/server", subscriber_pages.server_save, methods=["POST"]),
        Route("/device/packages", subscriber_pages.packages_save, methods=["POST"]),
        Route("/leave", subscriber_pages.leave, methods=["POST"]),
    ]
    return [
        Route("/console", _to_console, methods=["GET"]),
        Mount("/console", routes=console, middleware=headers),
        Mount("/subscriber", routes=subscriber, middleware=headers),
    ]
