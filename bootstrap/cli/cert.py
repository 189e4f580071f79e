"""``dmboot cert``: issue and inspect certificates."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bootstrap.cli.common import cli_actor, emit_issued, emit_json, handled, open_runtime, shown_of_total
from bootstrap.errors import DmBootstrapError

if TYPE_CHECKING:
    from bootstrap.store.models import CertificateRow

app = typer.Typer(help="Issue and inspect certificates.", no_args_is_help=True)


def _cert_record(row: CertificateRow) -> dict[str, Any]:
    return {
        "serial": row.serial_hex,
        "profile": row.profile,
        "subject": row.subject,
        "sans": json.loads(row.sans),
        "device_id": row.device_id,
        "key_type": row.key_type,
        "not_before": row.not_before.isoformat(),
        "not_after": row.not_after.isoformat(),
        "status": row.status,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revocation_reason": row.revocation_reason,
        "fingerprint": row.fingerprint,
        "requested_by": row.requested_by,
        "superseded_by": row.superseded_by,
        "supersede_at": row.supersede_at.isoformat() if row.supersede_at else None,
    }


@app.command("issue")
@handled
def cert_issue(
    csr: Annotated[Path, typer.Option("--csr", help="PKCS#10 request, PEM or DER.", exists=False)],
    cert_profile: Annotated[str | None, typer.Option(
        "--cert-profile", help="Certificate profile: device, dm-server, data-repository, ocsp-signer.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the PEM chain here instead of stdout.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the issued certificate as JSON.")] = False,
    old_profile: Annotated[str | None, typer.Option("--profile", hidden=True)] = None,
) -> None:
    """Issue a certificate for a CSR under a certificate profile."""
    from bootstrap.services.issuance import Requester
    if old_profile is not None:
        # Elsewhere --profile names an enrollment profile; here it meant a certificate profile.
        typer.secho("warning: `cert issue --profile` is deprecated; use --cert-profile", fg=typer.colors.YELLOW,
                    err=True)
    profile = cert_profile or old_profile
    if profile is None or (cert_profile and old_profile):
        raise DmBootstrapError("name the certificate profile once, with --cert-profile")
    if not csr.is_file():
        raise DmBootstrapError(f"CSR file {csr} does not exist")
    with open_runtime() as runtime:
        issued = runtime.issuance.issue_from_csr(csr.read_bytes(), profile, Requester(cli_actor()))
    emit_issued(issued, out, as_json=as_json, label=issued.profile, facts={
        "serial": issued.serial_hex, "profile": issued.profile, "fingerprint": issued.fingerprint,
        "not_after": issued.certificate.not_valid_after_utc.isoformat()})


@app.command("list")
@handled
def cert_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    profile: Annotated[str | None, typer.Option(help="Only this profile.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=10_000)] = 100,
    after: Annotated[int | None, typer.Option(
        "--after", help="The cursor printed by the previous page: continue after it.", min=0)] = None,
) -> None:
    """List issued certificates, newest first; page on with --after CURSOR."""
    from bootstrap.services.console_queries import count_certificates
    with open_runtime() as runtime:
        rows = runtime.issuance.list(limit=limit, profile=profile, after=after)
        total = count_certificates(runtime.database, profile=profile) if not as_json else 0
    next_page = f"--after {rows[-1].id}" if len(rows) == limit and rows[-1].id is not None else None
    if as_json:
        if next_page:
            typer.echo(f"next page: {next_page}", err=True)
        emit_json([_cert_record(r) for r in rows])
        return
    if not rows:
        typer.echo("no certificates")
    for r in rows:
        note = f"  (superseded by {r.superseded_by})" if r.superseded_by else ""
        typer.echo(f"{r.serial_hex:<42} {r.profile:<16} {r.status:<8} {r.not_after:%Y-%m-%d}  {r.subject}{note}")
    shown_of_total(len(rows), total, "certificates", next_page=next_page)


@app.command("show")
@handled
def cert_show(
    serial: Annotated[str, typer.Argument(help="Serial number in hex.")],
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM certificate.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show one certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    with open_runtime() as runtime:
        row = runtime.issuance.get(serial)
        supersedes = runtime.issuance.superseded_by(row.serial_hex)
    if pem:
        typer.echo(row.pem, nl=False)
        return
    record = {**_cert_record(row), "supersedes": supersedes}
    if as_json:
        emit_json(record)
        return
    cert = x509.load_pem_x509_certificate(row.pem.encode())
    for key, value in record.items():
        typer.echo(f"{key:<13} {value}")
    typer.echo(f"{'issuer':<13} {cert.issuer.rfc4514_string()}")
    typer.echo(f"{'der bytes':<13} {len(cert.public_bytes(Encoding.DER))}")


# -- lifecycle: revoke, re-admit, expiry (RFC 5280 reasons) ----------------------------------


@app.command("revoke")
@handled
def cert_revoke(
    serial: Annotated[str | None, typer.Argument(help="Serial number in hex (or use --device / --profile).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Revoke every live certificate of this DevID"
                                                                " and block the device.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Revoke the certificates of every device of"
                                                                  " this enrollment profile and block them.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="RFC 5280 reason: keyCompromise, superseded,"
                                                         " cessationOfOperation, affiliationChanged,"
                                                         " privilegeWithdrawn, cACompromise, unspecified.")]
    = "unspecified",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --device/--profile: list what would be"
                                                            " revoked and blocked; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="With --device/--profile: do not ask for confirmation"
                                                    " (for scripts).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Revoke certificates; the CRLs concerned are republished before this returns.

    Revoking by --device or --profile first says how many certificates and devices it
    touches and asks (or needs --yes); --dry-run only lists them.
    """
    from bootstrap.services.issuance import Requester
    from pki.revocation import parse_reason
    chosen = [name for name, value in (("SERIAL", serial), ("--device", device), ("--profile", profile)) if value]
    if len(chosen) != 1:
        raise DmBootstrapError("name exactly one of SERIAL, --device DEVID or --profile NAME")
    parse_reason(reason)  # a bad reason is the first thing to hear, before any preview
    requester = Requester(cli_actor())
    with open_runtime() as runtime:
        service = runtime.revocation
        if not serial and not _confirmed_bulk(service.preview(dev_id=device, profile=profile), chosen[0],
                                              device or str(profile), dry_run=dry_run, yes=yes, as_json=as_json):
            return
        if serial:
            outcome = service.revoke_certificate(serial, reason, requester)
        elif device:
            outcome = service.revoke_device(device, reason, requester)
        else:
            outcome = service.revoke_profile(str(profile), reason, requester)
        if outcome.revoked:  # on demand: the CRLs list it when this command returns
            published = runtime.crl_publisher.publish(full_after=timedelta(0), actor=cli_actor()).numbers
            runtime.ocsp.presign_revoked()
            outcome = dataclasses.replace(outcome, crl_numbers=published)
    if as_json:
        emit_json(outcome.to_json())
        return
    for revoked in outcome.revoked:
        typer.echo(f"revoked {revoked} ({outcome.reason})")
    for kept in outcome.already_revoked:
        typer.echo(f"already revoked {kept}")
    for dev_id in outcome.blocked:
        typer.echo(f"blocked device {dev_id}")
    if not outcome.revoked and not outcome.blocked:
        typer.echo("nothing to revoke")
    for scope, number in sorted(outcome.crl_numbers.items()):
        typer.echo(f"published CRL {number}: {scope}")


def _confirmed_bulk(preview: tuple[list[str], list[str]], option: str, value: str, *, dry_run: bool, yes: bool,
                    as_json: bool) -> bool:
    """Show what a bulk revocation touches; whether to go ahead (raises when it may not)."""
    serials, dev_ids = preview
    summary = f"{option} {value}: {len(serials)} certificates to revoke, {len(dev_ids)} devices to block"
    if dry_run:
        if as_json:
            emit_json({"dry_run": True, "certificates": serials, "devices": dev_ids})
        else:
            typer.echo(f"dry run, nothing changed - {summary}")
            for number in serials:
                typer.echo(f"  would revoke {number}")
            for dev_id in dev_ids:
                typer.echo(f"  would block {dev_id}")
        return False
    if yes:
        return True
    if not sys.stdin.isatty():
        raise DmBootstrapError(f"{summary}; confirm with --yes (or look first with --dry-run)")
    if not typer.confirm(f"{summary}. Go ahead?", default=False, err=True):
        raise DmBootstrapError("not confirmed; nothing revoked")
    return True


@app.command("readmit")
@handled
def cert_readmit(dev_id: Annotated[str, typer.Argument(help="The blocked device's DevID.")]) -> None:
    """Let a blocked (revoked) device enroll again."""
    from bootstrap.services.issuance import Requester
    with open_runtime() as runtime:
        runtime.revocation.readmit_device(dev_id, Requester(cli_actor()))
    typer.echo(f"re-admitted {dev_id}: it may enroll again")


@app.command("expiring")
@handled
def cert_expiring(
    days: Annotated[int, typer.Option("--days", help="Within this many days from now.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List valid certificates that expire within N days, soonest first."""
    with open_runtime() as runtime:
        rows = runtime.revocation.expiring(days)
    if as_json:
        emit_json([_cert_record(r) for r in rows])
        return
    if not rows:
        typer.echo(f"no certificate expires within {days} days")
    for r in rows:
        typer.echo(f"{r.not_after:%Y-%m-%d %H:%M}  {r.serial_hex:<42} {r.profile:<16} {r.subject}")
