"""The end-to-end stack: `dmboot serve` in a subprocess, a DM server, a data repository, admin setup.

One stack per module and database: SQLite file, and PostgreSQL in a fresh schema.
Set up as an admin would: the CLI initialises, makes an API token and trusts the
manufacturer CA (before `serve`: the TLS layer loads manufacturer CAs when it
starts); the admin API registers the DM server and data repository, issues their
certificates, and creates the profiles, group keys, devices and enrollment tokens.
A Runtime on the same database is used only to check what was (not) issued.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bootstrap.dm.mo import DMACC_1_2
from bootstrap.runtime import Runtime
from bootstrap.settings import Settings
from pki.authority import fingerprint
from pki.encoding import private_key_pem
from tests.conftest import postgres_schema
from tests.dm2.helpers import extra_mo_json
from tests.e2e.device import Device
from tests.e2e.peers import PeerServer, server_csr
from tests.support.servers import free_port, wait_ready

DELIVERIES = ("inline", "hget")
DMBOOT = str(Path(sys.executable).with_name("dmboot"))


@dataclass
class Manufacturer:
    """A manufacturer CA of the test's own making, issuing IDevIDs."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "Acme Devices IDevID CA") -> Manufacturer:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
                             x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(Encoding.PEM).decode()

    def idevid(self, dev_id: str, folder: Path) -> tuple[Path, Path, str]:
        """An IDevID for ``dev_id`` (subject serialNumber): cert file, key file, fingerprint."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, dev_id),
                                         x509.NameAttribute(NameOID.COMMON_NAME, f"Acme device {dev_id}")]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "idevid.pem").write_bytes(cert.public_bytes(Encoding.PEM))
        (folder / "idevid-key.pem").write_bytes(private_key_pem(key))
        return folder / "idevid.pem", folder / "idevid-key.pem", fingerprint(cert)


class AdminApi:
    """The admin JSON API (/api/v1) with a provisioning-admin API token made by the CLI."""

    def __init__(self, base_url: str, token: str, root_pem: str) -> None:
        self._client = httpx.Client(base_url=f"{base_url}/api/v1", verify=ssl.create_default_context(cadata=root_pem),
                                    headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        reply = self._client.request(method, path, json=body)
        assert reply.status_code in (200, 201), f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json()

    def close(self) -> None:
        self._client.close()


@dataclass
class Stack:
    """A running bootstrap service with its peers; admin API and (read-only checks) database handles."""

    admin: AdminApi
    runtime: Runtime
    public_url: str
    root_pem: str
    dm: PeerServer
    repository: PeerServer
    manufacturer: Manufacturer
    folder: Path
    log: Path

    @property
    def bootstrap_url(self) -> str:
        return f"{self.public_url}/dm/bootstrap"

    def device(self, dev_id: str, *, idevid: tuple[Path, Path] | None = None) -> Device:
        return Device(dev_id, self.bootstrap_url, self.root_pem, self.folder / "devices" / dev_id, idevid=idevid)

    def device_status(self, dev_id: str) -> dict[str, Any]:
        """The device as the admin API shows it."""
        result: dict[str, Any] = self.admin.call("GET", f"/devices/{dev_id}")
        return result


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([DMBOOT, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"dmboot {' '.join(args)}: {done.stderr}"
    return done.stdout


def _wait_ready(url: str, root_pem: str, process: subprocess.Popen[bytes], log: Path) -> None:
    wait_ready(f"{url}/readyz", ssl.create_default_context(cadata=root_pem), process, log)


def _configure(admin: AdminApi, folder: Path, dm: PeerServer, repository: PeerServer, root_pem: str) -> None:
    """What an admin does through the API: servers, their certificates, profiles, group keys."""
    admin.call("POST", "/dm-servers", {"server_id": "dm-test", "name": "Test DM server", "url": dm.url})
    admin.call("POST", "/data-repositories", {"name": "repo-test", "url": repository.url})
    for peer, path in ((dm, "/dm-servers/dm-test"), (repository, "/data-repositories/repo-test")):
        key, csr = server_csr()
        issued = admin.call("POST", f"{path}/certificate", {"csr": csr.decode()})
        peer.start(folder / path.split("/")[1], key, issued["certificate_chain_pem"], root_pem)
    for delivery in DELIVERIES:
        # "hget" is the specification's flow, "inline" ours; a device that sends no CSR gets a key made here.
        admin.call("POST", "/profiles", {
            "name": delivery, "dm_servers": ["dm-test"], "data_repositories": ["repo-test"],
            "dmacc": {"Name": "Test DM", "Perm": [DMACC_1_2, "urn:oma:mo:oma-dm-devinfo:1.0"]},
            "attestation": ["token", "group-key", "idevid", "current-cert"], "delivery": delivery,
            "extra_mos": [extra_mo_json()],
            "server_keygen": True})
        admin.call("POST", f"/profiles/{delivery}/group-key")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp(f"e2e-{request.param}")
    port = free_port()
    public_url = f"https://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMBOOT_")}
    env.update(DMBOOT_DATA_DIR=str(folder / "data"), DMBOOT_HOST="127.0.0.1", DMBOOT_PORT=str(port),
               DMBOOT_PUBLIC_URL=public_url, DMBOOT_SERVER_NAMES="127.0.0.1,localhost", DMBOOT_LOG_LEVEL="warning")
    with ExitStack() as cleanup:
        if request.param == "postgresql":
            admin_url: str = request.getfixturevalue("postgres_admin_url")
            env["DMBOOT_DATABASE_URL"] = cleanup.enter_context(postgres_schema(admin_url))
        _cli(env, "init")
        token = json.loads(_cli(env, "token", "create", "e2e-admin", "--role", "provisioning-admin", "--json"))["token"]
        dm_token = json.loads(_cli(env, "token", "create", "dm-test", "--role", "dm-server", "--json"))["token"]
        # The TLS layer loads manufacturer CAs when it starts: trust Acme's before serving.
        manufacturer = Manufacturer.create()
        (folder / "acme-ca.pem").write_text(manufacturer.pem)
        _cli(env, "maker-ca", "add", "acme", "--cert", str(folder / "acme-ca.pem"))
        runtime = Runtime(Settings.load(environ=env))
        cleanup.callback(runtime.close)
        with runtime.database.session() as session:
            root_pem = runtime.authorities.root_row(session).pem
        log = folder / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen([DMBOOT, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
        cleanup.callback(_stop, process)
        _wait_ready(public_url, root_pem, process, log)
        admin = AdminApi(public_url, token, root_pem)
        cleanup.callback(admin.close)
        dm = PeerServer("dm", origin=public_url, origin_trust=root_pem, api_token=dm_token)
        repository = PeerServer("repository", origin=public_url, origin_trust=root_pem)
        cleanup.callback(dm.stop)
        cleanup.callback(repository.stop)
        _configure(admin, folder, dm, repository, root_pem)
        yield Stack(admin, runtime, public_url, root_pem, dm, repository, manufacturer, folder, log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session", autouse=True)
def _dmboot_installed() -> None:
    if not Path(DMBOOT).exists() and shutil.which("dmboot") is None:
        pytest.fail(f"the dmboot command is not installed next to {sys.executable}")
