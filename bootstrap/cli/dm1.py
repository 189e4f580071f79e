"""``dmboot dm1``: DM 1.x bootstrap files for a factory, and credential rotation.

``write-packages MANIFEST --out DIR`` reads the factory manifest (the CSV of
``dmboot factory run``: ``dev_id`` and, in a header row, optional ``imsi`` and
``pin`` columns) and writes, for each registered device::

    DIR/<DevID-safe>/dm1-bootstrap.wbxml   the SyncML DM 1.2 message (MAC over these bytes)
                     dm1-bootstrap.xml     the same message as XML (its own MAC)
                     dm1-dmacc.tnds.xml    the DMAcc 1.0 subtree as TNDS
                     dm1-cp.wbxml          the account as an OMA Client Provisioning w7 document (its own MAC)
                     dm1-bootstrap.json    Content-Types (SEC, MAC), account name, server, PIN

Every file holds the device's DM 1.x secrets and is written 0600, to a temporary
name and renamed. The PIN is the manifest's (it seeds the device's PIN at first
use) or the one kept with the device's credentials.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from bootstrap.cli.common import cli_actor, emit_json, handled, open_runtime
from bootstrap.cli.factory_output import safe_name
from bootstrap.cli.factory_run import read_manifest
from bootstrap.errors import DmBootstrapError
from bootstrap.services.dm1 import Dm1Package

__all__ = ["app", "package_files"]

app = typer.Typer(help="DM 1.x (SyncML DM) bootstrap files and credentials.", no_args_is_help=True)


def package_files(package: Dm1Package) -> dict[str, bytes]:
    """The files written for one device, by name."""
    meta = {"dev_id": package.dev_id, "profile": package.profile, "account": package.account.account_name,
            "server_id": package.account.server_id, "sec": package.sec, "mac": package.mac,
            "wbxml_content_type": package.wbxml.content_type, "xml_content_type": package.xml.content_type,
            "cp_content_type": package.cp.content_type,
            "pin": package.pin, "credentials_ref": package.credentials_ref}
    return {"dm1-bootstrap.wbxml": package.wbxml.body, "dm1-bootstrap.xml": package.xml.body,
            "dm1-dmacc.tnds.xml": package.tnds, "dm1-cp.wbxml": package.cp.body,
            "dm1-bootstrap.json": json.dumps(meta, indent=1).encode()}


def _write_private(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp creates the file 0600
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@app.command("write-packages")
@handled
def write_packages(
    manifest: Annotated[Path, typer.Argument(help="CSV with a dev_id column and optional imsi and pin columns.",
                                             exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Output directory (one folder per device).")],
    sec: Annotated[str | None, typer.Option("--sec", help="NETWORKID, USERPIN or USERPIN_NETWORKID "
                                                          "(default: the profile's dm1_sec).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Write each device's DM 1.x bootstrap message (WBXML, XML, TNDS) for the factory to load."""
    rows = read_manifest(manifest).rows
    written: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    with open_runtime() as runtime:
        for row in rows:
            try:
                package = runtime.dm1.package_for(row.dev_id, imsi=row.attributes.get("imsi"),
                                                  pin=row.attributes.get("pin"), sec=sec, actor=cli_actor())
            except DmBootstrapError as exc:
                failed.append({"dev_id": row.dev_id, "error": type(exc).__name__, "reason": exc.message})
                continue
            folder = out / safe_name(row.dev_id)
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            for name, data in package_files(package).items():
                _write_private(folder / name, data)
            written.append({"dev_id": row.dev_id, "dir": str(folder), "sec": package.sec, "mac": package.mac})
    if as_json:
        emit_json({"written": written, "failed": failed})
    else:
        for item in written:
            typer.echo(f"{item['dev_id']}: {item['dir']} (SEC={item['sec']})")
        for item in failed:
            typer.secho(f"{item['dev_id']}: {item['reason']}", fg=typer.colors.RED, err=True)
    if failed:
        raise typer.Exit(1)


@app.command("rotate")
@handled
def rotate(dev_id: Annotated[str, typer.Argument(help="The device's DevID.")]) -> None:
    """Replace a device's DM 1.x credentials; its DM server reads the new ones from the credential API."""
    with open_runtime() as runtime:
        ref = runtime.dm1.rotate(dev_id, actor=cli_actor())
    typer.echo(f"rotated {dev_id}: {ref.to_uri()}")
