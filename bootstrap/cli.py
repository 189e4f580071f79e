"""The ``dmboot`` command.

Every command reads settings once (``--data-dir``/``--config`` or the
environment). Errors are one line on stderr and a non-zero exit: 1 for a refused
or failed operation, 2 for bad usage (typer's own).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap import __version__
from bootstrap.errors import DmBootstrapError
from bootstrap.runtime import Runtime
from bootstrap.secrets.embedded import EmbeddedKeystoreWarning
from bootstrap.services.issuance import Requester
from bootstrap.settings import Settings
from bootstrap.store.models import CertificateRow
from pki.errors import PkiError
from pki.keys import KeyType

__all__ = ["app", "main"]

app = typer.Typer(help="dm-bootstrap: OMA DM 2.0 bootstrap and credential provisioning.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
ca_app = typer.Typer(help="The certificate authorities.", no_args_is_help=True)
cert_app = typer.Typer(help="Issue and inspect certificates.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(ca_app, name="ca")
app.add_typer(cert_app, name="cert")
app.add_typer(db_app, name="db")

F = TypeVar("F", bound=Callable[..., Any])


class _State:
    data_dir: Path | None = None
    config: Path | None = None


_state = _State()


@app.callback()
def _options(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", envvar="DMBOOT_DATA_DIR",
                                                   help="Data directory (default ./data).")] = None,
    config: Annotated[Path | None, typer.Option("--config", envvar="DMBOOT_CONFIG",
                                                 help="Config file (default <data dir>/dmboot.toml).")] = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"dmboot {__version__}")
        raise typer.Exit()
    _state.data_dir, _state.config = data_dir, config


def _settings(**overrides: Any) -> Settings:
    environ = dict(os.environ)
    if _state.data_dir is not None:
        environ["DMBOOT_DATA_DIR"] = str(_state.data_dir)
    settings = Settings.load(environ, _state.config)
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def handled(func: F) -> F:
    """Turn the project's errors into one line on stderr and exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DmBootstrapError, PkiError) as exc:
            raise _fail(exc.message) from None
        except OSError as exc:
            raise _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def _runtime(settings: Settings | None = None) -> Iterator[Runtime]:
    settings = settings or _settings()
    if not settings.data_dir.exists() and not settings.database_url:
        raise DmBootstrapError(f"no data directory at {settings.data_dir}; run `dmboot init` first")
    with warnings.catch_warnings():
        # The key-file warning is shown by `init` and `serve`; repeating it on every
        # read-only command would bury the output.
        warnings.simplefilter("ignore", EmbeddedKeystoreWarning)
        runtime = Runtime(settings)
    try:
        yield runtime
    finally:
        runtime.close()


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


# -- init / serve ------------------------------------------------------------------


@app.command()
@handled
def init(
    key_type: Annotated[str | None, typer.Option("--key-type", help="CA key type: p256, p384, ed25519, rsa2048...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create the data directory, config, database schema, CA hierarchy and TLS certificate."""
    settings = _settings(ca_key_type=KeyType.parse(key_type) if key_type else None)
    runtime, report = Runtime.initialize(settings)
    runtime.close()
    hierarchy = report.hierarchy
    if as_json:
        _emit_json({"data_dir": str(report.data_dir), "created": report.created, "changed": bool(report.created),
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
) -> None:
    """Start the HTTPS service, initializing on first run."""
    import uvicorn

    settings = _settings(host=host, port=port, workers=workers)
    runtime, report = Runtime.initialize(settings, actor="cli:serve")
    for item in report.created:
        typer.echo(f"created {item}")
    tls = runtime.tls
    password = runtime.server_key_password()
    runtime.close()
    # Workers build the app from the environment: hand them the same data dir and config.
    os.environ["DMBOOT_DATA_DIR"] = str(settings.data_dir.resolve())
    if _state.config is not None:
        os.environ["DMBOOT_CONFIG"] = str(_state.config.resolve())
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    typer.echo(f"dm-bootstrap serving on https://{settings.host}:{settings.port}  (CA chain: /ca/chain.pem)")
    uvicorn.run(
        "bootstrap.asgi:app", host=settings.host, port=settings.port, workers=settings.workers,
        ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key), ssl_keyfile_password=password,
        log_level=settings.log_level, proxy_headers=False,
    )


@db_app.command("upgrade")
@handled
def db_upgrade() -> None:
    """Bring the database schema up to date (keeps data)."""
    from bootstrap.store import migrate

    with _runtime() as runtime:
        migrate.upgrade(runtime.database)
        typer.echo(f"schema at {migrate.current_revision(runtime.database)}")


# -- ca --------------------------------------------------------------------------


@ca_app.command("show")
@handled
def ca_show(
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM chain (issuing, then root).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show the CA hierarchy."""
    with _runtime() as runtime, runtime.database.session() as session:
        rows = runtime.authorities.all_rows(session)
    if not rows:
        raise DmBootstrapError("no CA hierarchy yet; run `dmboot init`")
    if pem:
        active = [r for r in rows if r.active] + [r for r in rows if r.kind == "root"]
        typer.echo("".join(r.pem for r in active), nl=False)
        return
    records = [{"name": r.name, "kind": r.kind, "active": r.active, "subject": r.subject,
                "serial": r.serial_hex, "not_before": r.not_before.isoformat(),
                "not_after": r.not_after.isoformat(), "fingerprint": r.fingerprint,
                "key": r.key_ref.split("#")[0]} for r in rows]
    if as_json:
        _emit_json(records)
        return
    for r in records:
        flag = " (active)" if r["active"] else ""
        typer.echo(f"{r['name']:<10} {r['kind']:<8}{flag}\n  subject     {r['subject']}\n"
                   f"  valid       {r['not_before']} .. {r['not_after']}\n  fingerprint {r['fingerprint']}\n"
                   f"  key         {r['key']}")


# -- cert ------------------------------------------------------------------------


def _cert_record(row: CertificateRow) -> dict[str, Any]:
    return {"serial": row.serial_hex, "profile": row.profile, "subject": row.subject,
            "sans": json.loads(row.sans), "device_id": row.device_id, "key_type": row.key_type,
            "not_before": row.not_before.isoformat(), "not_after": row.not_after.isoformat(),
            "status": row.status, "fingerprint": row.fingerprint, "requested_by": row.requested_by}


@cert_app.command("issue")
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
    with _runtime() as runtime:
        issued = runtime.issuance.issue_from_csr(csr.read_bytes(), profile, Requester("cli:admin"))
    if out is not None:
        out.write_text(issued.chain_pem)
    if as_json:
        _emit_json({"serial": issued.serial_hex, "profile": issued.profile, "fingerprint": issued.fingerprint,
                    "not_after": issued.certificate.not_valid_after_utc.isoformat(),
                    "out": str(out) if out else None, "pem": None if out else issued.chain_pem})
    elif out is None:
        typer.echo(issued.chain_pem, nl=False)
    else:
        typer.echo(f"issued serial {issued.serial_hex} ({issued.profile}) -> {out}", err=True)


@cert_app.command("list")
@handled
def cert_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    profile: Annotated[str | None, typer.Option(help="Only this profile.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
) -> None:
    """List issued certificates, newest first."""
    with _runtime() as runtime:
        rows = runtime.issuance.list(limit=limit, profile=profile)
    if as_json:
        _emit_json([_cert_record(r) for r in rows])
        return
    if not rows:
        typer.echo("no certificates")
    for r in rows:
        typer.echo(f"{r.serial_hex:<42} {r.profile:<16} {r.status:<8} {r.not_after:%Y-%m-%d}  {r.subject}")


@cert_app.command("show")
@handled
def cert_show(
    serial: Annotated[str, typer.Argument(help="Serial number in hex.")],
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM certificate.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show one certificate."""
    with _runtime() as runtime:
        row = runtime.issuance.get(serial)
    if pem:
        typer.echo(row.pem, nl=False)
        return
    record = _cert_record(row)
    if as_json:
        _emit_json(record)
        return
    cert = x509.load_pem_x509_certificate(row.pem.encode())
    for key, value in record.items():
        typer.echo(f"{key:<13} {value}")
    typer.echo(f"{'issuer':<13} {cert.issuer.rfc4514_string()}")
    typer.echo(f"{'der bytes':<13} {len(cert.public_bytes(Encoding.DER))}")


def _one_line_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
    return f"warning: {message}\n"


def main() -> None:
    """Console entry point."""
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
