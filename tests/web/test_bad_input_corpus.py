"""Bad input on every device-facing endpoint, on SQLite and PostgreSQL: never a 5xx, nothing issued, tokens unspent.

A literal table of hand-made bad requests (the kinds that found 500s before issue
13: NUL bytes, huge integers, wrong types, truncated DER, two CSRs in one PEM,
PEM where base64 DER is due, the right token with a broken CSR), then hypothesis
bodies and headers on the same endpoints. Afterwards no certificate exists and
the device's one-time token still enrolls it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.runtime import Runtime
from bootstrap.store.models import CertificateRow
from tests.enrollment.support import ADMIN, GROUP, configure, count
from tests.factories import make_csr

DEV = "IMEI:350000000000099"
DM2 = "application/vnd.oma.dm.initiation+json"
JSON = "application/json"
PKCS10 = "application/pkcs10"
OCSP = "application/ocsp-request"

#: (method, path, content-type) of every device-facing endpoint.
ENDPOINTS = [
    ("POST", "/api/v1/enroll", JSON),
    ("POST", "/dm/bootstrap", DM2),
    ("POST", "/dm1/bootstrap", JSON),
    ("POST", "/.well-known/est/simpleenroll", PKCS10),
    ("POST", "/.well-known/est/simplereenroll", PKCS10),
    ("POST", "/ocsp", OCSP),
    ("POST", "/api/v1/factory/batches", "application/x-ndjson"),
    ("POST", "/api/v1/factory/registrations", JSON),
]


@pytest.fixture
def device(runtime: Runtime) -> tuple[Runtime, str]:
    configure(runtime)
    runtime.devices.register(DEV, GROUP, actor=ADMIN)
    return runtime, runtime.devices.create_token(dev_id=DEV, actor=ADMIN)[1]


@pytest.fixture
def client(device: tuple[Runtime, str]) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=device[0])) as test_client:
        yield test_client


def j(document: object) -> bytes:
    return json.dumps(document).encode()


def _table(token: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    csr = make_csr(DEV)
    two = make_csr(DEV) + make_csr("IMEI:350000000000098")
    der_b64 = base64.b64encode(b"\x30\x82\x01\x00" + b"\x00" * 40)
    basic = "Basic " + base64.b64encode(f"{DEV}:{token}".encode()).decode()
    rows: list[tuple[str, str, dict[str, str], bytes]] = []
    for path in ("/api/v1/enroll", "/dm1/bootstrap"):
        rows += [
            ("POST", path, {"content-type": JSON}, j({"dev_id": DEV, "csr": "not a csr", "token": token})),
            ("POST", path, {"content-type": JSON}, j({"dev_id": DEV, "csr": two.decode(), "token": token})),
            ("POST", path, {"content-type": JSON}, j({"dev_id": DEV + "\x00", "csr": csr.decode(), "token": token})),
            ("POST", path, {"content-type": JSON}, j({"dev_id": 10**30, "csr": csr.decode(), "token": token})),
            ("POST", path, {"content-type": JSON}, j({"dev_id": [DEV], "csr": csr.decode()})),
            ("POST", path, {"content-type": JSON}, j({"dev_id": "x" * 100_000, "csr": csr.decode()})),
            ("POST", path, {"content-type": JSON}, j({"dev_id": DEV, "csr": csr.decode(), "token": token * 50})),
            ("POST", path, {"content-type": JSON}, b'{"dev_id": "' + DEV.encode() + b'", "csr": "\\u0000"}'),
            ("POST", path, {"content-type": JSON}, b"\xff\xfe{}"),
            ("POST", path, {"content-type": JSON}, b"[" * 10_000),
            ("POST", path, {"content-type": "text/plain"}, j({"dev_id": DEV})),
        ]
    rows += [
        ("POST", "/dm/bootstrap", {"content-type": DM2, "omadm-devid": DEV, "authorization": f"DMBoot-Token {token}"},
         b'{"MOS": 5}'),
        ("POST", "/dm/bootstrap", {"content-type": DM2, "omadm-devid": DEV + "\x01",
                                   "authorization": f"DMBoot-Token {token}"}, b"{}"),
        ("POST", "/dm/bootstrap", {"content-type": DM2, "omadm-devid": DEV, "authorization": "DMBoot-HMAC x=y"},
         b"\x00" * 64),
        ("GET", "/dm/objects/" + "A" * 5000, {}, b""),
        ("GET", "/dm/objects/a%00b", {}, b""),
        ("POST", "/.well-known/est/simpleenroll", {"content-type": PKCS10, "authorization": basic}, csr),
        ("POST", "/.well-known/est/simpleenroll", {"content-type": PKCS10, "authorization": basic}, der_b64),
        ("POST", "/.well-known/est/simpleenroll", {"content-type": PKCS10, "authorization": basic}, b"%%%"),
        ("POST", "/.well-known/est/simpleenroll", {"content-type": PKCS10, "authorization": "Basic %%%"}, der_b64),
        ("POST", "/.well-known/est/simplereenroll", {"content-type": PKCS10}, der_b64),
        ("POST", "/.well-known/est/a%00/simpleenroll", {"content-type": PKCS10, "authorization": basic}, der_b64),
        ("POST", "/ocsp", {"content-type": OCSP}, b"\x30\x80" + b"\x00" * 10),
        ("POST", "/ocsp", {"content-type": OCSP}, b"\x30\x84\xff\xff\xff\xff"),
        ("GET", "/ocsp/" + "A" * 30_000, {}, b""),
        ("GET", "/ocsp/MAMCAQU%3D", {}, b""),
        ("POST", "/api/v1/factory/batches", {"content-type": "application/x-ndjson"}, b'{"dev_id": 1}\n' * 3),
        ("POST", "/api/v1/factory/batches", {"content-type": "application/x-ndjson",
                                             "authorization": "Bearer dmb_\x00"}, b"{}\n"),
        ("POST", "/api/v1/factory/registrations", {"content-type": JSON, "authorization": "Bearer " + "x" * 9000},
         b"{}"),
    ]
    return rows


def _assert_not_5xx(response: Any) -> None:
    assert response.status_code < 500, (response.request.method, response.request.url, response.text[:500])
    if response.status_code >= 400 and not response.request.url.path.startswith("/ocsp"):
        assert response.headers["content-type"] == "application/problem+json", response.text[:300]


def _assert_untouched_then_enroll(runtime: Runtime, client: TestClient, token: str, before: int) -> None:
    assert count(runtime, CertificateRow) == before  # nothing issued by any bad request
    good = client.post("/api/v1/enroll", json={"dev_id": DEV, "csr": make_csr(DEV).decode(), "token": token})
    assert good.status_code == 200, good.text  # the token was not spent by any of them


def test_the_literal_table(device: tuple[Runtime, str], client: TestClient) -> None:
    runtime, token = device
    before = count(runtime, CertificateRow)  # the service's own TLS certificate
    for method, path, headers, body in _table(token):
        try:
            response = client.request(method, path, headers=headers, content=body)
        except UnicodeEncodeError:
            continue  # a header the HTTP client itself refuses to send
        _assert_not_5xx(response)
        assert count(runtime, CertificateRow) == before, (method, path, headers, body[:200], response.text[:300])
    _assert_untouched_then_enroll(runtime, client, token, before)


_HEADER_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=st.one_of(
    st.binary(max_size=400),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                     st.sampled_from(["dev_id", "csr", "token", "mos", "features", "MOS", "imsi"]), inner,
                     max_size=5), max_leaves=10).map(lambda value: json.dumps(value).encode())),
    authorization=st.one_of(st.none(), _HEADER_VALUES, _HEADER_VALUES.map(lambda v: "Basic " + v),
                            _HEADER_VALUES.map(lambda v: "DMBoot-Token " + v)),
    devid=st.one_of(st.none(), _HEADER_VALUES))
def test_generated_requests(device: tuple[Runtime, str], client: TestClient, endpoint: tuple[str, str, str],
                            body: bytes, authorization: str | None, devid: str | None) -> None:
    method, path, content_type = endpoint
    headers = {"content-type": content_type}
    if authorization is not None:
        headers["authorization"] = authorization
    if devid is not None:
        headers["omadm-devid"] = devid
    before = count(device[0], CertificateRow)
    _assert_not_5xx(client.request(method, path, headers=headers, content=body))
    assert count(device[0], CertificateRow) == before
