"""CRL checking of the whole chain, as DM servers do it: ``openssl verify -crl_check_all`` and real nginx.

nginx with ``ssl_crl`` checks a CRL for every certificate of the chain (X509_V_FLAG_CRL_CHECK_ALL),
the root included, and needs one whose scope (issuingDistributionPoint) matches each certificate's
CRL distribution point. The expected verdicts are openssl's and nginx's.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.settings import Settings
from pki.encoding import private_key_pem
from pki.identity import device_uri
from pki.keys import KeyType, generate_private_key
from pki.profiles import Names
from tests.revocation.helpers import openssl
from tests.support.peers import require_peer
from tests.support.servers import free_port

ADMIN = Requester("test:admin")
PARTITIONS = 4


@dataclass(frozen=True)
class Device:
    dev_id: str
    serial: str
    cert: Path
    chain: Path
    key: Path
    partition: str


def _issue(runtime: Runtime, folder: Path, dev_id: str, profile: str = "device") -> Device:
    key = generate_private_key(KeyType.P256)
    names = (Names(dev_id, uris=(device_uri(dev_id),)) if profile == "device"
             else Names(dev_id, dns=(dev_id,)))
    builder = x509.CertificateSigningRequestBuilder().subject_name(names.subject())
    if profile != "device":
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dev_id)]), critical=False)
    csr = builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)
    issued = runtime.issuance.issue_from_csr(csr, profile, ADMIN, expected=names)
    stem = dev_id.replace(":", "_")
    cert, chain, key_file = folder / f"{stem}.pem", folder / f"{stem}-chain.pem", folder / f"{stem}.key"
    cert.write_text(issued.pem)
    chain.write_text(issued.chain_pem)
    key_file.write_bytes(private_key_pem(key))
    [point] = issued.certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    url = point.full_name[0].value  # type: ignore[index]
    return Device(dev_id, issued.serial_hex, cert, chain, key_file, url.rsplit("/", 1)[-1].removesuffix(".crl"))


def _pem_crl(runtime: Runtime, folder: Path, stem: str) -> Path:
    """Fetch a CRL as served and let openssl turn it into PEM."""
    issuer, kind, scope = runtime.crls.resolve(stem)
    der = folder / f"{stem}.crl"
    der.write_bytes(runtime.crls.current(issuer, kind, scope).der)
    openssl("crl", "-inform", "DER", "-in", der, "-out", folder / f"{stem}.crl.pem")
    return folder / f"{stem}.crl.pem"


def _bundle(folder: Path, name: str, *parts: Path) -> Path:
    path = folder / name
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    return path


def _ca_files(runtime: Runtime, folder: Path) -> tuple[Path, Path]:
    with runtime.database.session() as session:
        root = runtime.authorities.root_row(session).pem
        issuing = runtime.authorities.active_row(session).pem
    (folder / "root.pem").write_text(root)
    (folder / "issuing.pem").write_text(issuing)
    return folder / "root.pem", folder / "issuing.pem"


def _verify_all(root: Path, issuing: Path, crls: Path, device: Device) -> subprocess.CompletedProcess[str]:
    return openssl("verify", "-crl_check_all", "-CAfile", root, "-untrusted", issuing, "-CRLfile", crls,
                   device.cert, check=False)


def _same_partition(runtime: Runtime, folder: Path, prefix: str) -> tuple[Device, Device]:
    """Two devices whose certificates name the same CRL partition (pigeonhole: PARTITIONS + 1 suffice)."""
    seen: dict[str, Device] = {}
    for n in range(PARTITIONS + 1):
        device = _issue(runtime, folder, f"{prefix}{n:03d}")
        if device.partition in seen:
            return seen[device.partition], device
        seen[device.partition] = device
    raise AssertionError("pigeonhole")  # pragma: no cover


@pytest.fixture
def partitioned(settings: Settings) -> Iterator[Runtime]:
    rt, _ = Runtime.initialize(dataclasses.replace(settings, crl_partitions=PARTITIONS), actor="test")
    try:
        yield rt
    finally:
        rt.close()


def test_openssl_crl_check_all_passes_a_good_certificate_and_fails_a_revoked_one(
        partitioned: Runtime, tmp_path: Path) -> None:
    root, issuing = _ca_files(partitioned, tmp_path)
    good, bad = _issue(partitioned, tmp_path, "IMEI:510000000000001"), _issue(partitioned, tmp_path,
                                                                               "IMEI:510000000000002")
    partitioned.revocation.revoke_certificate(bad.serial, "keyCompromise", ADMIN)
    partitioned.crl_publisher.publish(full_after=timedelta(0))
    root_crl = _pem_crl(partitioned, tmp_path, "root")
    complete = _bundle(tmp_path, "complete.pem", root_crl, _pem_crl(partitioned, tmp_path, "issuing-1"))
    accepted = _verify_all(root, issuing, complete, good)
    assert accepted.returncode == 0 and ": OK" in accepted.stdout, accepted.stdout + accepted.stderr
    refused = _verify_all(root, issuing, complete, bad)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    # Each device's own partition CRL, as its distribution point names it, does the same.
    for device, ok in ((good, True), (bad, False)):
        crls = _bundle(tmp_path, f"{device.partition}-chain.pem", root_crl,
                       _pem_crl(partitioned, tmp_path, device.partition))
        result = _verify_all(root, issuing, crls, device)
        assert (result.returncode == 0) is ok, result.stdout + result.stderr


def test_a_partition_crl_is_scoped_to_its_distribution_point(partitioned: Runtime, tmp_path: Path) -> None:
    one = _issue(partitioned, tmp_path, "IMEI:520000000000000")
    other = next(d for n in range(1, 100) if (d := _issue(partitioned, tmp_path, f"IMEI:5200000000000{n:02d}"))
                 .partition != one.partition)
    root, issuing = _ca_files(partitioned, tmp_path)
    partition = _pem_crl(partitioned, tmp_path, one.partition)
    text = openssl("crl", "-in", partition, "-noout", "-text").stdout
    assert f"URI:https://dmboot.test/crl/{one.partition}.crl" in text  # its issuingDistributionPoint
    crls = _bundle(tmp_path, "crls.pem", _pem_crl(partitioned, tmp_path, "root"), partition)
    # Another partition's CRL does not stand in for a certificate's own.
    result = _verify_all(root, issuing, crls, other)
    assert result.returncode != 0 and "at 0 depth lookup: different CRL scope" in result.stdout + result.stderr


# -- nginx as the DM server -----------------------------------------------------------------------


@dataclass
class Nginx:
    port: int
    root: Path
    log: Path


@pytest.fixture
def nginx_for(tmp_path: Path) -> Iterator[object]:
    """``start(runtime, crl_files)``: nginx with ssl_verify_client on, depth 2 and the CRLs in ssl_crl."""
    binary = str(require_peer("nginx"))
    processes: list[subprocess.Popen[bytes]] = []

    def start(runtime: Runtime, crls: Path) -> Nginx:
        folder = tmp_path / "nginx"
        folder.mkdir(exist_ok=True)
        root, _ = _ca_files(runtime, folder)
        server = _issue(runtime, folder, "localhost", profile="dm-server")
        port = free_port()
        log = folder / "error.log"
        temp = "\n".join(f"    {kind}_temp_path {folder}/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (folder / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {log} info;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temp}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {server.chain};
        ssl_certificate_key {server.key};
        ssl_client_certificate {root};
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_crl {crls};
        location / {{ return 200 "welcome $ssl_client_s_dn\\n"; }}
    }}
}}
""")
        process = subprocess.Popen([binary, "-p", str(folder), "-e", str(log), "-c", str(folder / "nginx.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        while not _listening(port):  # a readiness wait, not a time limit: nginx exits on a bad config
            if process.poll() is not None:
                raise AssertionError(f"nginx exited: {log.read_text(errors='replace') if log.exists() else ''}")
            time.sleep(0.05)
        return Nginx(port, root, log)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _curl(nginx: Nginx, device: Device) -> tuple[int, str]:
    result = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--cacert", str(nginx.root), "--cert", str(device.chain),
         "--key", str(device.key), f"https://localhost:{nginx.port}/",
         "--resolve", f"localhost:{nginx.port}:127.0.0.1"],
        capture_output=True, text=True, check=False)
    body, _, status = result.stdout.rpartition("\n")
    return int(status or 0), body


@pytest.mark.slow
def test_nginx_with_the_complete_crls_admits_a_good_device_and_refuses_a_revoked_one(
        partitioned: Runtime, nginx_for: object, tmp_path: Path) -> None:
    good, bad = _issue(partitioned, tmp_path, "IMEI:530000000000001"), _issue(partitioned, tmp_path,
                                                                               "IMEI:530000000000002")
    partitioned.revocation.revoke_certificate(bad.serial, "keyCompromise", ADMIN)
    partitioned.crl_publisher.publish(full_after=timedelta(0))
    crls = _bundle(tmp_path, "crls.pem", _pem_crl(partitioned, tmp_path, "root"),
                   _pem_crl(partitioned, tmp_path, "issuing-1"))
    nginx = nginx_for(partitioned, crls)  # type: ignore[operator]
    status, body = _curl(nginx, good)
    assert status == 200 and "IMEI:530000000000001" in body, body
    status, body = _curl(nginx, bad)
    assert status == 400 and "SSL certificate error" in body, body
    assert "certificate revoked" in nginx.log.read_text(errors="replace")


@pytest.mark.slow
def test_nginx_with_one_partition_crl_refuses_a_device_revoked_in_it_and_admits_a_good_one(
        partitioned: Runtime, nginx_for: object, tmp_path: Path) -> None:
    good, bad = _same_partition(partitioned, tmp_path, "IMEI:540000000000")
    partitioned.revocation.revoke_certificate(bad.serial, "superseded", ADMIN)
    partitioned.crl_publisher.publish(full_after=timedelta(0))
    crls = _bundle(tmp_path, "crls.pem", _pem_crl(partitioned, tmp_path, "root"),
                   _pem_crl(partitioned, tmp_path, good.partition))
    nginx = nginx_for(partitioned, crls)  # type: ignore[operator]
    status, body = _curl(nginx, good)
    assert status == 200 and good.dev_id in body, body
    status, body = _curl(nginx, bad)
    assert status == 400 and "SSL certificate error" in body, body
    assert "certificate revoked" in nginx.log.read_text(errors="replace")
