"""`dmboot serve` as the README runs it: a real process, real HTTPS, real client certificates."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from bootstrap.runtime import Runtime
from bootstrap.services.issuance import Requester
from bootstrap.settings import Secret, Settings
from pki.keys import KeyType, generate_private_key
from tests.factories import make_csr
from tests.support.servers import free_port, wait_ready

PASSPHRASE = "serve-test-passphrase"




@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("serve") / "data"
    port = free_port()
    env = {**os.environ, "DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE}
    log = (data_dir.parent / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "bootstrap", "serve", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        root = data_dir / "root.pem"
        deadline = time.monotonic() + 60
        while not (data_dir / "tls" / "server-chain.pem").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        settings = Settings.load({"DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE})
        runtime = Runtime(settings)
        with runtime.database.session() as session:
            root.write_text(runtime.authorities.root_row(session).pem)
        runtime.close()
        context = ssl.create_default_context(cafile=str(root))
        wait_ready(f"https://localhost:{port}/healthz", context, process)
        yield f"https://localhost:{port}", data_dir
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _get(url: str, context: ssl.SSLContext) -> dict[str, object]:
    with urllib.request.urlopen(url, context=context, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_service_is_ready_over_verified_https(served: tuple[str, Path]) -> None:
    base, data_dir = served
    context = ssl.create_default_context(cafile=str(data_dir / "root.pem"))
    assert _get(f"{base}/readyz", context)["status"] == "ready"
    with urllib.request.urlopen(f"{base}/ca/chain.pem", context=context) as response:  # noqa: S310
        assert response.read().count(b"BEGIN CERTIFICATE") == 2


def test_a_wrong_trust_anchor_fails_the_handshake(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    context = ssl.create_default_context()  # system roots: our CA is not among them
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        _get(f"{base}/healthz", context)


def test_the_app_sees_the_client_certificate(served: tuple[str, Path], tmp_path: Path) -> None:
    base, data_dir = served
    settings = Settings(data_dir=data_dir, keystore_passphrase=Secret(PASSPHRASE))
    runtime = Runtime(settings)
    key = generate_private_key(KeyType.P256)
    issued = runtime.issuance.issue_from_csr(make_csr("IMEI:350000000000001", key=key), "device", Requester("test"))
    runtime.close()
    (tmp_path / "device.pem").write_text(issued.chain_pem)
    (tmp_path / "device.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(cafile=str(data_dir / "root.pem"))
    context.load_cert_chain(tmp_path / "device.pem", tmp_path / "device.key")
    seen = _get(f"{base}/api/v1/whoami", context)
    assert seen["client_certificate"] == {
        "subject": "CN=IMEI:350000000000001",
        "issuer": issued.certificate.issuer.rfc4514_string(),
        "fingerprint": issued.fingerprint,
    }
    anonymous = _get(f"{base}/api/v1/whoami", ssl.create_default_context(cafile=str(data_dir / "root.pem")))
    assert anonymous["client_certificate"] is None


@pytest.mark.parametrize(("cipher", "accepted"), [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", True),
    ("ECDHE-ECDSA-AES128-SHA", False),  # CBC: refused since issue 13
    ("ECDHE-ECDSA-AES256-SHA384", False),
])
def test_tls12_offers_only_aead_suites(served: tuple[str, Path], cipher: str, accepted: bool) -> None:
    base, _ = served
    port = base.rsplit(":", 1)[1]
    result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-cipher", cipher],
                            input=b"", capture_output=True, timeout=60)
    printed = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    negotiated = f"Cipher is {cipher}" in printed or f"Cipher    : {cipher}" in printed
    assert negotiated is accepted, printed[-1500:]
