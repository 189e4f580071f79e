"""Vault sealed, stopped, restarted or denying: unavailable while it lasts, working again after.

Under a live service: 503 + Retry-After, one CLI line, nothing issued; then recovery
without restarting the service. The server is a production-mode OpenBao on Raft
storage (:class:`BaoServer`), so a real stop and start keeps its keys, and the same
running service just carries on. The HTTP side is the app's own error mapping and
``/readyz``, plus a one-line route that calls the issuance service directly, so the
outage is seen by the service layer itself and not only by one channel.

Under a live store (:class:`VaultSecretStore` on a dev server of its own): sealed,
stopped and restarted, it is unavailable and then works again with the same object.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import func, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.errors import SecretStoreError, SecretStoreUnavailable
from bootstrap.runtime import Runtime
from bootstrap.secrets.vault.config import VaultConfig
from bootstrap.secrets.vault.policy import policy_hcl
from bootstrap.secrets.vault.store import VaultSecretStore
from bootstrap.services.issuance import Requester
from bootstrap.settings import Secret, Settings
from bootstrap.store.models import CertificateRow
from pki.errors import PkiError, SignerUnavailable
from pki.keys import KeyType
from tests.factories import make_csr
from tests.support.backends import vault_settings
from tests.support.openbao import BaoDevServer, BaoServer

pytestmark = pytest.mark.vault

DMBOOT = [sys.executable, "-m", "bootstrap"]


@pytest.fixture(scope="module")
def vault(bao_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """One production-mode OpenBao for this module; tests stop, seal and restart it."""
    with BaoServer(bao_binary, tmp_path_factory.mktemp("bao-raft")) as server:
        yield server


@pytest.fixture
def live_vault(vault: BaoServer) -> Iterator[BaoServer]:
    """The module's server, running and unsealed again after the test whatever it did."""
    yield vault
    if not vault.running:
        vault.start()
    elif (vault.health() or {}).get("sealed"):
        vault.unseal()


@dataclasses.dataclass
class Service:
    """A running service on ``vault`` with a token that holds exactly the service policy."""

    settings: Settings
    runtime: Runtime
    client: TestClient
    policy_name: str
    policy: str
    token: str

    def issue(self, dev_id: str) -> httpx.Response:
        return self.client.post("/test/issue", content=make_csr(dev_id))

    def certificates(self) -> int:
        with self.runtime.database.session() as session:
            return int(session.exec(select(func.count()).select_from(CertificateRow)).one())

    def cli(self, tmp_path: Path, dev_id: str) -> subprocess.CompletedProcess[str]:
        """``dmboot cert issue`` in a fresh process (nothing cached: it must reach Vault itself)."""
        csr = tmp_path / f"{dev_id.replace(':', '_')}.pem"
        csr.write_bytes(make_csr(dev_id))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DMBOOT_", "BAO_", "VAULT_"))}
        env |= {"DMBOOT_DATA_DIR": str(self.settings.data_dir), "DMBOOT_DATABASE_URL": self.settings.database_url,
                "DMBOOT_VAULT_TOKEN": self.token, "DMBOOT_VAULT_TIMEOUT": "5"}
        return subprocess.run([*DMBOOT, "cert", "issue", "--csr", str(csr), "--cert-profile", "device", "--json"],
                              capture_output=True, text=True, env=env, check=False)


def _test_app(runtime: Runtime) -> Starlette:
    app = create_app(runtime=runtime)

    async def issue(request: Request) -> Response:
        csr = await request.body()
        issued = await run_in_threadpool(runtime.issuance.issue_from_csr, csr, "device", Requester("test:http"))
        return Response(issued.pem, media_type="application/x-pem-file")

    app.router.routes.append(Route("/test/issue", issue, methods=["POST"]))
    return app


@pytest.fixture
def service(live_vault: BaoServer, tmp_path: Path) -> Iterator[Service]:
    base = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'dmboot.db'}",
                    public_url="https://dmboot.test")
    prefix = f"t{secrets.token_hex(5)}"
    policy = policy_hcl(VaultConfig(addr=live_vault.addr, token=Secret("-"), key_prefix=prefix))
    live_vault.write(f"sys/policies/acl/{prefix}", {"policy": policy}, method="PUT")
    token = live_vault.write("auth/token/create", {"policies": [prefix], "no_default_policy": True})
    token_value = str(token["auth"]["client_token"])
    settings = vault_settings(base, live_vault.addr, token_value, "vault-transit", key_prefix=prefix)
    runtime, _ = Runtime.initialize(settings, actor="test")
    with TestClient(_test_app(runtime)) as client:
        yield Service(settings, runtime, client, prefix, policy, token_value)
    runtime.close()


def assert_unavailable(service: Service, tmp_path: Path, cause: str) -> None:
    """Every way in answers "unavailable, retry later" and nothing is recorded as issued."""
    before = service.certificates()
    response = service.issue("IMEI:2")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["status"] == 503 and body["type"].startswith("urn:dmboot:problem:") and body["detail"]

    ready = service.client.get("/readyz")
    assert ready.status_code == 503 and int(ready.headers["retry-after"]) > 0
    assert ready.json()["checks"]["secrets"] == "failed" and ready.json()["failed"]

    with pytest.raises((SignerUnavailable, SecretStoreError)) as raised:
        service.runtime.issuance.issue_from_csr(make_csr("IMEI:3"), "device", Requester("test"))
    assert isinstance(raised.value, PkiError | SecretStoreError)

    fresh = Runtime(service.settings)  # a replica that has cached nothing yet
    try:
        fresh_response = TestClient(_test_app(fresh)).post("/test/issue", content=make_csr("IMEI:4"))
    finally:
        fresh.close()
    assert fresh_response.status_code == 503
    assert fresh_response.json()["type"].startswith("urn:dmboot:problem:secret-store")

    result = service.cli(tmp_path, "IMEI:5")
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and cause in line, line
    assert result.stdout == ""
    assert service.certificates() == before


def assert_recovered(service: Service, tmp_path: Path) -> None:
    """The same running service issues again, and so does a new process."""
    before = service.certificates()
    assert service.issue("IMEI:6").status_code == 200
    assert service.client.get("/readyz").status_code == 200
    result = service.cli(tmp_path, "IMEI:7")
    assert result.returncode == 0, result.stderr
    assert service.certificates() == before + 2


def _warm(service: Service) -> None:
    # The long-running service has signed before the outage: its signer is cached.
    assert service.issue("IMEI:1").status_code == 200


def test_sealed_vault(service: Service, live_vault: BaoServer, tmp_path: Path) -> None:
    _warm(service)
    live_vault.seal()
    assert_unavailable(service, tmp_path, "sealed")
    live_vault.unseal()
    assert_recovered(service, tmp_path)


def test_stopped_and_restarted_vault(service: Service, live_vault: BaoServer, tmp_path: Path) -> None:
    _warm(service)
    live_vault.stop()
    assert_unavailable(service, tmp_path, "unreachable")
    live_vault.start()  # a real restart: unsealed again, its data intact
    assert_recovered(service, tmp_path)


def test_denying_vault(service: Service, live_vault: BaoServer, tmp_path: Path) -> None:
    _warm(service)
    # An operator narrows the policy by mistake: the token still exists, Vault says 403.
    nothing = 'path "sys/nothing" { capabilities = ["deny"] }'
    live_vault.write(f"sys/policies/acl/{service.policy_name}", {"policy": nothing}, method="PUT")
    assert_unavailable(service, tmp_path, "Vault denied")
    live_vault.write(f"sys/policies/acl/{service.policy_name}", {"policy": service.policy}, method="PUT")
    assert_recovered(service, tmp_path)


# -- a live store on a dev server of its own -----------------------------------------------


@pytest.fixture
def live_store(own_bao: BaoDevServer) -> Iterator[VaultSecretStore]:
    """A store on a server of its own, with the root token (which survives a dev restart)."""
    store = VaultSecretStore(VaultConfig(addr=own_bao.addr, token=Secret(own_bao.root_token), timeout=5))
    try:
        yield store
    finally:
        store.close()


def test_sealed_vault_is_unavailable_until_unsealed(
    own_bao: BaoDevServer, live_store: VaultSecretStore
) -> None:
    signer = live_store.signer(live_store.create_key("ca", KeyType.P256))
    live_store.put("kept", {"v": "1"})
    own_bao.seal()
    with pytest.raises(SecretStoreUnavailable, match="sealed") as sealed:
        live_store.get("kept")
    assert sealed.value.retry_after > 0
    with pytest.raises(SignerUnavailable) as signing:
        signer.sign(b"tbs")
    assert signing.value.retry_after > 0
    results = {r.name: r for r in live_store.check()}
    assert results["reachable"].ok and not results["unsealed"].ok and results["unsealed"].hint
    own_bao.unseal()
    assert live_store.get("kept")[0] == {"v": "1"}
    assert signer.sign(b"tbs")


def test_stopped_vault_is_unavailable(own_bao: BaoDevServer, live_store: VaultSecretStore) -> None:
    live_store.put("kept", {"v": "1"})
    signer = live_store.signer(live_store.create_key("ca", KeyType.ED25519))
    own_bao.stop()
    with pytest.raises(SecretStoreUnavailable, match="unreachable") as stopped:
        live_store.get("kept")
    assert stopped.value.retry_after > 0
    with pytest.raises(SignerUnavailable):
        signer.sign(b"tbs")
    [reachable] = live_store.check()
    assert (reachable.name, reachable.ok) == ("reachable", False)
    assert "start Vault" in reachable.hint


def test_restarted_vault_works_again_with_the_same_store(
    own_bao: BaoDevServer, live_store: VaultSecretStore
) -> None:
    live_store.put("before", {"v": "1"})
    own_bao.stop()
    with pytest.raises(SecretStoreUnavailable):
        live_store.get("before")
    own_bao.start()  # a dev server starts empty: write again, then read back
    live_store.put("after", {"v": "2"})
    assert live_store.get("after")[0] == {"v": "2"}
    ref = live_store.create_key("ca", KeyType.P256)
    assert live_store.signer(ref).sign(b"tbs")
    assert all(r.ok for r in live_store.check())


def test_restart_without_an_outage_in_between(own_bao: BaoDevServer, live_store: VaultSecretStore) -> None:
    # Pooled keep-alive connections to the old process must not break the first call.
    live_store.put("one", {"v": "1"})
    own_bao.restart()
    live_store.put("two", {"v": "2"})
    assert live_store.get("two")[0] == {"v": "2"}
