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
from bootstrap.web.console.context import off_loop
from bootstrap.web.console.security import SecurityHeadersMiddleware

__all__ = ["routes"]

_STATIC = Path(__file__).with_name("static")


async def _to_console(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=307)


def routes() -> list[BaseRoute]:
    headers = [Middleware(SecurityHeadersMiddleware)]
    console = [
        Route("/", off_loop(config_pages.dashboard), methods=["GET"]),
        Route("/login", off_loop(login.login_form), methods=["GET"]),
        Route("/login", off_loop(login.login_submit), methods=["POST"]),
        Route("/login/totp", off_loop(login.totp_form), methods=["GET"]),
        Route("/login/totp", off_loop(login.totp_submit), methods=["POST"]),
        Route("/login/certificate", off_loop(login.login_certificate), methods=["POST"]),
        Route("/logout", off_loop(login.logout), methods=["POST"]),
        Route("/cas", off_loop(config_pages.cas), methods=["GET"]),
        Route("/cas/manufacturers", off_loop(config_pages.maker_add), methods=["POST"]),
        Route("/cas/tpm", off_loop(config_pages.tpm_ca_add), methods=["POST"]),
        Route("/servers", off_loop(config_pages.servers), methods=["GET"]),
        Route("/servers", off_loop(config_pages.server_add), methods=["POST"]),
        Route("/repositories", off_loop(config_pages.repository_add), methods=["POST"]),
        Route("/profiles", off_loop(config_pages.profiles), methods=["GET"]),
        Route("/profiles", off_loop(config_pages.profile_save), methods=["POST"]),
        Route("/profiles/new", off_loop(config_pages.profile_new), methods=["GET"]),
        Route("/profiles/{name}", off_loop(config_pages.profile_edit), methods=["GET"]),
        Route("/profiles/{name}", off_loop(config_pages.profile_save), methods=["POST"]),
        Route("/devices", off_loop(device_pages.devices), methods=["GET"]),
        Route("/devices/{dev_id:path}/revoke", off_loop(device_pages.device_revoke), methods=["POST"]),
        Route("/devices/{dev_id:path}", off_loop(device_pages.device_detail), methods=["GET"]),
        Route("/certificates", off_loop(cert_pages.certificates), methods=["GET"]),
        Route("/certificates/{serial}/revoke", off_loop(cert_pages.certificate_revoke), methods=["POST"]),
        Route("/claim-codes", off_loop(device_pages.claim_codes), methods=["GET"]),
        Route("/claim-codes", off_loop(device_pages.claim_code_create), methods=["POST"]),
        Route("/audit", off_loop(access_pages.audit), methods=["GET"]),
        Route("/audit/verify", off_loop(access_pages.audit_verify), methods=["GET"]),
        Route("/audit/export", off_loop(access_pages.audit_export), methods=["GET"]),
        Route("/tokens", off_loop(token_pages.tokens), methods=["GET"]),
        Route("/tokens", off_loop(token_pages.token_create), methods=["POST"]),
        Route("/tokens/{name}/revoke", off_loop(token_pages.token_revoke), methods=["POST"]),
        Route("/admins", off_loop(access_pages.admins), methods=["GET"]),
        Route("/admins", off_loop(access_pages.admin_create), methods=["POST"]),
        Route("/admins/{username}/roles", off_loop(access_pages.admin_roles), methods=["POST"]),
        Route("/admins/{username}/disabled", off_loop(access_pages.admin_toggle), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(_STATIC)), name="console-static"),
    ]
    subscriber = [
        Route("/", off_loop(subscriber_pages.claim_form), methods=["GET"]),
        Route("/claim", off_loop(subscriber_pages.claim_submit), methods=["POST"]),
        Route("/device", off_loop(subscriber_pages.device_page), methods=["GET"]),
        Route("/device/server", off_loop(subscriber_pages.server_save), methods=["POST"]),
        Route("/device/packages", off_loop(subscriber_pages.packages_save), methods=["POST"]),
        Route("/leave", off_loop(subscriber_pages.leave), methods=["POST"]),
    ]
    return [
        Route("/console", _to_console, methods=["GET"]),
        Mount("/console", routes=console, middleware=headers),
        Mount("/subscriber", routes=subscriber, middleware=headers),
    ]
