"""A real dm-bootstrap server for end-to-end tests, and the real clients that talk to it.

:func:`live_server` runs ``dmboot init``, lets the caller prepare the database (profiles,
devices, manufacturer CAs) through a Runtime on the same data directory, then starts
``dmboot serve`` (uvicorn, our TLS context, optional client certificates) on a free
port in a subprocess and waits for ``/healthz``. Clients are ``curl`` and ``openssl``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bootstrap.runtime import Runtime
from bootstrap.settings import Settings
from pki.keys import KeyType, PrivateKey, generate_private_key
from tests.support.servers import free_port

__all__ = ["CurlResult", "LiveServer", "disabling_manufacturer", "dmboot", "free_port", "live_server", "make_ca",
           "make_leaf", "write_key"]

DMBOOT = [sys.executable, "-m", "bootstrap"]
PASSPHRASE = "live-test-passphrase"



@dataclass
class CurlResult:
    """What curl got: exit code, HTTP status, headers (lower-case names) and body."""

    returncode: int
    status: int
    headers: dict[str, str]
    body: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class LiveServer:
    """A running server and the files a client needs."""

    url: str
    data_dir: Path
    env: dict[str, str]
    files: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def root_pem(self) -> Path:
        return self.files / "root.pem"

    @property
    def issuing_pem(self) -> Path:
        return self.files / "issuing.pem"

    def runtime(self) -> Runtime:
        """The test process's Runtime on the server's data directory (same database and keystore)."""
        runtime = self.extra.get("runtime")
        if isinstance(runtime, Runtime):
            return runtime
        return Runtime(Settings.load(self.env))

    def curl(self, path: str, *args: str | Path, data: bytes | None = None) -> CurlResult:
        """``curl --cacert root.pem <url+path> args...``; the body is sent from a file."""
        work = self.files / f"curl-{time.monotonic_ns()}"
        work.mkdir()
        argv: list[str] = ["curl", "-sS", "--cacert", str(self.root_pem), "-o", str(work / "body"),
                           "-D", str(work / "headers"), "-w", "%{http_code}", *map(str, args)]
        if data is not None:
            (work / "request").write_bytes(data)
            argv += ["--data-binary", f"@{work / 'request'}"]
        result = subprocess.run([*argv, self.url + path], capture_output=True, text=True, check=False)
        headers: dict[str, str] = {}
        if (work / "headers").exists():
            for line in (work / "headers").read_text(errors="replace").splitlines()[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
        body = (work / "body").read_bytes() if (work / "body").exists() else b""
        status = int(result.stdout.strip() or 0)
        return CurlResult(result.returncode, status, headers, body, result.stderr)

    def dmboot(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return dmboot(self.env, *args, check=check)


def dmboot(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the ``dmboot`` CLI as a separate process."""
    result = subprocess.run([*DMBOOT, *args], capture_output=True, text=True, env=env, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"dmboot {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@contextlib.contextmanager
def live_server(base: Path, prepare: Callable[[LiveServer, Runtime], None] = lambda s, r: None,
                after_start: Callable[[LiveServer, Runtime], None] = lambda s, r: None) -> Iterator[LiveServer]:
    """Init a data directory, ``prepare`` it, serve it; stop the server on exit."""
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    data_dir = base / "data"
    files = base / "files"
    files.mkdir(parents=True)
    env = {**os.environ, "DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE,
           "DMBOOT_PUBLIC_URL": url, "DMBOOT_PORT": str(port), "DMBOOT_TRUSTED_PROXIES": "127.0.0.1",
           "DMBOOT_DATABASE_URL": "", "DMBOOT_LOG_LEVEL": "warning"}
    env.pop("DMBOOT_CONFIG", None)
    server = LiveServer(url, data_dir, env, files)
    dmboot(env, "init")
    runtime = server.runtime()
    try:
        with runtime.database.session() as session:
            issuing = runtime.authorities.active_row(session)
            root = runtime.authorities.root_row(session)
        server.issuing_pem.write_text(issuing.pem)
        server.root_pem.write_text(root.pem)
        server.extra["runtime"] = runtime
        prepare(server, runtime)
        server.log = base / "server.log"
        with server.log.open("wb") as log:
            server.process = subprocess.Popen([*DMBOOT, "serve", "--port", str(port)], env=env, stdout=log,
                                              stderr=subprocess.STDOUT)
        try:
            _wait_ready(server)
            after_start(server, runtime)
            yield server
        finally:
            server.process.terminate()
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
    finally:
        runtime.close()


def disabling_manufacturer(name: str) -> Callable[[LiveServer, Runtime], None]:
    """An ``after_start`` that disables manufacturer CA ``name`` once the server runs.

    Its TLS layer still trusts the CA (anchors are only ever added to a live context),
    so a refusal must come from the application's own check.
    """

    def after_start(server: LiveServer, runtime: Runtime) -> None:
        runtime.config.set_manufacturer_ca_enabled(name, False, actor="test")

    return after_start


def _wait_ready(server: LiveServer) -> None:
    """Readiness wait: poll /healthz until it answers; fail at once if the server exits."""
    assert server.process is not None
    while True:
        if server.process.poll() is not None:
            log = server.log.read_text() if server.log else ""
            raise AssertionError(f"the server exited with {server.process.returncode}:\n{log}")
        result = server.curl("/healthz")
        if result.returncode == 0 and result.status == 200:
            return
        time.sleep(0.2)


# -- test certificates (manufacturers, foreign CAs) -----------------------------------------------


def make_ca(name: str, key_type: KeyType = KeyType.P256) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA certificate (a manufacturer's, or a foreign one)."""
    key = generate_private_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(ca: x509.Certificate, ca_key: PrivateKey, common_name: str, *,
              serial_number: str | None = None) -> tuple[x509.Certificate, PrivateKey]:
    """A clientAuth leaf under ``ca`` (an IDevID when ``ca`` is a manufacturer's)."""
    key = generate_private_key(KeyType.P256)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if serial_number:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name(attributes)).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def write_key(path: Path, key: PrivateKey) -> Path:
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


def b64(data: bytes) -> bytes:
    """Base64 in 64-character lines, as EST clients send it."""
    text = base64.b64encode(data)
    return b"\n".join(text[i:i + 64] for i in range(0, len(text), 64)) + b"\n"
