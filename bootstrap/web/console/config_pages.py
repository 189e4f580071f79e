"""Console pages for configuration: dashboard, CAs and trust anchors, servers, enrollment profiles."""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bootstrap import strict_json
from bootstrap.auth.attestation import METHODS
from bootstrap.errors import Conflict, InvalidRequest, NotFound
from bootstrap.services.config import DELIVERY_MODES, ProfileSpec, ProfileView
from bootstrap.services.console_queries import dashboard as dashboard_data
from bootstrap.services.ocsp_renewal import renewal_point
from bootstrap.web.console.context import ConsoleUser, page, render, runtime_of
from pki.authority import fingerprint

__all__ = ["cas", "dashboard", "maker_add", "profile_edit", "profile_new", "profile_save", "profiles",
           "repository_add", "server_add", "servers", "tpm_ca_add"]

KEY_TYPES = ("p256", "p384", "ed25519", "rsa2048", "rsa3072", "rsa4096")
_DONE = {"server": "DM server added.", "repository": "Data repository added.", "profile": "Profile saved.",
         "maker": "Manufacturer CA added.", "tpm": "TPM manufacturer CA added."}


def _anchor(pem: str | None) -> str:
    return fingerprint(x509.load_pem_x509_certificate(pem.encode())) if pem else "our root CA"


@page("ca:read")
async def dashboard(request: Request, user: ConsoleUser) -> Response:
    """Today's issuance, enrollments and failures; certificates expiring soon."""
    return render(request, "dashboard.html", user, data=dashboard_data(runtime_of(request).database))


@page("ca:read")
async def cas(request: Request, user: ConsoleUser) -> Response:
    """Our CAs, manufacturer CAs, and the trust anchors of DM servers and data repositories."""
    runtime = runtime_of(request)
    with runtime.database.read_session() as session:
        ours = runtime.authorities.all_rows(session)
    anchors = ([("DM server", s.server_id, _anchor(s.trust_anchor_pem)) for s in runtime.config.list_servers()]
               + [("data repository", r.name, _anchor(r.trust_anchor_pem))
                  for r in runtime.config.list_repositories()])
    responders = {authority_id: (end, renewal_point(start, end))
                  for authority_id, (start, end) in runtime.ocsp_renewal.latest().items()}
    return render(request, "cas.html", user, ours=ours, makers=runtime.config.list_manufacturer_cas(),
                  tpm_makers=runtime.tpm_trust.list(), profiles=[v.row.name for v in runtime.config.list_profiles()],
                  anchors=anchors, responders=responders, done=_DONE.get(request.query_params.get("done", "")))


@page("ca:manage")
async def maker_add(request: Request, user: ConsoleUser) -> Response:
    """Trust a manufacturer CA (IDevID attestation)."""
    form = await request.form()
    try:
        runtime_of(request).config.add_manufacturer_ca(str(form.get("name", "")), str(form.get("pem", "")),
                                                       actor=user.principal.actor)
    except (InvalidRequest, Conflict) as exc:
        return render(request, "error.html", user, status_code=400, title="Not added", message=exc.message)
    return RedirectResponse("/console/cas?done=maker", status_code=303)


@page("ca:manage")
async def tpm_ca_add(request: Request, user: ConsoleUser) -> Response:
    """Trust a TPM manufacturer CA (EK certificate root or intermediate) for one enrollment profile."""
    form = await request.form()
    try:
        runtime_of(request).tpm_trust.add(str(form.get("profile", "")), str(form.get("name", "")),
                                          str(form.get("pem", "")), actor=user.principal.actor)
    except (InvalidRequest, Conflict, NotFound) as exc:
        return render(request, "error.html", user, status_code=400, title="Not added", message=exc.message)
    return RedirectResponse("/console/cas?done=tpm", status_code=303)


@page("config:read")
async def servers(request: Request, user: ConsoleUser) -> Response:
    """DM servers and data repositories."""
    config = runtime_of(request).config
    return render(request, "servers.html", user, servers=config.list_servers(), repos=config.list_repositories(),
                  done=_DONE.get(request.query_params.get("done", "")))


async def _servers_error(request: Request, user: ConsoleUser, exc: InvalidRequest | Conflict | NotFound,
                         form_name: str) -> Response:
    config = runtime_of(request).config
    return render(request, "servers.html", user, status_code=400 if isinstance(exc, InvalidRequest) else 409,
                  servers=config.list_servers(), repos=config.list_repositories(),
                  error={"form": form_name, "field": exc.field, "message": exc.message},
                  values=dict(await request.form()))


@page("config:write")
async def server_add(request: Request, user: ConsoleUser) -> Response:
    """Register a DM server."""
    form = await request.form()
    try:
        runtime_of(request).config.add_server(str(form.get("server_id", "")), str(form.get("name", "")),
                                              str(form.get("url", "")), str(form.get("trust_anchor_pem", "")) or None,
                                              actor=user.principal.actor)
    except (InvalidRequest, Conflict) as exc:
        return await _servers_error(request, user, exc, "server")
    return RedirectResponse("/console/servers?done=server", status_code=303)


@page("config:write")
async def repository_add(request: Request, user: ConsoleUser) -> Response:
    """Register a data repository."""
    form = await request.form()
    try:
        runtime_of(request).config.add_repository(str(form.get("name", "")), str(form.get("url", "")),
                                                  str(form.get("trust_anchor_pem", "")) or None,
                                                  actor=user.principal.actor)
    except (InvalidRequest, Conflict) as exc:
        return await _servers_error(request, user, exc, "repository")
    return RedirectResponse("/console/servers?done=repository", status_code=303)


# -- enrollment profiles -----------------------------------------------------------------


@page("config:read")
async def profiles(request: Request, user: ConsoleUser) -> Response:
    """Enrollment profiles."""
    return render(request, "profiles.html", user, profiles=runtime_of(request).config.list_profiles(),
                  done=_DONE.get(request.query_params.get("done", "")))


def _form_values(view: ProfileView | None) -> dict[str, Any]:
    if view is None:
        return {"name": "", "description": "", "dm_servers": [], "data_repositories": [], "delivery": "hget",
                "validity_days": "365", "key_types": ["p256", "p384", "ed25519"], "attestation": ["token"],
                "dmacc": {}, "extra_mos": "[]", "enabled": True, "server_keygen": False}
    row = view.row
    return {"name": row.name, "description": row.description, "dm_servers": list(view.dm_servers),
            "data_repositories": list(view.data_repositories), "delivery": row.delivery,
            "validity_days": str(row.validity_days), "key_types": row.key_types, "attestation": row.attestation,
            "dmacc": _dmacc_fields(row.dmacc), "extra_mos": json.dumps(row.extra_mos, indent=2),
            "enabled": row.enabled, "server_keygen": row.server_keygen}


def _dmacc_fields(dmacc: dict[str, Any]) -> dict[str, str]:
    """A profile's DMAcc settings as the form's fields: Name, Perm (one MOID a line), Noti, DM 1.x options."""
    noti = dmacc.get("Noti") or {}
    fields = {"Name": str(dmacc.get("Name", "")), "Perm": "\n".join(dmacc.get("Perm", [])),
              "NotiType": str(noti.get("Type", "")), "NotiData": str(noti.get("Data", ""))}
    return fields | {k: str(v) for k, v in dmacc.items() if k.startswith("dm1_")}


def _dmacc_of_form(fields: dict[str, str]) -> dict[str, Any]:
    """The ``dmacc`` the service checks (services/config.py names each bad member) from the form's fields."""
    dmacc: dict[str, Any] = {k: v for k, v in fields.items() if k.startswith("dm1_") and v}
    if fields.get("Name", "").strip():
        dmacc["Name"] = fields["Name"].strip()
    perm = [line.strip() for line in fields.get("Perm", "").splitlines() if line.strip()]
    if perm:
        dmacc["Perm"] = perm
    if fields.get("NotiType", "").strip() or fields.get("NotiData", "").strip():
        dmacc["Noti"] = {"Type": fields.get("NotiType", "").strip()}
        if fields.get("NotiData", "").strip():
            dmacc["Noti"]["Data"] = fields["NotiData"].strip()
    return dmacc


def _ordered_servers(form: Any) -> list[str]:
    """The profile's DM servers, the default first (the radio), then the others ticked, in page order."""
    ticked = [str(v) for v in form.getlist("dm_servers")]
    default = str(form.get("default_server", "")).strip()
    return ([default] if default else []) + [s for s in ticked if s != default]


def _editor(request: Request, user: ConsoleUser, values: dict[str, Any], *, creating: bool,
            error: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    config = runtime_of(request).config
    return render(request, "profile_form.html", user, values=values, creating=creating, error=error,
                  status_code=status_code, all_servers=config.list_servers(),
                  all_repos=config.list_repositories(), key_types=KEY_TYPES, methods=METHODS,
                  deliveries=DELIVERY_MODES, can_write=user.can("config:write"))


@page("config:write")
async def profile_new(request: Request, user: ConsoleUser) -> Response:
    """An empty profile form."""
    return _editor(request, user, _form_values(None), creating=True)


@page("config:read")
async def profile_edit(request: Request, user: ConsoleUser) -> Response:
    """One profile, editable for config:write."""
    view = runtime_of(request).config.get_profile(request.path_params["name"])
    return _editor(request, user, _form_values(view), creating=False)


def _json_field(raw: str, name: str, kind: type) -> Any:
    try:
        value = strict_json.loads(raw or ("{}" if kind is dict else "[]"))
    except strict_json.StrictJsonError as exc:
        raise InvalidRequest(f"{name} is not valid JSON: {exc}", field=name) from None
    if not isinstance(value, kind):
        raise InvalidRequest(f"{name} must be a JSON {'object' if kind is dict else 'array'}", field=name)
    return value


@page("config:write")
async def profile_save(request: Request, user: ConsoleUser) -> Response:
    """Create a profile (POST /console/profiles) or replace one (POST /console/profiles/{name})."""
    form = await request.form()
    creating = "name" not in request.path_params
    values: dict[str, Any] = {
        "name": str(form.get("name", "")) if creating else request.path_params["name"],
        "description": str(form.get("description", "")),
        "dm_servers": _ordered_servers(form),
        "data_repositories": [str(v) for v in form.getlist("data_repositories")],
        "delivery": str(form.get("delivery", "hget")), "validity_days": str(form.get("validity_days", "")),
        "key_types": [str(v) for v in form.getlist("key_types")],
        "attestation": [str(v) for v in form.getlist("attestation")],
        "dmacc": {k.removeprefix("dmacc_"): str(v) for k, v in form.items() if k.startswith("dmacc_")},
        "extra_mos": str(form.get("extra_mos", "[]")),
        "enabled": form.get("enabled") == "on", "server_keygen": form.get("server_keygen") == "on",
    }
    try:
        if not values["validity_days"].isdigit():
            raise InvalidRequest("validity_days must be a whole number of days", field="validity_days")
        spec = ProfileSpec(name=values["name"], description=values["description"],
                           dm_servers=tuple(values["dm_servers"]),
                           data_repositories=tuple(values["data_repositories"]),
                           dmacc=_dmacc_of_form(values["dmacc"]),
                           key_types=tuple(values["key_types"]), attestation=tuple(values["attestation"]),
                           extra_mos=tuple(_json_field(values["extra_mos"], "extra_mos", list)),
                           delivery=values["delivery"], validity_days=int(values["validity_days"]),
                           enabled=values["enabled"], server_keygen=values["server_keygen"])
        config = runtime_of(request).config
        if creating:
            config.add_profile(spec, actor=user.principal.actor)
        else:
            config.update_profile(spec, actor=user.principal.actor)
    except (InvalidRequest, Conflict, NotFound) as exc:
        status = 409 if isinstance(exc, Conflict) else 400
        return _editor(request, user, values, creating=creating, status_code=status,
                       error={"field": exc.field, "message": exc.message})
    return RedirectResponse("/console/profiles?done=profile", status_code=303)
