"""``dmboot tpm-ca``: TPM manufacturer CAs per enrollment profile (TPM attestation, docs/tpm.md).

Thin commands over :class:`~bootstrap.services.tpm_trust.TpmTrustService`; ``--json``
prints data as JSON, errors are one line on stderr (exit 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bootstrap.cli.common import cli_actor, emit_json, handled, open_runtime
from bootstrap.errors import DmBootstrapError

__all__ = ["app"]

app = typer.Typer(help="TPM manufacturer CAs (EK certificate roots and intermediates) per enrollment profile.",
                  no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
ProfileOpt = Annotated[str, typer.Option("--profile", help="The enrollment profile that trusts the CA.")]


@app.command("add")
@handled
def add(
    name: Annotated[str, typer.Argument(help="A name unique within the profile, e.g. acme-tpm-root.")],
    profile: ProfileOpt,
    cert: Annotated[Path, typer.Option("--cert", help="The CA certificate (PEM).")],
    as_json: JsonOpt = False,
) -> None:
    """Trust a TPM manufacturer CA for the EK certificates of a profile's devices."""
    if not cert.is_file():
        raise DmBootstrapError(f"certificate file {cert} does not exist")
    with open_runtime() as runtime:
        row = runtime.tpm_trust.add(profile, name, cert.read_text(), actor=cli_actor())
    emit_json({"profile": profile, "name": row.name, "fingerprint": row.fingerprint}) if as_json else typer.echo(
        f"trusted TPM manufacturer CA {row.name} {row.fingerprint} for profile {profile}")


@app.command("list")
@handled
def list_(profile: Annotated[str | None, typer.Option("--profile", help="Only this profile's CAs.")] = None,
          as_json: JsonOpt = False) -> None:
    """List TPM manufacturer CAs."""
    with open_runtime() as runtime:
        rows = [{"profile": p, "name": r.name, "fingerprint": r.fingerprint, "enabled": r.enabled}
                for p, r in runtime.tpm_trust.list(profile)]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no TPM manufacturer CAs")
    for row in rows:
        typer.echo(f"{row['profile']}  {row['name']}  {row['fingerprint']}  {row['enabled']}")


@app.command("disable")
@handled
def disable(name: Annotated[str, typer.Argument(help="CA name.")], profile: ProfileOpt) -> None:
    """Stop trusting a TPM manufacturer CA (EK certificates chaining only to it are refused)."""
    _set_enabled(name, profile, False)


@app.command("enable")
@handled
def enable(name: Annotated[str, typer.Argument(help="CA name.")], profile: ProfileOpt) -> None:
    """Trust a disabled TPM manufacturer CA again."""
    _set_enabled(name, profile, True)


def _set_enabled(name: str, profile: str, enabled: bool) -> None:
    with open_runtime() as runtime:
        runtime.tpm_trust.set_enabled(profile, name, enabled, actor=cli_actor())
    typer.echo(f"{'enabled' if enabled else 'disabled'} {name} in profile {profile}")
