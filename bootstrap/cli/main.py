"""The ``dmboot`` command.

Every command reads settings once (``--data-dir``/``--config`` or the
environment). Errors are one line on stderr and a non-zero exit: 1 for a refused
or failed operation, 2 for bad usage (typer's own). Command groups live in their
own modules and are registered below.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from bootstrap import __version__
from bootstrap.cli.common import (
    cli_actor,
    emit_json,
    handled,
    keystore_warning_once,
    load_settings,
    open_runtime,
    state,
)
from bootstrap.cli.help_text import tidy
from bootstrap.cli.lazy import LazyGroup

__all__ = ["app", "main"]

# The command groups (admin, cert, profile...) are imported when named: bootstrap/cli/lazy.py.
app = typer.Typer(help="dm-bootstrap: OMA DM 2.0 bootstrap and credential provisioning.", cls=LazyGroup,
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dmboot {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", envvar="DMBOOT_DATA_DIR",
                                                   help="Data directory (default ./data).")] = None,
    config: Annotated[Path | None, typer.Option("--config", envvar="DMBOOT_CONFIG",
                                                 help="Config file (default <data dir>/dmboot.toml).")] = None,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No warnings; errors only.")] = False,
) -> None:
    state.data_dir, state.config, state.quiet = data_dir, config, quiet
    if quiet:
        warnings.simplefilter("ignore")


# -- init / serve ------------------------------------------------------------------


@app.command()
@handled
def init(
    key_type: Annotated[
        str | None, typer.Option("--key-type", help="CA key type: p256, p384, ed25519, rsa2048...")
    ] = None,
    ca_keys: Annotated[str | None, typer.Option(
        "--ca-keys", help="Where CA keys live: embedded, vault-transit (never leave Vault) or vault-kv. "
        "vault-* use the [vault] settings (DMBOOT_VAULT_ADDR, DMBOOT_VAULT_TOKEN...).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port written to the config (default 8443).")] = None,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", help="Base URL devices reach the service at (default https://localhost:<port>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create the data directory, config, database schema, CA hierarchy and TLS certificate."""
    from bootstrap.cli.secrets import check_hierarchy_keys, with_ca_keys
    from bootstrap.runtime import Runtime
    from pki.key_types import KeyType

    settings = load_settings(ca_key_type=KeyType.parse(key_type) if key_type else None, port=port,
                             public_url=public_url)
    if ca_keys is not None:
        settings = with_ca_keys(settings, ca_keys)
    with keystore_warning_once(settings):
        runtime, report = Runtime.initialize(settings, actor=cli_actor())
    runtime.close()
    hierarchy = report.hierarchy
    if hierarchy is not None and not hierarchy.created and ca_keys is not None:
        check_hierarchy_keys(hierarchy, ca_keys)
    if as_json:
        emit_json({"data_dir": str(report.data_dir), "created": report.created, "changed": bool(report.created),
                    "root": hierarchy.root.fingerprint if hierarchy else None,
                    "issuing": hierarchy.issuing.fingerprint if hierarchy else None})
        return
    if not report.created:
        typer.echo(f"Already initialized in {report.data_dir}; nothing changed.")
    for item in report.created:
        typer.echo(f"created {item}")
    if hierarchy:
        typer.echo(f"root CA     {hierarchy.root.subject}  {hierarchy.root.fingerprint}")
        typer.echo(f"issuing CA  {hierarchy.issuing.subject}  {hierarchy.issuing.fingerprint}")


@app.command()
@handled
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (one per core).")] = None,
    log_format: Annotated[str | None, typer.Option("--log-format", help="Log lines as text or json.")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", help="Port of /metrics on metrics_host (default 127.0.0.1:9464); 0 turns it off.")] = None,
) -> None:
    """Start the HTTPS service, initializing on first run."""
    from bootstrap import logs, server
    from bootstrap.runtime import Runtime
    from bootstrap.server_port import check_port_free
    from bootstrap.settings import port_mismatch

    settings = load_settings(host=host, port=port, workers=workers, log_format=log_format,
                             metrics_port=metrics_port)
    settings.validate()
    if (mismatch := port_mismatch(settings)) is not None:
        typer.secho(f"warning: {mismatch}", fg=typer.colors.YELLOW, err=True)
    check_port_free(settings.host, settings.port)
    logs.configure(settings.log_format, settings.log_level)  # replaces main()'s errors-only setup
    with keystore_warning_once(settings):
        runtime, report = Runtime.initialize(settings, actor=cli_actor())
    for item in report.created:
        typer.echo(f"created {item}")
    tls = runtime.tls
    password = runtime.server_key_password()
    runtime.close()
    if state.config is not None:  # workers read settings from the environment
        os.environ["DMBOOT_CONFIG"] = str(state.config.resolve())
    # ... including what the command line chose, so the app's URLs follow --port too.
    os.environ.update(DMBOOT_HOST=settings.host, DMBOOT_PORT=str(settings.port), DMBOOT_PUBLIC_URL=settings.public_url)
    typer.echo(f"dm-bootstrap serving on https://{settings.host}:{settings.port}  (CA chain: /ca/chain.pem)")
    server.run(settings, cert=str(tls.cert), key=str(tls.key), key_password=password)


@db_app.command("upgrade")
@handled
def db_upgrade() -> None:
    """Bring the database schema up to date (keeps data)."""
    from bootstrap.store import migrate

    with open_runtime() as runtime:
        migrate.upgrade(runtime.database)
        typer.echo(f"schema at {migrate.current_revision(runtime.database)}")


def _one_line_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
    return f"warning: {message}\n"


def main() -> None:
    """Console entry point."""
    warnings.formatwarning = _one_line_warning
    # Commands print what they did and, on failure, one `error:` line; a library's
    # warnings on the way (e.g. Vault denying lookup-self before it denies the real
    # call) would blur that line. `serve` installs its own logging.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        tidy(typer.main.get_command(app))(prog_name="dmboot")
    except KeyboardInterrupt:
        sys.exit(130)
