"""The admin JSON API under ``/api/v1``: thin handlers over the config and device services.

Every route needs ``Authorization: Bearer <API token>`` with the permission named
in :func:`routes`; bodies are ``application/json`` (415 otherwise, 400 when
malformed); errors are problem+json (bootstrap.web.problems). docs/api.md lists
every route with examples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from cryptography import x509
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap.auth.principals import Principal
from bootstrap.errors import InvalidRequest, UnsupportedMediaType
from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from bootstrap.store.models import DataRepositoryRow, DmServerRow, ManufacturerCaRow
from bootstrap.web.auth import authorize
from bootstrap.web.params import TTL_SECONDS_MAX, bounded_int, int_param, page_limit
from bootstrap.web.problems import MethodNotAllowed
from pki.authority import IssuedCertificate, fingerprint

__all__ = ["JSON", "field", "media_type", "parse_json", "read_json", "request_id", "routes"]

JSON = "application/json"
T = TypeVar("T")


# -- request helpers ---------------------------------------------------------------------


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower-cased."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_json(content_type: str, body: bytes) -> Any:
    """Decode a JSON body, refusing other media types (415) and malformed JSON (400)."""
    if content_type != JSON:
        raise UnsupportedMediaType(f"send the body as {JSON}, not {content_type or 'no Content-Type'}",
                                   field="content-type")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"malformed JSON: {exc}", field="body") from None


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object."""
    document = parse_json(media_type(request), await request.body())
    if not isinstance(document, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    return document


def request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else None


def field(body: dict[str, Any], key: str, kind: type[T], *, required: bool = False) -> T | None:
    """``body[key]`` if it is a ``kind`` (None when absent and not required)."""
    if key not in body or body[key] is None:
        if required:
            raise InvalidRequest(f"{key} is required", field=key)
        return None
    value = body[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequest(f"{key} must be of type {kind.__name__}", field=key)
    return value


def _required(body: dict[str, Any], key: str) -> str:
    value = field(body, key, str, required=True)
    assert value is not None  # noqa: S101 - field() raised otherwise
    return value


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _call(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (blocking) service call off the event loop."""
    return await run_in_threadpool(func, *args, **kwargs)


# -- renderers ---------------------------------------------------------------------------


def _server_json(row: DmServerRow | DataRepositoryRow) -> dict[str, Any]:
    ident = {"server_id": row.server_id} if isinstance(row, DmServerRow) else {}
    anchor = x509.load_pem_x509_certificate(row.trust_anchor_pem.encode()) if row.trust_anchor_pem else None
    return {**ident, "name": row.name, "url": row.url, "trust_anchor_pem": row.trust_anchor_pem,
            "trust_anchor": fingerprint(anchor) if anchor else "root", "created_at": row.created_at.isoformat()}


def _maker_json(row: ManufacturerCaRow) -> dict[str, Any]:
    cert = x509.load_pem_x509_certificate(row.pem.encode())
    return {"name": row.name, "fingerprint": row.fingerprint, "subject": cert.subject.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat(), "enabled": row.enabled, "pem": row.pem,
            "created_at": row.created_at.isoformat()}


def _issued_json(issued: IssuedCertificate) -> dict[str, Any]:
    return {"serial": issued.serial_hex, "profile": issued.profile, "fingerprint": issued.fingerprint,
            "subject": issued.certificate.subject.rfc4514_string(),
            "not_after": issued.certificate.not_valid_after_utc.isoformat(), "certificate_chain_pem": issued.chain_pem}


def _created(data: Any) -> JSONResponse:
    return JSONResponse(data, status_code=201)


# -- DM servers and data repositories ----------------------------------------------------


async def list_servers(request: Request) -> Response:
    """List DM servers."""
    await authorize(request, "config:read")
    return JSONResponse([_server_json(r) for r in await _call(_runtime(request).config.list_servers)])


async def create_server(request: Request) -> Response:
    """Register a DM server: ``{server_id, name?, url, trust_anchor_pem?}``."""
    principal = await authorize(request, "config:write")
    body = await read_json(request)
    row = await _call(_runtime(request).config.add_server, _required(body, "server_id"),
                      field(body, "name", str) or "", _required(body, "url"), field(body, "trust_anchor_pem", str),
                      actor=principal.actor)
    return _created(_server_json(row))


async def get_server(request: Request) -> Response:
    """One DM server."""
    await authorize(request, "config:read")
    return JSONResponse(_server_json(await _call(_runtime(request).config.get_server, request.path_params["id"])))


async def delete_server(request: Request) -> Response:
    """Remove a DM server no profile or device uses."""
    principal = await authorize(request, "config:write")
    await _call(_runtime(request).config.delete_server, request.path_params["id"], actor=principal.actor)
    return Response(status_code=204)


async def list_repositories(request: Request) -> Response:
    """List data repositories."""
    await authorize(request, "config:read")
    return JSONResponse([_server_json(r) for r in await _call(_runtime(request).config.list_repositories)])


async def create_repository(request: Request) -> Response:
    """Register a data repository: ``{name, url, trust_anchor_pem?}``."""
    principal = await authorize(request, "config:write")
    body = await read_json(request)
    row = await _call(_runtime(request).config.add_repository, _required(body, "name"), _required(body, "url"),
                      field(body, "trust_anchor_pem", str), actor=principal.actor)
    return _created(_server_json(row))


async def get_repository(request: Request) -> Response:
    """One data repository."""
    await authorize(request, "config:read")
    row = await _call(_runtime(request).config.get_repository, request.path_params["id"])
    return JSONResponse(_server_json(row))


async def delete_repository(request: Request) -> Response:
    """Remove a data repository no profile uses."""
    principal = await authorize(request, "config:write")
    await _call(_runtime(request).config.delete_repository, request.path_params["id"], actor=principal.actor)
    return Response(status_code=204)


async def _issue(request: Request, kind: str, principal: Principal) -> Response:
    body = await read_json(request)
    issued = await _call(_runtime(request).config.issue_server_certificate, kind, request.path_params["id"],
                         _required(body, "csr"), actor=principal.actor, request_id=request_id(request))
    return _created(_issued_json(issued))


async def issue_server_certificate(request: Request) -> Response:
    """Issue the DM server's TLS certificate for ``{csr}`` (profile dm-server, SAN: the host of its URL)."""
    return await _issue(request, "dm-server", await authorize(request, "config:write"))


async def issue_repository_certificate(request: Request) -> Response:
    """Issue the repository's TLS certificate for ``{csr}`` (profile data-repository, SAN: its host)."""
    return await _issue(request, "data-repository", await authorize(request, "config:write"))


# -- enrollment profiles and group keys ---------------------------------------------------


async def list_profiles(request: Request) -> Response:
    """List enrollment profiles."""
    await authorize(request, "config:read")
    return JSONResponse([v.to_json() for v in await _call(_runtime(request).config.list_profiles)])


async def create_profile(request: Request) -> Response:
    """Create an enrollment profile (validated: servers, repositories, methods, key types, MOs)."""
    principal = await authorize(request, "config:write")
    spec = ProfileSpec.from_json(await read_json(request))
    return _created((await _call(_runtime(request).config.add_profile, spec, actor=principal.actor)).to_json())


async def get_profile(request: Request) -> Response:
    """One enrollment profile."""
    await authorize(request, "config:read")
    return JSONResponse((await _call(_runtime(request).config.get_profile, request.path_params["name"])).to_json())


async def replace_profile(request: Request) -> Response:
    """Replace an enrollment profile's settings (its group key stays)."""
    principal = await authorize(request, "config:write")
    body = await read_json(request)
    if body.setdefault("name", request.path_params["name"]) != request.path_params["name"]:
        raise InvalidRequest("the name in the body differs from the URL; profiles cannot be renamed", field="name")
    spec = ProfileSpec.from_json(body)
    return JSONResponse((await _call(_runtime(request).config.update_profile, spec, actor=principal.actor)).to_json())


async def delete_profile(request: Request) -> Response:
    """Remove a profile no device or token uses."""
    principal = await authorize(request, "config:write")
    await _call(_runtime(request).config.delete_profile, request.path_params["name"], actor=principal.actor)
    return Response(status_code=204)


async def create_group_key(request: Request) -> Response:
    """Create the profile's group key in the secret store; returns its reference only."""
    principal = await authorize(request, "config:write")
    name = request.path_params["name"]
    ref = await _call(_runtime(request).devices.create_group_key, name, actor=principal.actor)
    return _created({"profile": name, "ref": ref})


async def export_device_keys(request: Request) -> Response:
    """Device keys HMAC-SHA256(group key, DevID) for ``{dev_ids: [...]}``; audited."""
    principal = await authorize(request, "devices:write")
    dev_ids = field(await read_json(request), "dev_ids", list, required=True) or []
    if not all(isinstance(d, str) for d in dev_ids):
        raise InvalidRequest("dev_ids must be a list of strings", field="dev_ids")
    keys = await _call(_runtime(request).devices.export_device_keys, request.path_params["name"], dev_ids,
                       actor=principal.actor)
    return JSONResponse({"profile": request.path_params["name"], "algorithm": "HMAC-SHA256(group key, DevID)",
                         "keys": keys})


# -- devices and enrollment tokens ------------------------------------------------------


async def list_devices(request: Request) -> Response:
    """List or search devices: ``?q=&status=&profile=&limit=&offset=``."""
    await authorize(request, "devices:read")
    params = request.query_params
    views = await _call(_runtime(request).devices.search, q=params.get("q"), status=params.get("status"),
                        profile=params.get("profile"), limit=page_limit(request),
                        offset=int_param(request, "offset", 0))
    return JSONResponse([v.to_json() for v in views])


async def register_device(request: Request) -> Response:
    """Register a device: ``{dev_id, profile, idevid_fingerprint?, dm_server?}``."""
    principal = await authorize(request, "devices:write")
    body = await read_json(request)
    view = await _call(_runtime(request).devices.register, _required(body, "dev_id"), _required(body, "profile"),
                       idevid_fingerprint=field(body, "idevid_fingerprint", str),
                       dm_server=field(body, "dm_server", str), actor=principal.actor)
    return _created(view.to_json())


async def get_device(request: Request) -> Response:
    """One device, with the MOs and features it declared (DM-HLF-008)."""
    await authorize(request, "devices:read")
    return JSONResponse((await _call(_runtime(request).devices.get, request.path_params["dev_id"])).to_json())


async def update_device(request: Request) -> Response:
    """Block (``status: blocked``), re-admit (``registered``), or choose the DM server."""
    if str(request.path_params["dev_id"]).endswith(("/readmit", "/revoke")):
        raise MethodNotAllowed("POST")  # the device's actions, not a device named ".../readmit"
    principal = await authorize(request, "devices:write")
    body = await read_json(request)
    view = await _call(_runtime(request).devices.update, request.path_params["dev_id"],
                       status=field(body, "status", str), dm_server=field(body, "dm_server", str),
                       idevid_fingerprint=field(body, "idevid_fingerprint", str), actor=principal.actor)
    return JSONResponse(view.to_json())


async def list_tokens(request: Request) -> Response:
    """List enrollment tokens without their secrets."""
    await authorize(request, "devices:read")
    params = request.query_params
    views = await _call(_runtime(request).devices.list_tokens, profile=params.get("profile"),
                        dev_id=params.get("dev_id"), limit=page_limit(request),
                        offset=int_param(request, "offset", 0))
    return JSONResponse([v.to_json() for v in views])


async def create_token(request: Request) -> Response:
    """Create a one-time enrollment token ``{profile?, dev_id?, ttl_seconds?}``; shown once."""
    principal = await authorize(request, "devices:write")
    body = await read_json(request)
    raw_ttl = field(body, "ttl_seconds", int)
    ttl = None if raw_ttl is None else bounded_int(raw_ttl, "ttl_seconds", minimum=1, maximum=TTL_SECONDS_MAX)
    view, token = await _call(_runtime(request).devices.create_token, profile=field(body, "profile", str),
                              dev_id=field(body, "dev_id", str),
                              ttl=timedelta(seconds=ttl) if ttl is not None else timedelta(days=7),
                              actor=principal.actor)
    return _created({**view.to_json(), "token": token})


# -- manufacturer CAs --------------------------------------------------------------------


async def list_makers(request: Request) -> Response:
    """List trusted manufacturer CAs."""
    await authorize(request, "ca:read")
    return JSONResponse([_maker_json(r) for r in await _call(_runtime(request).config.list_manufacturer_cas)])


async def add_maker(request: Request) -> Response:
    """Trust a manufacturer CA for IDevID attestation: ``{name, pem}``."""
    principal = await authorize(request, "ca:manage")
    body = await read_json(request)
    row = await _call(_runtime(request).config.add_manufacturer_ca, _required(body, "name"), _required(body, "pem"),
                      actor=principal.actor)
    return _created(_maker_json(row))


async def update_maker(request: Request) -> Response:
    """Enable or disable a manufacturer CA: ``{enabled}``."""
    principal = await authorize(request, "ca:manage")
    enabled = field(await read_json(request), "enabled", bool, required=True)
    row = await _call(_runtime(request).config.set_manufacturer_ca_enabled, request.path_params["name"],
                      bool(enabled), actor=principal.actor)
    return JSONResponse(_maker_json(row))


def routes() -> list[Route]:
    """The admin API; each handler names the permission it needs."""
    base = "/api/v1"
    return [
        Route(f"{base}/dm-servers", list_servers, methods=["GET"]),
        Route(f"{base}/dm-servers", create_server, methods=["POST"]),
        Route(f"{base}/dm-servers/{{id}}", get_server, methods=["GET"]),
        Route(f"{base}/dm-servers/{{id}}", delete_server, methods=["DELETE"]),
        Route(f"{base}/dm-servers/{{id}}/certificate", issue_server_certificate, methods=["POST"]),
        Route(f"{base}/data-repositories", list_repositories, methods=["GET"]),
        Route(f"{base}/data-repositories", create_repository, methods=["POST"]),
        Route(f"{base}/data-repositories/{{id}}", get_repository, methods=["GET"]),
        Route(f"{base}/data-repositories/{{id}}", delete_repository, methods=["DELETE"]),
        Route(f"{base}/data-repositories/{{id}}/certificate", issue_repository_certificate, methods=["POST"]),
        Route(f"{base}/profiles", list_profiles, methods=["GET"]),
        Route(f"{base}/profiles", create_profile, methods=["POST"]),
        Route(f"{base}/profiles/{{name}}", get_profile, methods=["GET"]),
        Route(f"{base}/profiles/{{name}}", replace_profile, methods=["PUT"]),
        Route(f"{base}/profiles/{{name}}", delete_profile, methods=["DELETE"]),
        Route(f"{base}/profiles/{{name}}/group-key", create_group_key, methods=["POST"]),
        Route(f"{base}/profiles/{{name}}/group-key/export", export_device_keys, methods=["POST"]),
        Route(f"{base}/devices", list_devices, methods=["GET"]),
        Route(f"{base}/devices", register_device, methods=["POST"]),
        Route(f"{base}/devices/{{dev_id:path}}", get_device, methods=["GET"]),
        Route(f"{base}/devices/{{dev_id:path}}", update_device, methods=["PATCH"]),
        Route(f"{base}/enrollment-tokens", list_tokens, methods=["GET"]),
        Route(f"{base}/enrollment-tokens", create_token, methods=["POST"]),
        Route(f"{base}/manufacturer-cas", list_makers, methods=["GET"]),
        Route(f"{base}/manufacturer-cas", add_maker, methods=["POST"]),
        Route(f"{base}/manufacturer-cas/{{name}}", update_maker, methods=["PATCH"]),
    ]
