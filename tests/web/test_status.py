"""Health, readiness, CA certificates, and the error mapping (RFC 9457)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime)) as test_client:
        yield test_client


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "ca": "ok", "secrets": "ok"}


def test_chain_is_issuing_then_root(client: TestClient, runtime: Runtime) -> None:
    response = client.get("/ca/chain.pem")
    assert response.headers["content-type"] == "application/pem-certificate-chain"
    issuing, root = x509.load_pem_x509_certificates(response.content)
    assert issuing.issuer == root.subject
    assert root.issuer == root.subject


def test_bundle_covers_the_overlap_after_a_rotation(client: TestClient, runtime: Runtime) -> None:
    def names(path: str) -> list[str]:
        response = client.get(path)
        assert response.headers["content-type"] == "application/pem-certificate-chain"
        certificates = x509.load_pem_x509_certificates(response.content)
        return [str(c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value) for c in certificates]

    first = ["dm-bootstrap Issuing CA 1", "dm-bootstrap Root CA"]
    assert names("/ca/bundle.pem") == names("/ca/chain.pem") == first
    with runtime.database.session() as session:
        runtime.authorities.rotate(session, "test:admin", new_key=True)
    assert names("/ca/chain.pem") == ["dm-bootstrap Issuing CA 2", "dm-bootstrap Root CA"]
    assert names("/ca/bundle.pem") == ["dm-bootstrap Issuing CA 2", *first]
    assert client.get("/ca/issuing-2.der").status_code == 200


@pytest.mark.parametrize("name", ["root", "issuing-1"])
def test_ca_certificates_as_der_and_pem(client: TestClient, name: str) -> None:
    der = client.get(f"/ca/{name}.der")
    assert der.headers["content-type"] == "application/pkix-cert"
    pem = client.get(f"/ca/{name}.pem")
    assert x509.load_der_x509_certificate(der.content) == x509.load_pem_x509_certificate(pem.content)


@pytest.mark.parametrize("path", ["/ca/nope.pem", "/ca/root.txt", "/no/such/route"])
def test_not_found_is_problem_json(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404 and body["type"].startswith("urn:dmboot:problem:")
    assert body["request_id"] == "abc-123" == response.headers["x-request-id"]


def test_readyz_reports_an_uninitialized_database(tmp_path, settings) -> None:
    import dataclasses

    bare = dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    with TestClient(create_app(bare)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == "application/problem+json"


def test_oversized_body_is_413_before_the_handler(client: TestClient, runtime: Runtime) -> None:
    limit = runtime.settings.max_body_bytes
    response = client.post("/healthz", content=b"x" * (limit + 1))
    assert response.status_code == 413
    assert response.json()["type"] == "urn:dmboot:problem:payload-too-large"
