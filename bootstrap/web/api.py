"""The admin JSON API under ``/api/v1``: thin handlers over the config and device services.

Every route needs ``Authorization: Bearer <API token>`` with the permission named
in :func:`routes`; bodies are ``application/json`` (415 otherwise, 400 when
malformed); errors are problem+json (bootstrap.web.problems). docs/api.md lists
every route with examples.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cryptography import x509
from pydantic import ValidationError
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootstrap.auth.principals import Principal
from bootstrap.errors import Conflict, NotFound
from bootstrap.services.profile_spec import ProfileBody, ProfileReplaceBody
from bootstrap.store.models import DataRepositoryRow, DmServerRow, ManufacturerCaRow
from bootstrap.web.auth import authorize
from bootstrap.web.bodies import (
    CsrBody,
    DeviceBody,
    DeviceKeysBody,
    DeviceUpdateBody,
    EmptyBody,
    EnrollmentTokenBody,
    MakerBody,
    MakerUpdateBody,
    RepositoryBody,
    ServerBody,
)
from bootstrap.web.common import call, read_model, request_id, runtime_of
from bootstrap.web.openapi import request_body
from bootstrap.web.params import int_param, page_limit
from pki.authority import IssuedCertificate, fingerprint

__all__ = ["routes"]


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
    return JSONResponse([_server_json(r) for r in await call(runtime_of(request).config.list_servers)])


@request_body(ServerBody)
async def create_server(request: Request) -> Response:
    """Register a DM server: ``{server_id, name?, url, trust_anchor_pem?}``."""
    principal = await authorize(request, "config:write")
    body = await read_model(request, ServerBody)
    row = await call(runtime_of(request).config.add_server, body.server_id, body.name, body.url,
                     body.trust_anchor_pem, actor=principal.actor)
    return _created(_server_json(row))


async def get_server(request: Request) -> Response:
    """One DM server."""
    await authorize(request, "config:read")
    return JSONResponse(_server_json(await call(runtime_of(request).config.get_server, request.path_params["id"])))


async def delete_server(request: Request) -> Response:
    """Remove a DM server no profile or device uses."""
    principal = await authorize(request, "config:write")
    await call(runtime_of(request).config.delete_server, request.path_params["id"], actor=principal.actor)
    return Response(status_code=204)


async def list_repositories(request: Request) -> Response:
    """List data repositories."""
    await authorize(request, "config:read")
    return JSONResponse([_server_json(r) for r in await call(runtime_of(request).config.list_repositories)])


@request_body(RepositoryBody)
async def create_repository(request: Request) -> Response:
    """Register a data repository: ``{name, url, trust_anchor_pem?}``."""
    principal = await authorize(request, "config:write")
    body = await read_model(request, RepositoryBody)
    row = await call(runtime_of(request).config.add_repository, body.name, body.url, body.trust_anchor_pem,
                     actor=principal.actor)
    return _created(_server_json(row))


async def get_repository(request: Request) -> Response:
    """One data repository."""
    await authorize(request, "config:read")
    row = await call(runtime_of(request).config.get_repository, request.path_params["id"])
    return JSONResponse(_server_json(row))


async def delete_repository(request: Request) -> Response:
    """Remove a data repository no profile uses."""
    principal = await authorize(request, "config:write")
    await call(runtime_of(request).config.delete_repository, request.path_params["id"], actor=principal.actor)
    return Response(status_code=204)


async def _issue(request: Request, kind: str, principal: Principal) -> Response:
    body = await read_model(request, CsrBody)
    issued = await call(runtime_of(request).config.issue_server_certificate, kind, request.path_params["id"],
                        body.csr, actor=principal.actor, request_id=request_id(request))
    return _created(_issued_json(issued))


@request_body(CsrBody)
async def issue_server_certificate(request: Request) -> Response:
    """Issue the DM server's TLS certificate for ``{csr}`` (profile dm-server, SAN: the host of its URL)."""
    return await _issue(request, "dm-server", await authorize(request, "config:write"))


@request_body(CsrBody)
async def issue_repository_certificate(request: Request) -> Response:
    """Issue the repository's TLS certificate for ``{csr}`` (profile data-repository, SAN: its host)."""
    return await _issue(request, "data-repository", await authorize(request, "config:write"))


# -- enrollment profiles and group keys ---------------------------------------------------


async def list_profiles(request: Request) -> Response:
    """List enrollment profiles."""
    await authorize(request, "config:read")
    return JSONResponse([v.to_json() for v in await call(runtime_of(request).config.list_profiles)])


@request_body(ProfileBody)
async def create_profile(request: Request) -> Response:
    """Create an enrollment profile (validated: servers, repositories, methods, key types, MOs)."""
    principal = await authorize(request, "config:write")
    spec = (await read_model(request, ProfileBody)).to_spec()
    return _created((await call(runtime_of(request).config.add_profile, spec, actor=principal.actor)).to_json())


async def get_profile(request: Request) -> Response:
    """One enrollment profile."""
    await authorize(request, "config:read")
    return JSONResponse((await call(runtime_of(request).config.get_profile, request.path_params["name"])).to_json())


@request_body(ProfileReplaceBody)
async def replace_profile(request: Request) -> Response:
    """Replace an enrollment profile's settings (its group key stays)."""
    principal = await authorize(request, "config:write")
    body = await read_model(request, ProfileReplaceBody)
    name = request.path_params["name"]
    if body.name not in (None, name):  # the body is fine; it asks what this resource cannot do
        raise Conflict("the name in the body differs from the URL; profiles cannot be renamed", field="name")
    try:
        spec = ProfileBody.model_validate({**body.model_dump(), "name": name}).to_spec()
    except ValidationError:  # the body was valid: the name in the URL is none a profile can have
        raise NotFound(f"no enrollment profile {name!r}", field="profile") from None
    return JSONResponse((await call(runtime_of(request).config.update_profile, spec, actor=principal.actor)).to_json())


async def delete_profile(request: Request) -> Response:
    """Remove a profile no device or token uses."""
    principal = await authorize(request, "config:write")
    await call(runtime_of(request).config.delete_profile, request.path_params["name"], actor=principal.actor)
    return Response(status_code=204)


@request_body(EmptyBody, required=False)
async def create_group_key(request: Request) -> Response:
    """Create the profile's group key in the secret store; returns its reference only."""
    principal = await authorize(request, "config:write")
    name = request.path_params["name"]
    await read_model(request, EmptyBody, optional=True)
    ref = await call(runtime_of(request).devices.create_group_key, name, actor=principal.actor)
    return _created({"profile": name, "ref": ref})


@request_body(DeviceKeysBody)
async def export_device_keys(request: Request) -> Response:
    """Device keys HMAC-SHA256(group key, DevID) for ``{dev_ids: [...]}``; audited."""
    principal = await authorize(request, "devices:write")
    dev_ids = (await read_model(request, DeviceKeysBody)).dev_ids
    keys = await call(runtime_of(request).devices.export_device_keys, request.path_params["name"], dev_ids,
                       actor=principal.actor)
    return JSONResponse({"profile": request.path_params["name"], "algorithm": "HMAC-SHA256(group key, DevID)",
                         "keys": keys})


# -- devices and enrollment tokens ------------------------------------------------------


async def list_devices(request: Request) -> Response:
    """List or search devices: ``?q=&status=&profile=&limit=&offset=``."""
    await authorize(request, "devices:read")
    params = request.query_params
    views = await call(runtime_of(request).devices.search, q=params.get("q"), status=params.get("status"),
                        profile=params.get("profile"), limit=page_limit(request),
                        offset=int_param(request, "offset", 0))
    return JSONResponse([v.to_json() for v in views])


@request_body(DeviceBody)
async def register_device(request: Request) -> Response:
    """Register a device: ``{dev_id, profile, idevid_fingerprint?, dm_server?}``."""
    principal = await authorize(request, "devices:write")
    body = await read_model(request, DeviceBody)
    view = await call(runtime_of(request).devices.register, body.dev_id, body.profile,
                      idevid_fingerprint=body.idevid_fingerprint, dm_server=body.dm_server, actor=principal.actor)
    return _created(view.to_json())


async def get_device(request: Request) -> Response:
    """One device, with the MOs and features it declared (DM-HLF-008)."""
    await authorize(request, "devices:read")
    return JSONResponse((await call(runtime_of(request).devices.get, request.path_params["dev_id"])).to_json())


@request_body(DeviceUpdateBody)
async def update_device(request: Request) -> Response:
    """Block (``status: blocked``), re-admit (``registered``), or choose the DM server."""
    principal = await authorize(request, "devices:write")
    body = await read_model(request, DeviceUpdateBody)
    view = await call(runtime_of(request).devices.update, request.path_params["dev_id"], status=body.status,
                      dm_server=body.dm_server, idevid_fingerprint=body.idevid_fingerprint, actor=principal.actor)
    return JSONResponse(view.to_json())


async def list_tokens(request: Request) -> Response:
    """List enrollment tokens without their secrets."""
    await authorize(request, "devices:read")
    params = request.query_params
    views = await call(runtime_of(request).devices.list_tokens, profile=params.get("profile"),
                        dev_id=params.get("dev_id"), limit=page_limit(request),
                        offset=int_param(request, "offset", 0))
    return JSONResponse([v.to_json() for v in views])


@request_body(EnrollmentTokenBody)
async def create_token(request: Request) -> Response:
    """Create a one-time enrollment token ``{profile?, dev_id?, ttl_seconds?}``; shown once."""
    principal = await authorize(request, "devices:write")
    body = await read_model(request, EnrollmentTokenBody)
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds is not None else timedelta(days=7)
    view, token = await call(runtime_of(request).devices.create_token, profile=body.profile, dev_id=body.dev_id,
                             ttl=ttl, actor=principal.actor)
    return _created({**view.to_json(), "token": token})


# -- manufacturer CAs --------------------------------------------------------------------


async def list_makers(request: Request) -> Response:
    """List trusted manufacturer CAs."""
    await authorize(request, "ca:read")
    return JSONResponse([_maker_json(r) for r in await call(runtime_of(request).config.list_manufacturer_cas)])


@request_body(MakerBody)
async def add_maker(request: Request) -> Response:
    """Trust a manufacturer CA for IDevID attestation: ``{name, pem}``."""
    principal = await authorize(request, "ca:manage")
    body = await read_model(request, MakerBody)
    row = await call(runtime_of(request).config.add_manufacturer_ca, body.name, body.pem, actor=principal.actor)
    return _created(_maker_json(row))


@request_body(MakerUpdateBody)
async def update_maker(request: Request) -> Response:
    """Enable or disable a manufacturer CA: ``{enabled}``."""
    principal = await authorize(request, "ca:manage")
    enabled = (await read_model(request, MakerUpdateBody)).enabled
    row = await call(runtime_of(request).config.set_manufacturer_ca_enabled, request.path_params["name"], enabled,
                     actor=principal.actor)
    return JSONResponse(_maker_json(row))


class _DeviceId(PathConvertor):
    """A DevID in a path: printable, "/" allowed, but never ending in one of the device's actions.

    ``/devices/IMEI:1/readmit`` is the readmit action (web/lifecycle.py), not a device named
    ``IMEI:1/readmit``: so the device routes do not match it, and a wrong method there is a
    405 that allows POST only.
    """

    regex = r"(?!.*/(?:readmit|revoke|bootstrap-complete)$).+"


register_url_convertor("device", _DeviceId())


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
        Route(f"{base}/devices/{{dev_id:device}}", get_device, methods=["GET"]),
        Route(f"{base}/devices/{{dev_id:device}}", update_device, methods=["PATCH"]),
        Route(f"{base}/enrollment-tokens", list_tokens, methods=["GET"]),
        Route(f"{base}/enrollment-tokens", create_token, methods=["POST"]),
        Route(f"{base}/manufacturer-cas", list_makers, methods=["GET"]),
        Route(f"{base}/manufacturer-cas", add_maker, methods=["POST"]),
        Route(f"{base}/manufacturer-cas/{{name}}", update_maker, methods=["PATCH"]),
    ]
