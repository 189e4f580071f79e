"""``GET /api/v1/reference``: every route of the OpenAPI document, with its permission."""

from __future__ import annotations

from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime


def test_reference_lists_every_operation_of_the_openapi_document(runtime: Runtime) -> None:
    with TestClient(create_app(runtime=runtime), base_url="https://testserver") as client:
        document = client.get("/api/v1/openapi.json").json()
        answer = client.get("/api/v1/reference")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/markdown")
    text = answer.text
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            assert f"### {method.upper()} `{path}`" in text
            assert f"| {method.upper()} | `{path}` | {op.get('x-permission') or 'public'} |" in text
    # What docs/api.md's route table left out.
    for area in ("/api/v1/certificates", "/api/v1/tokens", "/api/v1/audit", "/api/v1/admins"):
        assert f"`{area}" in text, area
