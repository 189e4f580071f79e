"""Two real `dmboot serve` processes on one PostgreSQL: one token, one certificate; mTLS attestation.

The processes share the PostgreSQL schema and the data directory (embedded keystore,
TLS files); each is a separate Python interpreter with its own connection pool, so
the one-winner rule is enforced by the database alone (DM-SYS-001).
"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlmodel import select

from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings
from bootstrap.store.models import AuditEvent, CertificateRow, EnrollmentTokenRow
from pki.keys import KeyType, PrivateKey, generate_private_key
from tests.conftest import postgres_schema
from tests.enrollment.support import ADMIN, GROUP, Maker, configure, make_maker
from tests.factories import make_csr
from tests.support.servers import post_json, serve_replicas

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PASSPHRASE = "replica-test-passphrase"
RACED = "IMEI:350000000000777"
CLAIMS = 50


@dataclass
class Cluster:
    urls: tuple[str, str]
    data_dir: Path
    settings: Settings
    maker: Maker
    root_pem: Path




@pytest.fixture(scope="module")
def cluster(postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_schema(postgres_admin_url))
        data_dir = tmp_path_factory.mktemp("replicas") / "data"
        settings = Settings(data_dir=data_dir, database_url=database_url, keystore_passphrase=Secret(PASSPHRASE))
        runtime, _ = Runtime.initialize(settings)
        maker = make_maker()
        try:
            configure(runtime)
            runtime.config.add_manufacturer_ca("acme", maker.pem, actor=ADMIN)  # in the TLS trust store at start
            with runtime.database.session() as session:
                root_pem = data_dir.parent / "root.pem"
                root_pem.write_text(runtime.authorities.root_row(session).pem)
        finally:
            runtime.close()
        context = ssl.create_default_context(cafile=str(root_pem))
        urls = serve_replicas(stack, {"DMBOOT_DATA_DIR": str(data_dir), "DMBOOT_DATABASE_URL": database_url,
               "DMBOOT_KEYSTORE_PASSPHRASE": PASSPHRASE}, context, data_dir.parent)
        yield Cluster((urls[0], urls[1]), data_dir, settings, maker, root_pem)



def _pem_files(folder: Path, name: str, chain_pem: str, key: PrivateKey) -> tuple[Path, Path]:
    cert, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    cert.write_text(chain_pem)
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return cert, key_file


def test_fifty_concurrent_claims_of_one_token_on_two_processes_give_one_certificate(cluster: Cluster) -> None:
    runtime = Runtime(cluster.settings)
    try:
        runtime.devices.register(RACED, GROUP, actor=ADMIN)
        _view, token = runtime.devices.create_token(dev_id=RACED, actor=ADMIN)
    finally:
        runtime.close()
    context = ssl.create_default_context(cafile=str(cluster.root_pem))
    bodies = [{"dev_id": RACED, "csr": make_csr(RACED).decode(), "token": token} for _ in range(CLAIMS)]
    with ThreadPoolExecutor(max_workers=CLAIMS) as pool:
        results = list(pool.map(lambda i: post_json(f"{cluster.urls[i % 2]}/api/v1/enroll", bodies[i], context),
                                range(CLAIMS)))
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 1, 401: CLAIMS - 1}, statuses
    winner = next(body for status, body in results if status == 200)
    runtime = Runtime(cluster.settings)
    try:
        with runtime.database.session() as session:
            rows = session.exec(select(CertificateRow).where(CertificateRow.device_id == RACED)).all()
            token_row = session.exec(select(EnrollmentTokenRow).where(EnrollmentTokenRow.dev_id == RACED)).one()
            events = session.exec(select(AuditEvent).where(AuditEvent.action == "device.enroll",
                                                           AuditEvent.target == RACED)).all()
    finally:
        runtime.close()
    assert [r.serial_hex for r in rows] == [winner["serial"]]
    assert token_row.used_at is not None and token_row.used_by == RACED
    assert Counter(e.outcome for e in events) == {"success": 1, "failure": CLAIMS - 1}


def test_idevid_then_current_certificate_over_mutual_tls(cluster: Cluster, tmp_path: Path) -> None:
    dev_id = "IMEI:350000000000888"
    runtime = Runtime(cluster.settings)
    try:
        runtime.devices.register(dev_id, GROUP, actor=ADMIN)
    finally:
        runtime.close()
    idevid, idevid_key = cluster.maker.idevid(dev_id)
    cert_file, key_file = _pem_files(tmp_path, "idevid", idevid.public_bytes(Encoding.PEM).decode(), idevid_key)
    context = ssl.create_default_context(cafile=str(cluster.root_pem))
    context.load_cert_chain(cert_file, key_file)
    key = generate_private_key(KeyType.P256)
    status, document = post_json(f"{cluster.urls[0]}/api/v1/enroll", {"dev_id": dev_id, "csr": make_csr(dev_id, key=key)
                             .decode()}, context)
    assert status == 200, document
    # Renewal over the other replica, authenticated by the certificate just issued.
    cert_file, key_file = _pem_files(tmp_path, "operational", document["certificate_chain_pem"], key)
    renewal = ssl.create_default_context(cafile=str(cluster.root_pem))
    renewal.load_cert_chain(cert_file, key_file)
    status, renewed = post_json(f"{cluster.urls[1]}/api/v1/enroll", {"dev_id": dev_id, "csr": make_csr(dev_id)
                            .decode()}, renewal)
    assert status == 200, renewed
    assert renewed["serial"] != document["serial"]
    # A device that presents no client certificate and nothing else is refused.
    status, problem = post_json(f"{cluster.urls[0]}/api/v1/enroll", {"dev_id": dev_id, "csr": make_csr(dev_id)
                            .decode()}, ssl.create_default_context(cafile=str(cluster.root_pem)))
    assert status == 401 and "enrollment refused" in problem["detail"]  # the generic refusal of the channel
