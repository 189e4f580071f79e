"""``dmboot factory``: provision a manifest of devices, pre-register devices, manage mTLS stations.

``dmboot factory run MANIFEST.csv --profile P --out DIR`` works on the local data
directory (in process, no HTTP) or, with ``--url``, against a remote service as a
station (``--token`` or ``--client-cert``/``--client-key``). The engine and the output
layout are in :mod:`bootstrap.cli.factory_run`; docs/factory.md is the integrator's guide.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from bootstrap.cli.common import cli_actor, emit_json, fail, handled, open_runtime
from bootstrap.cli.factory_output import BUNDLES, DeviceWriter, OutputDir, safe_name, write_report_and_sums
from bootstrap.cli.factory_run import RunOptions, RunReport, read_manifest, run_local, run_remote
from bootstrap.dm.ddf import DdfRegistry
from bootstrap.factory.client import FactoryClient
from bootstrap.factory.keys import KEY_FORMATS
from bootstrap.factory.service import Station
from bootstrap.factory.types import RegistrationSpec
from pki.keys import KeyType

__all__ = ["app"]

app = typer.Typer(help="Factory lines: provision devices in batches, pre-register devices, stations.",
                  no_args_is_help=True)
station_app = typer.Typer(help="Factory stations that authenticate with a client certificate (mTLS).",
                          no_args_is_help=True)
app.add_typer(station_app, name="station")


class _Rate(ProgressColumn):
    """Devices per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} dev/s" if speed else "- dev/s", style="progress.data.speed")


class _Bar:
    """A rich progress bar on stderr (rate and ETA), fed with ``advance``."""

    def __init__(self, total: int, skipped: int, quiet: bool) -> None:
        console = Console(stderr=True)
        self._progress = Progress(TextColumn("[bold]provisioning"), BarColumn(), MofNCompleteColumn(), _Rate(),
                                  TextColumn("eta"), TimeRemainingColumn(), TimeElapsedColumn(), console=console,
                                  disable=quiet or not console.is_terminal, transient=False)
        self._task = self._progress.add_task("devices", total=total, completed=skipped)

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, count: int) -> None:
        self._progress.advance(self._task, count)


def _read_secret(value: str | None, path: Path | None, env: str) -> str | None:
    if path is not None:
        return path.read_text().strip()
    return value or os.environ.get(env) or None


@app.command("run")
@handled
def factory_run(
    manifest: Annotated[Path, typer.Argument(help="CSV: dev_id[,csr_path][,attributes...]; a dev_id,... header row"
                                                  " names attribute columns.", exists=True, dir_okay=False)],
    profile: Annotated[str, typer.Option("--profile", help="The enrollment profile of the devices.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (created; a rerun resumes it).")],
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=64,
                                      help="Requests (remote) or worker processes (local) at a time.")] = 1,
    keygen: Annotated[str | None, typer.Option("--keygen", help="Have the service generate keys of this type"
                                                                " (p256...) for devices without a CSR.")] = None,
    key_format: Annotated[str, typer.Option("--key-format", help="pkcs8 (key.pem) or pkcs12 (key.p12).")] = "pkcs8",
    password_file: Annotated[Path | None, typer.Option("--password-file", help="Batch password for generated"
                                                       " keys (default: DIR/key-password, made once).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000,
                                            help="Devices per request (and per journal sync).")] = 500,
    url: Annotated[str | None, typer.Option("--url", help="Remote service, e.g. https://dmboot:8443; without it"
                                                          " the local data directory is used.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="Station API token (or DMBOOT_FACTORY_TOKEN).")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="File holding the station token.")] = None,
    cacert: Annotated[Path | None, typer.Option("--cacert", help="CA bundle to verify the service's TLS"
                                                                " certificate (its /ca/chain.pem).")] = None,
    client_cert: Annotated[Path | None, typer.Option("--client-cert", help="Station certificate (mTLS).")] = None,
    client_key: Annotated[Path | None, typer.Option("--client-key", help="Station key (mTLS).")] = None,
    with_package: Annotated[bool, typer.Option("--package2", help="Also write package2.json (DM 2.0 package 2;"
                                                                  " about 1 ms of CPU per device).")] = False,
    bundle: Annotated[str, typer.Option("--bundle", help="Per device also: pem (bundle.pem: key, certificate,"
                                                        " CA) or p12 (bundle.p12); dir: the files alone.")] = "dir",
    as_json: Annotated[bool, typer.Option("--json", help="Print the final report as JSON.")] = False,
) -> None:
    """Provision every device of MANIFEST: certificate, chain, key (if generated) and bootstrap package.

    Resumable: rerun the same command after a crash and it continues; no device gets a second certificate.
    """
    if key_format not in KEY_FORMATS:
        raise fail(f"--key-format must be one of {', '.join(KEY_FORMATS)}", 2)
    if bundle not in BUNDLES:
        raise fail(f"--bundle must be one of {', '.join(BUNDLES)}", 2)
    if bundle != "dir" and key_format != "pkcs8":
        raise fail("--bundle pem|p12 builds on PKCS#8 keys; leave --key-format at pkcs8", 2)
    key_type = KeyType.parse(keygen).value if keygen else None
    rows = read_manifest(manifest).rows
    output = OutputDir(out, profile, key_format)
    done = output.done()
    pending = [r for r in rows if r.dev_id not in done]
    needs_key = key_type is not None and any(r.csr_path is None for r in pending)
    options = RunOptions(profile=profile, keygen=key_type, key_format=key_format,
                         password=output.password(password_file) if needs_key else None, batch_size=batch_size,
                         jobs=jobs)
    report = RunReport(profile=profile, out=str(out), total=len(rows), skipped=len(rows) - len(pending))
    started = time.perf_counter()
    try:
        with _Bar(len(rows), report.skipped, as_json) as bar:
            if url is None:
                with open_runtime() as runtime:
                    writer = DeviceWriter(output, options.password, runtime.ddfs if with_package else None)
                    writer.bundle = bundle
                    if pending:
                        run_local(runtime, pending, output, writer, report, options, bar)
            elif pending:
                client = FactoryClient(url, token=_read_secret(token, token_file, "DMBOOT_FACTORY_TOKEN"),
                                       cacert=cacert, client_cert=client_cert, client_key=client_key)
                writer = DeviceWriter(output, options.password, DdfRegistry.load() if with_package else None)
                writer.bundle = bundle
                asyncio.run(run_remote(client, pending, output, writer, report, options, bar))
    except KeyboardInterrupt:
        complete = len(output.done())
        typer.echo(f"interrupted: {complete}/{report.total} devices complete in {out} (their files are written and"
                   " journaled); rerun the same command to resume - no device gets a second certificate", err=True)
        raise typer.Exit(130) from None
    report.elapsed_s = time.perf_counter() - started
    write_report_and_sums(out, output.journal_file, safe_name)
    _summary(report, as_json)
    if report.failed:
        raise typer.Exit(1)


def _summary(report: RunReport, as_json: bool) -> None:
    doc = report.to_json()
    if as_json:
        emit_json(doc)
        return
    rate = f" ({doc['devices_per_s']:,} devices/s)" if doc["devices_per_s"] else ""
    typer.echo(f"{doc['complete']}/{report.total} devices complete in {report.out}: {report.issued} issued,"
               f" {report.existing} already issued, {report.skipped} from the journal, {report.failed} failed;"
               f" {report.elapsed_s:.1f} s{rate}")
    for failure in report.failures[:20]:
        typer.echo(f"  failed {failure['dev_id']}: {failure['error']}", err=True)


@app.command("register")
@handled
def factory_register(
    manifest: Annotated[Path, typer.Argument(help="CSV with a dev_id column (as for `factory run`).",
                                             exists=True, dir_okay=False)],
    profile: Annotated[str, typer.Option("--profile", help="The enrollment profile.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the secrets (JSON, 0600).")],
    method: Annotated[str, typer.Option("--method", help="token (one-time tokens) or group-key.")] = "token",
    ttl_days: Annotated[int, typer.Option("--ttl-days", help="Token lifetime in days.")] = 30,
    url: Annotated[str | None, typer.Option("--url", help="Remote service; default: local.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="Station API token (or DMBOOT_FACTORY_TOKEN).")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="File holding the station token.")] = None,
    cacert: Annotated[Path | None, typer.Option("--cacert", help="CA bundle of the service.")] = None,
) -> None:
    """Register devices for first-boot enrollment; write their tokens or device keys to OUT once."""
    spec = RegistrationSpec.from_json({"profile": profile, "method": method, "token_ttl_days": ttl_days})
    dev_ids = [r.dev_id for r in read_manifest(manifest).rows]
    if out.exists():
        raise fail(f"{out} exists; secrets are written once, to a new file")
    devices: list[dict[str, Any]] = []
    for start in range(0, len(dev_ids), 5000):
        part = dev_ids[start:start + 5000]
        if url is None:
            with open_runtime() as runtime:
                devices += [o.to_json() for o in runtime.factory.registrations.register(Station.local(), spec, part)]
        else:
            client = FactoryClient(url, token=_read_secret(token, token_file, "DMBOOT_FACTORY_TOKEN"), cacert=cacert)
            body = {"profile": profile, "method": method, "token_ttl_days": ttl_days, "devices": part}
            devices += asyncio.run(client.post_json("registrations", body))["devices"]
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"profile": profile, "method": method, "devices": devices}, handle, indent=1)
    failed = [d for d in devices if d["status"] == "failed"]
    typer.echo(f"registered {len(devices) - len(failed)} devices of {profile} ({method}); secrets in {out}")
    for item in failed[:20]:
        typer.echo(f"  failed {item['dev_id']}: {item['error']['detail']}", err=True)
    if failed:
        raise typer.Exit(1)


@station_app.command("add")
@handled
def station_add(
    name: Annotated[str, typer.Argument(help="Station name (also its API token's name, unless --token-name).")],
    cert: Annotated[Path, typer.Option("--cert", help="The station's client certificate (PEM).", exists=True)],
    profile: Annotated[list[str] | None, typer.Option("--profile", help="Allowed enrollment profile.")] = None,
    quota: Annotated[int | None, typer.Option("--quota", help="Device quota.")] = None,
    token_name: Annotated[str | None, typer.Option("--token-name", help="Bind to this existing API token.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Pin a station's client certificate to a factory-line principal (new token, or --token-name)."""
    with open_runtime() as runtime:
        row, token = runtime.factory.stations.add(name, cert.read_text(), actor=cli_actor(), token_name=token_name,
                                                  allowed_profiles=profile, device_quota=quota)
    if as_json:
        emit_json({"name": row.name, "fingerprint": row.cert_fingerprint, "subject": row.subject, "token": token})
        return
    typer.echo(f"station {row.name}: {row.subject} {row.cert_fingerprint}")
    if token:
        typer.echo(token)
        typer.echo("(its API token, for Bearer use; shown once)", err=True)


@station_app.command("list")
@handled
def station_list(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List stations."""
    with open_runtime() as runtime:
        rows = runtime.factory.stations.list()
    records = [{"name": s.name, "token": t, "fingerprint": s.cert_fingerprint, "subject": s.subject,
                "enabled": s.enabled} for s, t in rows]
    if as_json:
        emit_json(records)
        return
    for r in records:
        typer.echo(f"{r['name']:20} {r['token']:20} {r['fingerprint']}  {r['subject']}")


@station_app.command("remove")
@handled
def station_remove(name: Annotated[str, typer.Argument(help="Station name.")]) -> None:
    """Unpin a station's certificate (its token stays; revoke it with `dmboot token revoke`)."""
    with open_runtime() as runtime:
        runtime.factory.stations.remove(name, actor=cli_actor())
    typer.echo(f"removed station {name}")

