"""``dmboot admin``: human admins of the console, their roles, TOTP and client certificates.

The CLI runs on the server with the service's own database and secret store: it
is the operator of last resort (this is how the first admin comes to be), so it
needs no role - but the last security-admin still cannot be demoted or disabled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bootstrap.cli.common import cli_actor, emit_json, fail, handled, open_runtime

app = typer.Typer(help="Human admins of the web console: roles, passwords, TOTP.", no_args_is_help=True)
totp_app = typer.Typer(help="Time-based one-time passwords (RFC 6238) for console logins.", no_args_is_help=True)
cert_app = typer.Typer(help="Client certificates that log an admin in to the console.", no_args_is_help=True)
app.add_typer(totp_app, name="totp")
app.add_typer(cert_app, name="cert")

RoleOption = Annotated[list[str], typer.Option(
    "--role", help="security-admin, provisioning-admin, factory-line, auditor (repeat for more).")]


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        return password_file.read_text().rstrip("\r\n")
    first = typer.prompt("Password", hide_input=True)
    if first != typer.prompt("Repeat the password", hide_input=True):
        raise fail("the passwords differ")
    return str(first)


@app.command("create")
@handled
def admin_create(
    name: Annotated[str, typer.Argument(help="Login name: a-z 0-9 . _ -")],
    role: RoleOption,
    password_file: Annotated[Path | None, typer.Option("--password-file", help="Read the password from this file"
                                                       " (first line) instead of prompting twice.")] = None,
) -> None:
    """Create an admin (prompts for the password twice)."""
    password = _password(password_file)
    with open_runtime() as runtime:
        info = runtime.admins.create(name, password, role, actor=cli_actor())
    typer.echo(f"created admin {info.username} with roles {', '.join(info.roles)}")


@app.command("list")
@handled
def admin_list(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List admins with their roles."""
    with open_runtime() as runtime:
        admins = runtime.admins.list_admins()
    if as_json:
        emit_json([a.as_json() for a in admins])
        return
    for a in admins:
        flags = [f for f, on in (("disabled", a.disabled), ("totp", a.totp_enabled),
                                 ("cert", a.cert_fingerprint is not None)) if on]
        typer.echo(f"{a.username:24} {','.join(a.roles) or '-':40} {' '.join(flags)}")


@app.command("grant")
@handled
def admin_grant(name: Annotated[str, typer.Argument()], role: Annotated[str, typer.Argument()]) -> None:
    """Give an admin one more role."""
    with open_runtime() as runtime:
        info = runtime.admins.grant(name, role, actor=cli_actor())
    typer.echo(f"{info.username}: {', '.join(info.roles)}")


@app.command("revoke-role")
@handled
def admin_revoke_role(name: Annotated[str, typer.Argument()], role: Annotated[str, typer.Argument()]) -> None:
    """Take a role away from an admin (not the last security-admin's)."""
    with open_runtime() as runtime:
        info = runtime.admins.revoke_role(name, role, actor=cli_actor())
    typer.echo(f"{info.username}: {', '.join(info.roles) or 'no roles'}")


@app.command("disable")
@handled
def admin_disable(name: Annotated[str, typer.Argument()]) -> None:
    """Disable an admin and end their console sessions."""
    with open_runtime() as runtime:
        runtime.admins.set_disabled(name, True, actor=cli_actor())
    typer.echo(f"disabled {name}")


@app.command("enable")
@handled
def admin_enable(name: Annotated[str, typer.Argument()]) -> None:
    """Enable a disabled admin again."""
    with open_runtime() as runtime:
        runtime.admins.set_disabled(name, False, actor=cli_actor())
    typer.echo(f"enabled {name}")


@app.command("password")
@handled
def admin_password(
    name: Annotated[str, typer.Argument()],
    password_file: Annotated[Path | None, typer.Option("--password-file", help="Read the new password from this"
                                                       " file.")] = None,
) -> None:
    """Set a new password for an admin (ends their console sessions)."""
    password = _password(password_file)
    with open_runtime() as runtime:
        runtime.admins.set_password(name, password, actor=cli_actor())
    typer.echo(f"password of {name} changed")


@totp_app.command("enable")
@handled
def totp_enable(
    name: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Give an admin a new TOTP secret; print it and its otpauth:// URI once."""
    with open_runtime() as runtime:
        secret, uri = runtime.admins.enable_totp(name, actor=cli_actor())
    if as_json:
        emit_json({"username": name, "secret": secret, "uri": uri})
        return
    typer.echo(f"secret  {secret}")
    typer.echo(f"uri     {uri}")
    typer.echo("(add it to an authenticator app now; it is not shown again)", err=True)


@totp_app.command("disable")
@handled
def totp_disable(name: Annotated[str, typer.Argument()]) -> None:
    """Stop asking an admin for TOTP codes."""
    with open_runtime() as runtime:
        runtime.admins.disable_totp(name, actor=cli_actor())
    typer.echo(f"TOTP disabled for {name}")


@cert_app.command("bind")
@handled
def cert_bind(
    name: Annotated[str, typer.Argument()],
    cert: Annotated[Path, typer.Option("--cert", help="The admin's client certificate, PEM.")],
) -> None:
    """Let an admin log in to the console with this client certificate."""
    with open_runtime() as runtime:
        digest = runtime.admins.bind_certificate(name, cert.read_bytes(), actor=cli_actor())
    typer.echo(f"{name}: {digest}")


@cert_app.command("unbind")
@handled
def cert_unbind(name: Annotated[str, typer.Argument()]) -> None:
    """Forget an admin's client certificate."""
    with open_runtime() as runtime:
        runtime.admins.bind_certificate(name, None, actor=cli_actor())
    typer.echo(f"{name}: no client certificate")
