"""One JSON strictness at every entry point: duplicate members, NaN/Infinity, 1e400, lone surrogates refused.

Each way JSON reaches the service is tried with each lenient text: every POST/PUT/PATCH
operation of the served OpenAPI document, DM 1.x bootstrap, factory NDJSON lines,
DM 2.0 packages 1 and 3 (over HTTP and parsed), MO instance data, and a profile file
given to the CLI. The texts are written by hand; each must be a 400 problem (or the
entry point's own refusal), never read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from bootstrap.cli import app as cli_app
from bootstrap.dm.ddf import MoValidationError
from bootstrap.dm.mo import load_instances
from bootstrap.dm.package import PackageError, parse_initiation, parse_request, parse_response
from bootstrap.runtime import Runtime
from bootstrap.settings import Secret, Settings

#: (id, text): each is JSON a lenient parser reads, and this service must not.
LENIENT: list[tuple[str, bytes]] = [
    ("duplicate", b'{"reason": "keyCompromise", "reason": "unspecified"}'),
    ("nested-duplicate", b'{"x": [{"a": 1, "a": 2}]}'),
    ("nan", b'{"ttl_seconds": NaN}'),
    ("infinity", b'{"ttl_seconds": Infinity}'),
    ("overflow", b'{"ttl_seconds": 1e400}'),
    ("lone-surrogate", b'{"dev_id": "IMEI:\\ud800"}'),
]
IDS = [name for name, _ in LENIENT]
TEXTS = [text for _, text in LENIENT]


@pytest.fixture
def everyone(runtime: Runtime) -> dict[str, str]:
    roles = ["security-admin", "provisioning-admin", "factory-line", "auditor", "dm-server"]
    from bootstrap.auth.permissions import ROLES

    token = runtime.tokens.create("strict", [r for r in roles if r in ROLES], actor="test", allowed_profiles=["p"])
    return {"authorization": f"Bearer {token}"}


def _operations(client: TestClient) -> list[tuple[str, str]]:
    document = client.get("/api/v1/openapi.json").json()
    found = []
    for path, item in document["paths"].items():
        for method in item:
            if method in ("post", "put", "patch"):
                found.append((method.upper(), path.replace("{", "").replace("}", "")))
    return found


def _refused(response: Any) -> None:
    assert response.status_code == 400, (response.request.method, response.request.url, response.text)
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_every_json_operation_refuses_lenient_json(client: TestClient, everyone: dict[str, str],
                                                   text: bytes) -> None:
    operations = _operations(client)
    assert len(operations) >= 20
    for method, path in operations:
        headers = {**everyone, "content-type": "application/json", "idempotency-key": "k"}
        _refused(client.request(method, path, content=text, headers=headers))


@pytest.mark.parametrize("text", [*TEXTS, b'{"dev_id": "IMEI:1", "dev_id": "IMEI:2"}'], ids=[*IDS, "dev-id-twice"])
def test_dm1_bootstrap_refuses_lenient_json(client: TestClient, text: bytes) -> None:
    _refused(client.post("/dm1/bootstrap", content=text, headers={"content-type": "application/json"}))


@pytest.mark.parametrize("text", [*TEXTS, b'{"profile": "p", "profile": "q"}'], ids=[*IDS, "profile-twice"])
def test_a_factory_ndjson_line_refuses_lenient_json(client: TestClient, everyone: dict[str, str],
                                                    text: bytes) -> None:
    headers = {**everyone, "content-type": "application/x-ndjson", "idempotency-key": "k"}
    _refused(client.post("/api/v1/factory/batches", content=text + b"\n", headers=headers))


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_dm2_package_1_over_http_refuses_lenient_json(client: TestClient, text: bytes) -> None:
    response = client.post("/dm/bootstrap", content=text, headers={
        "content-type": "application/vnd.oma.dm.initiation+json", "omadm-devid": "IMEI:1"})
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_dm2_packages_refuse_lenient_json(text: bytes) -> None:
    with pytest.raises(PackageError):
        parse_initiation(text, dev_id="IMEI:1")
    with pytest.raises(PackageError):
        parse_response(text)
    with pytest.raises(PackageError):
        parse_request(text)


@pytest.mark.parametrize("text", [b'[{"MOID": "urn:x:y", "MOID": "urn:x:z"}]', b"[NaN]", b"[1e400]",
                                  b'["\\udc00"]'], ids=["duplicate", "nan", "overflow", "lone-surrogate"])
def test_mo_instance_data_refuses_lenient_json(text: bytes) -> None:
    with pytest.raises(MoValidationError, match="not valid JSON"):
        load_instances(text)


def test_a_profile_file_refuses_duplicate_members(tmp_path: Path) -> None:
    data = tmp_path / "data"
    Runtime.initialize(Settings(data_dir=data, keystore_passphrase=Secret("strict-json-cli")))[0].close()
    spec = tmp_path / "spec.json"
    spec.write_text('{"dm_servers": ["dm1"], "attestation": ["token"], "attestation": ["idevid"]}')
    env = {"DMBOOT_DATA_DIR": str(data), "DMBOOT_KEYSTORE_PASSPHRASE": "strict-json-cli", "DMBOOT_DATABASE_URL": ""}
    result = CliRunner().invoke(cli_app, ["profile", "add", "p", "--file", str(spec)], env=env)
    assert result.exit_code != 0 and "duplicate member 'attestation'" in result.stderr, (result.stderr,
                                                                                       result.exception)
    assert json.dumps  # the CLI prints one line, no traceback
    assert "Traceback" not in result.stderr
