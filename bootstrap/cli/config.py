"""``dmboot server|repo|profile|device|enroll-token|maker-ca|group-key``: enrollment configuration.

Thin commands over :class:`~bootstrap.services.config.ConfigService` and
:class:`~bootstrap.services.devices.DeviceService`; ``--json`` prints data as JSON,
errors are one line on stderr (exit 1).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bootstrap import strict_json
from bootstrap.cli.common import (
    JsonOpt,
    cli_actor,
    emit_issued,
    emit_json,
    handled,
    open_runtime,
    print_record,
    print_rows,
    read_optional,
    shown_of_total,
)
from bootstrap.errors import DmBootstrapError

if TYPE_CHECKING:
    from bootstrap.store.models import DataRepositoryRow, DmServerRow

__all__ = ["device_app", "group_app", "maker_app", "profile_app", "repo_app", "server_app", "token_app"]

server_app = typer.Typer(help="DM servers devices are bootstrapped to (DMAcc SrvID, SrvURI).", no_args_is_help=True)
repo_app = typer.Typer(help="Data repositories devices fetch MO data from (HGET).", no_args_is_help=True)
profile_app = typer.Typer(help="Enrollment profiles: one DM account template for a group of devices.",
                          no_args_is_help=True)
device_app = typer.Typer(help="Devices, registered by DevID.", no_args_is_help=True)
token_app = typer.Typer(help="One-time enrollment tokens (shown once, stored as SHA-256).", no_args_is_help=True)
maker_app = typer.Typer(help="Manufacturer CAs whose device certificates (IDevID) are trusted.",
                        no_args_is_help=True)
group_app = typer.Typer(help="Group keys for group-key attestation (kept in the secret store).",
                        no_args_is_help=True)


def _read_json(path: Path, what: str) -> Any:
    """A JSON file, read as strictly as every JSON the service reads (bootstrap.strict_json)."""
    try:
        return strict_json.loads(read_optional(path, what) or "{}")
    except strict_json.StrictJsonError as exc:
        raise DmBootstrapError(f"{what} file {path} is not valid JSON: {exc}") from None


def _server_record(row: DmServerRow | DataRepositoryRow) -> dict[str, Any]:
    from cryptography import x509

    from bootstrap.store.models import DmServerRow
    from pki.authority import fingerprint
    ident = {"server_id": row.server_id} if isinstance(row, DmServerRow) else {}
    anchor = fingerprint(x509.load_pem_x509_certificate(row.trust_anchor_pem.encode())) if row.trust_anchor_pem \
        else "root"
    return {**ident, "name": row.name, "url": row.url, "trust_anchor": anchor}


# -- servers and repositories -----------------------------------------------------------


@server_app.command("add")
@handled
def server_add(
    server_id: Annotated[str, typer.Argument(help="DMAcc SrvID, e.g. dm.example.net.")],
    url: Annotated[str, typer.Option("--url", help="DMAcc SrvURI (https).")],
    name: Annotated[str, typer.Option("--name", help="Display name (default: the SrvID).")] = "",
    anchor: Annotated[Path | None, typer.Option("--anchor", help="PEM trust anchor (default: our root CA).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a DM server."""
    with open_runtime() as runtime:
        row = runtime.config.add_server(server_id, name, url, read_optional(anchor, "anchor"), actor=cli_actor())
    emit_json(_server_record(row)) if as_json else typer.echo(f"added DM server {row.server_id} ({row.url})")


@server_app.command("list")
@handled
def server_list(as_json: JsonOpt = False) -> None:
    """List DM servers."""
    with open_runtime() as runtime:
        rows = [_server_record(r) for r in runtime.config.list_servers()]
    emit_json(rows) if as_json else print_rows(rows, ("server_id", "url", "trust_anchor"), "no DM servers")


def _issue(kind: str, ident: str, csr: Path, out: Path | None, as_json: bool) -> None:
    text = read_optional(csr, "CSR") or ""
    with open_runtime() as runtime:
        issued = runtime.config.issue_server_certificate(kind, ident, text, actor=cli_actor())
    emit_issued(issued, out, as_json=as_json, label=kind,
                facts={"serial": issued.serial_hex, "fingerprint": issued.fingerprint})


@server_app.command("cert")
@handled
def server_cert(
    server_id: Annotated[str, typer.Argument(help="The DM server's SrvID.")],
    csr: Annotated[Path, typer.Option("--csr", help="PKCS#10 request (PEM or DER) for the host of its URL.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the PEM chain here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue the DM server's TLS certificate (profile dm-server, SAN = host of its URL)."""
    _issue("dm-server", server_id, csr, out, as_json)


@repo_app.command("add")
@handled
def repo_add(
    name: Annotated[str, typer.Argument(help="A unique name.")],
    url: Annotated[str, typer.Option("--url", help="Base URL devices fetch from (https).")],
    anchor: Annotated[Path | None, typer.Option("--anchor", help="PEM trust anchor (default: our root CA).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a data repository."""
    with open_runtime() as runtime:
        row = runtime.config.add_repository(name, url, read_optional(anchor, "anchor"), actor=cli_actor())
    emit_json(_server_record(row)) if as_json else typer.echo(f"added data repository {row.name} ({row.url})")


@repo_app.command("list")
@handled
def repo_list(as_json: JsonOpt = False) -> None:
    """List data repositories."""
    with open_runtime() as runtime:
        rows = [_server_record(r) for r in runtime.config.list_repositories()]
    emit_json(rows) if as_json else print_rows(rows, ("name", "url", "trust_anchor"), "no data repositories")


@repo_app.command("cert")
@handled
def repo_cert(
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    csr: Annotated[Path, typer.Option("--csr", help="PKCS#10 request (PEM or DER) for the host of its URL.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the PEM chain here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue the repository's TLS certificate (profile data-repository)."""
    _issue("data-repository", name, csr, out, as_json)


# -- profiles ----------------------------------------------------------------------------


@profile_app.command("add")
@handled
def profile_add(
    name: Annotated[str, typer.Argument(help="Profile name.")],
    server: Annotated[list[str] | None, typer.Option("--server", help="DM server SrvID (first = the account's).")]
    = None,
    repo: Annotated[list[str] | None, typer.Option("--repo", help="Data repository name.")] = None,
    attestation: Annotated[list[str] | None, typer.Option(
        "--attestation", help="token, group-key, idevid, current-cert, tpm (repeat; default token).")] = None,
    key_type: Annotated[list[str] | None, typer.Option("--key-type", help="Allowed device key types.")] = None,
    delivery: Annotated[str, typer.Option(help="hget (the DM 2.0 flow) or inline (ours: PUT).")] = "hget",
    server_keygen: Annotated[bool, typer.Option(
        "--server-keygen", help="Make the key of a device whose package 1 has no CSR.")] = False,
    validity_days: Annotated[int, typer.Option("--validity-days", help="Device certificate lifetime.")] = 365,
    account_name: Annotated[str | None, typer.Option("--account-name", help="DMAcc Name.")] = None,
    perm: Annotated[list[str] | None, typer.Option("--perm", help="DMAcc Perm MOID (repeat).")] = None,
    extra_mo: Annotated[list[Path] | None, typer.Option("--extra-mo", help="JSON file: one MO instance.")] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    spec_file: Annotated[Path | None, typer.Option("--file", help="The whole profile as JSON (as the API takes).")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an enrollment profile (from options, or --file with the API's JSON)."""
    from bootstrap.services.config import ProfileSpec
    if spec_file is not None:
        document = _read_json(spec_file, "profile")
        spec = ProfileSpec.from_json({**document, "name": name})
    else:
        dmacc: dict[str, Any] = {}
        if account_name:
            dmacc["Name"] = account_name
        if perm:
            dmacc["Perm"] = perm
        mos = tuple(_read_json(p, "MO instance") for p in extra_mo or ())
        spec = ProfileSpec(name=name, dm_servers=tuple(server or ()), data_repositories=tuple(repo or ()),
                           attestation=tuple(attestation or ("token",)),
                           key_types=tuple(key_type or ("p256", "p384", "ed25519")), delivery=delivery,
                           server_keygen=server_keygen, validity_days=validity_days, dmacc=dmacc, extra_mos=mos,
                           description=description)
    with open_runtime() as runtime:
        view = runtime.config.add_profile(spec, actor=cli_actor())
    emit_json(view.to_json()) if as_json else typer.echo(
        f"added profile {name} (servers {', '.join(view.dm_servers)}; attestation {', '.join(view.row.attestation)})")


@profile_app.command("list")
@handled
def profile_list(as_json: JsonOpt = False) -> None:
    """List enrollment profiles."""
    with open_runtime() as runtime:
        views = [v.to_json() for v in runtime.config.list_profiles()]
    if as_json:
        emit_json(views)
        return
    print_rows([{**v, "dm_servers": ",".join(v["dm_servers"]), "attestation": ",".join(v["attestation"])}
                 for v in views], ("name", "dm_servers", "attestation", "delivery"), "no profiles")


@profile_app.command("show")
@handled
def profile_show(name: Annotated[str, typer.Argument(help="Profile name.")], as_json: JsonOpt = False) -> None:
    """Show one profile."""
    with open_runtime() as runtime:
        view = runtime.config.get_profile(name).to_json()
    print_record(view, as_json=as_json)


# -- devices and enrollment tokens --------------------------------------------------------


@device_app.command("add")
@handled
def device_add(
    dev_id: Annotated[str, typer.Argument(help="DevInfo/DevID, e.g. IMEI:490154203237518.")],
    profile: Annotated[str, typer.Option("--profile", help="Enrollment profile.")],
    idevid_fingerprint: Annotated[str | None, typer.Option("--idevid-fingerprint",
                                                           help="sha256:<hex> of its IDevID.")] = None,
    idevid_cert: Annotated[Path | None, typer.Option("--idevid-cert", help="Its IDevID (PEM); pins the fingerprint.")]
    = None,
    dm_server: Annotated[str | None, typer.Option("--dm-server", help="Chosen DM server (SrvID).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a device."""
    from cryptography import x509

    from pki.authority import fingerprint
    if idevid_cert is not None:
        pem = read_optional(idevid_cert, "IDevID") or ""
        idevid_fingerprint = fingerprint(x509.load_pem_x509_certificate(pem.encode()))
    with open_runtime() as runtime:
        view = runtime.devices.register(dev_id, profile, idevid_fingerprint=idevid_fingerprint, dm_server=dm_server,
                                        actor=cli_actor())
    emit_json(view.to_json()) if as_json else typer.echo(f"registered {dev_id} in profile {profile}")


@device_app.command("list")
@handled
def device_list(
    q: Annotated[str | None, typer.Option("--q", help="DevID contains this.")] = None,
    status: Annotated[str | None, typer.Option(help="registered, enrolled, bootstrapped or blocked.")] = None,
    profile: Annotated[str | None, typer.Option(help="Only this profile.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List or search devices."""
    from bootstrap.services.console_queries import count_devices
    with open_runtime() as runtime:
        views = [v.to_json() for v in runtime.devices.search(q=q, status=status, profile=profile, limit=limit)]
        total = count_devices(runtime.database, q=q, status=status, profile=profile) if not as_json else 0
    if as_json:
        emit_json(views)
        return
    print_rows(views, ("dev_id", "profile", "status", "current_serial"), "no devices")
    shown_of_total(len(views), total, "devices")


@device_app.command("show")
@handled
def device_show(dev_id: Annotated[str, typer.Argument(help="DevID.")], as_json: JsonOpt = False) -> None:
    """Show one device, with the MOs and features it declared."""
    with open_runtime() as runtime:
        view = runtime.devices.get(dev_id).to_json()
    print_record(view, as_json=as_json)


def _set_status(dev_id: str, status: str) -> None:
    with open_runtime() as runtime:
        runtime.devices.update(dev_id, status=status, actor=cli_actor())
    typer.echo(f"{dev_id}: {status}")


@device_app.command("block")
@handled
def device_block(dev_id: Annotated[str, typer.Argument(help="DevID.")]) -> None:
    """Block a device: every enrollment is refused."""
    _set_status(dev_id, "blocked")


@device_app.command("unblock")
@handled
def device_unblock(dev_id: Annotated[str, typer.Argument(help="DevID.")]) -> None:
    """Re-admit a blocked device (status registered)."""
    _set_status(dev_id, "registered")


@token_app.command("create")
@handled
def enroll_token_create(
    profile: Annotated[str | None, typer.Option("--profile", help="Profile (default: the device's).")] = None,
    dev_id: Annotated[str | None, typer.Option("--dev-id", help="Bind the token to this registered device.")] = None,
    ttl_hours: Annotated[float, typer.Option("--ttl-hours", help="Lifetime in hours.")] = 168.0,
    as_json: JsonOpt = False,
) -> None:
    """Create a one-time enrollment token. It is printed once and never stored."""
    with open_runtime() as runtime:
        view, token = runtime.devices.create_token(profile=profile, dev_id=dev_id, ttl=timedelta(hours=ttl_hours),
                                                   actor=cli_actor())
    if as_json:
        emit_json({**view.to_json(), "token": token})
        return
    typer.echo(token)
    typer.echo(f"(enrollment token {view.row.id} for {dev_id or 'any device of ' + view.profile};"
               f" expires {view.row.expires_at:%Y-%m-%d %H:%M} UTC; shown once)", err=True)


@token_app.command("list")
@handled
def enroll_token_list(
    profile: Annotated[str | None, typer.Option(help="Only this profile.")] = None,
    dev_id: Annotated[str | None, typer.Option("--dev-id", help="Only tokens bound to this device.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List enrollment tokens (never their secrets)."""
    with open_runtime() as runtime:
        views = [v.to_json() for v in runtime.devices.list_tokens(profile=profile, dev_id=dev_id)]
    emit_json(views) if as_json else print_rows(views, ("id", "profile", "dev_id", "state", "expires_at"),
                                                 "no enrollment tokens")


# -- manufacturer CAs and group keys -----------------------------------------------------


@maker_app.command("add")
@handled
def maker_add(
    name: Annotated[str, typer.Argument(help="A unique name, e.g. acme-devices.")],
    cert: Annotated[Path, typer.Option("--cert", help="The manufacturer CA certificate (PEM).")],
    as_json: JsonOpt = False,
) -> None:
    """Trust a manufacturer CA for IDevID attestation."""
    with open_runtime() as runtime:
        row = runtime.config.add_manufacturer_ca(name, read_optional(cert, "certificate") or "", actor=cli_actor())
    emit_json({"name": row.name, "fingerprint": row.fingerprint}) if as_json else typer.echo(
        f"trusted manufacturer CA {row.name} {row.fingerprint}")


@maker_app.command("list")
@handled
def maker_list(as_json: JsonOpt = False) -> None:
    """List manufacturer CAs."""
    with open_runtime() as runtime:
        rows = [{"name": r.name, "fingerprint": r.fingerprint, "enabled": r.enabled}
                for r in runtime.config.list_manufacturer_cas()]
    emit_json(rows) if as_json else print_rows(rows, ("name", "fingerprint", "enabled"), "no manufacturer CAs")


@maker_app.command("disable")
@handled
def maker_disable(name: Annotated[str, typer.Argument(help="Manufacturer CA name.")]) -> None:
    """Stop trusting a manufacturer CA (its IDevIDs are refused)."""
    with open_runtime() as runtime:
        runtime.config.set_manufacturer_ca_enabled(name, False, actor=cli_actor())
    typer.echo(f"disabled {name}")


@group_app.command("create")
@handled
def group_key_create(profile: Annotated[str, typer.Argument(help="Enrollment profile.")],
                     as_json: JsonOpt = False) -> None:
    """Create the profile's 256-bit group key in the secret store (it never leaves it)."""
    with open_runtime() as runtime:
        ref = runtime.devices.create_group_key(profile, actor=cli_actor())
    emit_json({"profile": profile, "ref": ref}) if as_json else typer.echo(f"group key for {profile}: {ref}")


@group_app.command("derive")
@handled
def group_key_derive(
    profile: Annotated[str, typer.Argument(help="Enrollment profile.")],
    dev_ids: Annotated[list[str] | None, typer.Argument(help="DevIDs.")] = None,
    from_file: Annotated[Path | None, typer.Option("--file", help="DevIDs, one a line.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export device keys HMAC-SHA256(group key, DevID), hex, for factory injection (audited)."""
    ids = list(dev_ids or []) + [line.strip() for line in (read_optional(from_file, "DevID") or "").splitlines()
                                 if line.strip()]
    with open_runtime() as runtime:
        keys = runtime.devices.export_device_keys(profile, ids, actor=cli_actor())
    if as_json:
        emit_json(keys)
        return
    for dev_id, key in keys.items():
        typer.echo(f"{dev_id} {key}")
