"""The README's walkthrough from a fresh data directory on a non-default port.

`dmboot serve --port P` initializes and serves; the README's own configuration lines
(`server add`, `repo add`, `profile add`, `device add`, `enroll-token create`) run as
written; a device enrolls with its token, then renews with the certificate it holds
(`current-cert`, which the README's profile now allows). Every URL the device receives -
in the discovery document, the enrollment answer and its certificates, DM 2.0 package 2 - carries port P.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from bootstrap.dm.mo import DMACC_1_2, TRUST_1_0
from bootstrap.dm.package import INITIATION_MEDIA_TYPE, REQUEST_MEDIA_TYPE, DeclaredMo, Initiation
from pki.keys import KeyType, generate_private_key
from tests.factories import make_csr
from tests.support.servers import free_port, wait_ready

PASSPHRASE = "readme-walkthrough-pass"
README = Path(__file__).resolve().parents[2] / "README.md"
DEV_ID = "IMEI:490154203237518"
CONFIG_COMMANDS = ("server add", "repo add", "profile add", "device add", "enroll-token create")

pytestmark = pytest.mark.slow


def readme_commands() -> list[list[str]]:
    """The README's `$D ...` configuration lines, continuation lines joined, comments dropped."""
    text = README.read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        if not line.startswith("$D "):
            continue
        for part in line.split(";"):
            words = shlex.split(part.strip().removeprefix("$D "), comments=True)
            if any(" ".join(words[:2]) == c for c in CONFIG_COMMANDS):
                commands.append(words)
    return commands


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("walkthrough")
    port = free_port()
    assert port != 8443
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMBOOT_")}
    env |= {"DMBOOT_DATA_DIR": str(folder / "data"), "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE}
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "bootstrap", "serve", "--port", str(port)], env=env,
                               stdout=log, stderr=subprocess.STDOUT)

    def dmboot(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bootstrap", *args], env=env, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, f"dmboot {' '.join(args)}: {done.stderr}"
        return done.stdout

    try:
        root = folder / "root.pem"
        # The CA exists once serve has initialized; the readiness wait below covers the rest.
        wait_for = folder / "data" / "tls" / "server-chain.pem"
        while not wait_for.exists():
            assert process.poll() is None, (folder / "serve.log").read_text()
            time.sleep(0.2)
        root.write_text(_root_pem(dmboot("ca", "show", "--pem")))
        context = ssl.create_default_context(cafile=str(root))
        wait_ready(f"https://localhost:{port}/healthz", context, process)
        yield {"port": port, "dmboot": dmboot, "root": root, "folder": folder}
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def _root_pem(chain: str) -> str:
    """The self-signed certificate of ``chain`` (the root)."""
    for cert in x509.load_pem_x509_certificates(chain.encode()):
        if cert.issuer == cert.subject:
            return cert.public_bytes(serialization.Encoding.PEM).decode()
    raise AssertionError("no root in `ca show --pem`")


def _urls(value: Any) -> list[str]:
    if isinstance(value, str):
        return re.findall(r"https?://[^\s\"'<>]+", value)
    if isinstance(value, dict):
        return [u for v in value.values() for u in _urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    return []


def _certificate_urls(pem: str) -> list[str]:
    urls = []
    for cert in x509.load_pem_x509_certificates(pem.encode()):
        for ext in cert.extensions:
            if isinstance(ext.value, x509.CRLDistributionPoints | x509.FreshestCRL):
                urls += [n.value for p in ext.value for n in p.full_name or []]
            elif isinstance(ext.value, x509.AuthorityInformationAccess):
                urls += [d.access_location.value for d in ext.value
                         if d.access_method in (AuthorityInformationAccessOID.OCSP,
                                                AuthorityInformationAccessOID.CA_ISSUERS)]
    return urls


def _ours(urls: list[str]) -> list[str]:
    """The URLs that point at this service (the README's DM server and repository are elsewhere)."""
    return [u for u in urls if urlsplit(u).hostname in ("localhost", "127.0.0.1")]


def _post(url: str, body: dict[str, Any], context: ssl.SSLContext) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",  # noqa: S310 - https
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_readme_profile_allows_renewal_with_the_current_certificate() -> None:
    profile = next(c for c in readme_commands() if c[:2] == ["profile", "add"])
    assert "current-cert" in profile


def test_walkthrough_on_a_non_default_port(world: dict[str, Any], tmp_path: Path) -> None:
    port, dmboot = world["port"], world["dmboot"]
    token = ""
    for command in readme_commands():
        printed = dmboot(*command).strip()
        if command[:2] == ["enroll-token", "create"]:
            token = printed
    assert token
    base = f"https://localhost:{port}"
    context = ssl.create_default_context(cafile=str(world["root"]))
    with urllib.request.urlopen(f"{base}/.well-known/dm-bootstrap", context=context) as response:  # noqa: S310
        discovery = json.loads(response.read())
    key = generate_private_key(KeyType.P256)
    first = _post(f"{base}/api/v1/enroll", {"dev_id": DEV_ID, "csr": make_csr(DEV_ID, key=key).decode(),
                                            "token": token}, context)
    chain = _chain(first)
    received = _ours(_urls(discovery) + _urls(first) + _certificate_urls(chain))
    assert len(received) >= 5
    assert all(urlsplit(u).port == port for u in received), received

    # Renewal: the device presents the certificate it holds (mutual TLS), with a new key.
    (tmp_path / "device.pem").write_text(chain)
    (tmp_path / "device.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    mtls = ssl.create_default_context(cafile=str(world["root"]))
    mtls.load_cert_chain(tmp_path / "device.pem", tmp_path / "device.key")
    renewed = _post(f"{base}/api/v1/enroll", {"dev_id": DEV_ID, "csr": make_csr(
        DEV_ID, key=generate_private_key(KeyType.P256)).decode()}, mtls)
    new_chain = _chain(renewed)
    old_serial = x509.load_pem_x509_certificates(chain.encode())[0].serial_number
    assert x509.load_pem_x509_certificates(new_chain.encode())[0].serial_number != old_serial
    assert all(urlsplit(u).port == port for u in _ours(_urls(renewed) + _certificate_urls(new_chain)))


def test_dm2_package2_urls_carry_the_port(world: dict[str, Any], tmp_path: Path) -> None:
    """DM 2.0 package 1 -> package 2: its CONT (and any HGET of ours) names port P, not 8443."""
    port, dmboot = world["port"], world["dmboot"]
    dev_id = "IMEI:490154203237526"
    dmboot("device", "add", dev_id, "--profile", "fleet")
    token = dmboot("enroll-token", "create", "--profile", "fleet", "--dev-id", dev_id).strip()
    key = generate_private_key(KeyType.P256)
    mos = (DeclaredMo(moid=DMACC_1_2, miids=()), DeclaredMo(moid=TRUST_1_0, miids=()))
    body = Initiation(dev_id=dev_id, mos=mos, csr=make_csr(dev_id, key=key, encoding=serialization.Encoding.DER),
                      features={"tls": ["1.2", "1.3"], "hget": True}, token=token).encode()
    request = urllib.request.Request(f"https://localhost:{port}/dm/bootstrap", data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": INITIATION_MEDIA_TYPE, "Accept": REQUEST_MEDIA_TYPE,
                                              "OMADM-DevID": dev_id})
    context = ssl.create_default_context(cafile=str(world["root"]))
    with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310 - https
        package2 = json.loads(response.read())
    verbs = [command[0] for command in package2["CMD"]]
    assert verbs.count("HGET") == 2 and "CONT" in verbs, verbs  # the trust MO and DMAcc, then the CONT
    received = _ours(_urls(package2))
    assert len(received) == 3 and all(urlsplit(u).port == port for u in received), received


def _chain(answer: dict[str, Any]) -> str:
    """The certificate chain PEM of an enrollment answer, wherever the document keeps it."""
    pems = re.findall(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----", json.dumps(answer).replace(
        "\\n", "\n"))
    assert pems, answer
    leaf = [p for p in pems if "CA" not in x509.load_pem_x509_certificate(p.encode()).subject.rfc4514_string()]
    return "\n".join(leaf[:1] + [p for p in pems if p not in leaf[:1]]) + "\n"
