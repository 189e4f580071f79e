"""``dmboot cert``: issue and inspect certificates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.cli.common import emit_json, handled, open_runtime
from bootstrap.errors import DmBootstrapError
from bootstrap.services.issuance import Requester
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
        "fingerprint": row.fingerprint,
        "requested_by": row.requested_by,
    }


@app.command("issue")
@handled
def cert_issue(
    csr: Annotated[Path, typer.Option("--csr", help="PKCS#10 request, PEM or DER.", exists=False)],
    profile: Annotated[str, typer.Option("--profile", help="device, dm-server, data-repository, ocsp-signer.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the PEM chain here instead of stdout.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the issued certificate as JSON.")] = False,
) -> None:
    """Issue a certificate for a CSR under a profile."""
    if not csr.is_file():
        raise DmBootstrapError(f"CSR file {csr} does not exist")
    with open_runtime() as runtime:
        issued = runtime.issuance.issue_from_csr(csr.read_bytes(), profile, Requester("cli:admin"))
    if out is not None:
        out.write_text(issued.chain_pem)
    if as_json:
        emit_json(
            {
                "serial": issued.serial_hex,
                "profile": issued.profile,
                "fingerprint": issued.fingerprint,
                "not_after": issued.certificate.not_valid_after_utc.isoformat(),
                "out": str(out) if out else None,
                "pem": None if out else issued.chain_pem,
            }
        )
    elif out is None:
        typer.echo(issued.chain_pem, nl=False)
    else:
        typer.echo(f"issued serial {issued.serial_hex} ({issued.profile}) -> {out}", err=True)


@app.command("list")
@handled
def cert_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    profile: Annotated[str | None, typer.Option(help="Only this profile.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
) -> None:
    """List issued certificates, newest first."""
    with open_runtime() as runtime:
        rows = runtime.issuance.list(limit=limit, profile=profile)
    if as_json:
        emit_json([_cert_record(r) for r in rows])
        return
    if not rows:
        typer.echo("no certificates")
    for r in rows:
        typer.echo(f"{r.serial_hex:<42} {r.profile:<16} {r.status:<8} {r.not_after:%Y-%m-%d}  {r.subject}")


@app.command("show")
@handled
def cert_show(
    serial: Annotated[str, typer.Argument(help="Serial number in hex.")],
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM certificate.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show one certificate."""
    with open_runtime() as runtime:
        row = runtime.issuance.get(serial)
    if pem:
        typer.echo(row.pem, nl=False)
        return
    record = _cert_record(row)
    if as_json:
        emit_json(record)
        return
    cert = x509.load_pem_x509_certificate(row.pem.encode())
    for key, value in record.items():
        typer.echo(f"{key:<13} {value}")
    typer.echo(f"{'issuer':<13} {cert.issuer.rfc4514_string()}")
    typer.echo(f"{'der bytes':<13} {len(cert.public_bytes(Encoding.DER))}")
