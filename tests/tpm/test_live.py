"""End to end over HTTPS: two `dmboot serve` replicas on one PostgreSQL, a swtpm device, then mutual TLS.

Round 1 goes to one replica and round 2 to the other (nothing of the exchange lives in
a process). The certificate's key is the TPM's: the TPM signs with it (``tpm2_sign``) and the
certificate verifies the signature; then the device does a TLS 1.3 handshake with a server
that requires a client certificate chained to the service's root (``openssl s_server
-Verify``), its CertificateVerify signed in the TPM through the tpm2-openssl provider, behind
a resource manager (``tpm2-abrmd``; docs/tpm.md). The same client without the certificate,
a client whose key is not the TPM's and whose certificate is not the service's, and the
service's certificate with a software key, are refused.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from pki.tpm import TPM_RESIDENT_KEY_POLICY
from tests.conftest import postgres_schema
from tests.enrollment.support import ADMIN, GROUP, certificates_for, configure
from tests.support.servers import free_port, poll, post_json, serve_replicas, stop_process
from tests.support.tpm import SoftTpm, TpmMaker, resource_manager
from tests.tpm.device import CHALLENGE, ENROLL, Post, TpmDevice, chain_der

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PASSPHRASE = "tpm-replica-test-passphrase"
DEV = "IMEI:350000000000099"


@dataclass
class Replicas:
    urls: tuple[str, str]
    root_pem: Path
    settings: Settings


@pytest.fixture
def replicas(postgres_admin_url: str, tmp_path: Path, tpm_maker: TpmMaker, tpm_device: SoftTpm) -> Iterator[Replicas]:
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_schema(postgres_admin_url))
        data_dir = tmp_path / "data"
        settings = Settings(data_dir=data_dir, database_url=database_url, keystore_passphrase=Secret(PASSPHRASE))
        runtime, _ = Runtime.initialize(settings)
        try:
            configure(runtime, attestation=("tpm",))
            runtime.tpm_trust.add(GROUP, "swtpm-maker", tpm_maker.root.public_bytes(Encoding.PEM).decode(),
                                  actor=ADMIN)
            runtime.devices.register(DEV, GROUP, actor=ADMIN)
            with runtime.database.session() as session:
                root_pem = tmp_path / "root.pem"
                root_pem.write_text(runtime.authorities.root_row(session).pem)
        finally:
            runtime.close()
        context = ssl.create_default_context(cafile=str(root_pem))
        urls = serve_replicas(stack, {"DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_DATABASE_URL": database_url,
               "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE}, context, tmp_path)
        yield Replicas((urls[0], urls[1]), root_pem, settings)


def _poster(base: str, context: ssl.SSLContext) -> Post:
    def post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return post_json(base + path, body, context)
    return post


def test_a_tpm_device_enrolls_across_replicas_and_its_tpm_signs_for_the_certificate(
        replicas: Replicas, tpm_device: SoftTpm, tpm_maker: TpmMaker, tmp_path: Path) -> None:
    context = ssl.create_default_context(cafile=str(replicas.root_pem))
    first, second = (_poster(url, context) for url in replicas.urls)
    device = TpmDevice(tpm_device, DEV)
    status, answer = first(CHALLENGE, device.round1(chain=chain_der([tpm_maker.intermediate])))
    assert status == 200, answer
    status, body = second(ENROLL, device.round2(answer, device.activate(answer)))
    assert status == 200, body
    chain = x509.load_pem_x509_certificates(body["certificate_chain_pem"].encode())
    policies = chain[0].extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert TPM_RESIDENT_KEY_POLICY in [p.policy_identifier.dotted_string for p in policies]

    # The TPM signs with the certified key (tpm2_sign, persistent handle) and the certificate's key verifies it.
    digest, signature = tmp_path / "digest", tmp_path / "signature"
    message = secrets.token_bytes(64)
    digest.write_bytes(hashlib.sha256(message).digest())
    device.tpm.run("tpm2_sign", "-c", device.handle, "-g", "sha256", "-d", str(digest), "-f", "plain",
                   "-o", str(signature))
    public = chain[0].public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature.read_bytes(), message, ec.ECDSA(hashes.SHA256()))

    # Mutual TLS with the TPM-resident key: a server that admits only certificates chained to our root.
    leaf, issuers = tmp_path / "device.pem", tmp_path / "issuers.pem"
    leaf.write_bytes(chain[0].public_bytes(Encoding.PEM))
    issuers.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in chain[1:]))
    with _mtls_server(tmp_path, replicas.root_pem) as (port, server_ca), resource_manager(device.tpm) as env:
        tls = ["-connect", f"127.0.0.1:{port}", "-CAfile", str(server_ca), "-verify_return_error", "-tls1_3"]
        admitted = _s_client(env, *tls, "-provider", "tpm2", "-provider", "default",
                             "-cert", str(leaf), "-cert_chain", str(issuers), "-key", f"handle:{device.handle}")
        assert admitted.returncode == 0 and "HTTP/1.0 200 ok" in admitted.stdout, admitted.stdout + admitted.stderr
        # s_server -www echoes the client certificate it verified: the one the service issued.
        assert "Client certificate" in admitted.stdout
        assert chain[0].public_bytes(Encoding.PEM).decode().strip() in admitted.stdout.replace("\r\n", "\n")
        without = _s_client(env, *tls)
        assert "HTTP/1.0 200 ok" not in without.stdout
        assert "certificate required" in without.stderr, without.stderr
        software_cert, software_key = _software_identity(tmp_path, DEV)
        foreign = _s_client(env, *tls, "-cert", str(software_cert), "-key", str(software_key))
        assert "HTTP/1.0 200 ok" not in foreign.stdout
        assert "unknown ca" in foreign.stderr, foreign.stderr
        # The service's certificate is worth nothing without the TPM's key: OpenSSL will not pair it with another.
        stolen = _s_client(env, *tls, "-cert", str(leaf), "-cert_chain", str(issuers), "-key", str(software_key))
        assert stolen.returncode != 0 and "HTTP/1.0 200 ok" not in stolen.stdout
        assert "key values mismatch" in stolen.stderr, stolen.stderr


def _software_identity(folder: Path, common_name: str) -> tuple[Path, Path]:
    """A self-signed certificate and its software key: a client identity that is neither the TPM's nor ours."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{secrets.token_hex(3)}.crt", folder / f"{secrets.token_hex(3)}.key"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return cert_path, key_path


@contextmanager
def _mtls_server(folder: Path, client_ca: Path) -> Iterator[tuple[int, Path]]:
    """``openssl s_server`` requiring a client certificate chained to ``client_ca``: (port, its own cert)."""
    cert, key = _software_identity(folder, "localhost")
    port = free_port()
    log = folder / "s_server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key", str(key),
             "-Verify", "2", "-CAfile", str(client_ca), "-verify_return_error", "-www"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert poll(lambda: _listening(port) or process.poll() is not None, bool) and process.poll() is None, \
            log.read_text()
        yield port, cert
    finally:
        stop_process(process)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _s_client(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "s_client", "-ign_eof", *argv], input="GET / HTTP/1.0\r\n\r\n", env=env,
                          capture_output=True, text=True, check=False)


def test_a_replayed_round_two_on_the_other_replica_is_refused(replicas: Replicas, tpm_device: SoftTpm,
                                                              tpm_maker: TpmMaker) -> None:
    context = ssl.create_default_context(cafile=str(replicas.root_pem))
    first, second = (_poster(url, context) for url in replicas.urls)
    device = TpmDevice(tpm_device, DEV)
    status, answer = first(CHALLENGE, device.round1(chain=chain_der([tpm_maker.intermediate])))
    round2 = device.round2(answer, device.activate(answer))
    assert first(ENROLL, round2)[0] == 200
    status, problem = second(ENROLL, round2)
    assert status == 401 and problem["type"] == "urn:dmboot:problem:authentication-failed", problem
    runtime = Runtime(replicas.settings)
    try:
        assert certificates_for(runtime, DEV) == 1
    finally:
        runtime.close()
