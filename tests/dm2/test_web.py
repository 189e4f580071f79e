"""POST /dm/bootstrap, GET /dm/objects/{ref}, GET /ddf/{MOID}, in process, on SQLite and PostgreSQL.

The real enrollment service and database underneath; the end-to-end tests over real
HTTPS with devices doing mutual TLS are in tests/e2e.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import func, select
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.auth import hmac_scheme
from bootstrap.dm.ddf import DDF_MEDIA_TYPE
from bootstrap.dm.mo import DMACC_1_2, TRUST_1_0
from bootstrap.dm.package import (
    BOOTSTRAP_COMPLETE,
    INITIATION_MEDIA_TYPE,
    REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
    Alert,
    End,
    Put,
    Response,
    Status,
    parse_request,
)
from bootstrap.dm.session import SESSION_HEADER
from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from bootstrap.store.models import AuditEvent, CertificateRow
from tests.dm2.helpers import DEV_ID, EXTRA_MOID, extra_mo_json, initiation

ALL_MOS = (DMACC_1_2, TRUST_1_0, EXTRA_MOID)
PROBLEM = "application/problem+json"


@dataclass
class Setup:
    runtime: Runtime
    client: TestClient
    token: str


def _configure(runtime: Runtime, *, delivery: str = "inline", attestation: tuple[str, ...] = ("token",)) -> None:
    runtime.config.add_server("dm.example", "Example DM", "https://dm.example/dm", actor="test")
    runtime.config.add_repository("repo-1", "https://repo.example/data", actor="test")
    runtime.config.add_profile(ProfileSpec(
        name="phones", dm_servers=("dm.example",), data_repositories=("repo-1",),
        dmacc={"Perm": ["urn:oma:mo:oma-dm-devinfo:1.0"]}, attestation=attestation, delivery=delivery,
        extra_mos=(extra_mo_json(),)), actor="test")


@pytest.fixture
def setup(runtime: Runtime) -> Iterator[Setup]:
    _configure(runtime)
    runtime.devices.register(DEV_ID, "phones", actor="test")
    _, token = runtime.devices.create_token(dev_id=DEV_ID, actor="test")
    with TestClient(create_app(runtime=runtime), base_url="https://testserver") as client:
        yield Setup(runtime, client, token)


def post1(setup: Setup, *mos: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> Any:
    sent = initiation(*(mos or ALL_MOS))
    base = {"Content-Type": INITIATION_MEDIA_TYPE, "Accept": REQUEST_MEDIA_TYPE, "OMADM-DevID": DEV_ID,
            "Authorization": f"DMBoot-Token {setup.token}"}
    merged = {k: v for k, v in {**base, **(headers or {})}.items() if v}
    return setup.client.post("/dm/bootstrap", content=sent.encode() if body is None else body, headers=merged)


def post3(setup: Setup, session: str | None, response: Response | None = None,
          dev_id: str | None = DEV_ID) -> Any:
    response = response or Response((Status(200, (f"{DMACC_1_2}/dm.example",)),), (Alert(BOOTSTRAP_COMPLETE),))
    headers = {"Content-Type": RESPONSE_MEDIA_TYPE}
    if session is not None:
        headers[SESSION_HEADER] = session
    if dev_id is not None:
        headers["OMADM-DevID"] = dev_id
    return setup.client.post("/dm/bootstrap", content=response.encode(), headers=headers)


def certificates(runtime: Runtime) -> int:
    with runtime.database.session() as session:
        return int(session.exec(select(func.count()).select_from(CertificateRow)
                                .where(CertificateRow.profile == "device")).one())


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:dmboot:problem:{slug}", body
    return body


# --- the exchange ------------------------------------------------------------------------------


def test_token_device_is_bootstrapped(setup: Setup) -> None:
    reply = post1(setup)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == REQUEST_MEDIA_TYPE
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["omadm-accept"] == "application/json"  # a response header (DM 2.0 HTTP binding)
    commands = parse_request(reply.content)
    assert [type(c) for c in commands] == [Put, Put, Put, End]
    assert [c.instance.moid for c in commands if isinstance(c, Put)] == [TRUST_1_0, DMACC_1_2, EXTRA_MOID]
    device = setup.runtime.devices.get(DEV_ID).row
    assert device.status == "enrolled"
    assert [m["MOID"] for m in device.declared_mos] == list(ALL_MOS)  # DM-HLF-008

    done = post3(setup, reply.headers[SESSION_HEADER])
    assert done.status_code == 204, done.text
    device = setup.runtime.devices.get(DEV_ID).row
    assert device.status == "bootstrapped"
    assert device.bootstrapped_at is not None


def test_the_token_may_travel_in_package_1(setup: Setup) -> None:
    sent = initiation(*ALL_MOS, token=setup.token)
    reply = post1(setup, body=sent.encode(), headers={"Authorization": ""})
    assert reply.status_code == 200, reply.text


def test_token_in_header_and_body_is_refused(setup: Setup) -> None:
    sent = initiation(*ALL_MOS, token=setup.token)
    assert_problem(post1(setup, body=sent.encode()), 400, "invalid-request")


def test_a_device_that_declares_no_dmacc_gets_none(setup: Setup) -> None:
    reply = post1(setup, TRUST_1_0)
    assert reply.status_code == 200, reply.text
    puts = [c for c in parse_request(reply.content) if isinstance(c, Put)]
    assert [p.instance.moid for p in puts] == [TRUST_1_0]


def test_group_key_device_is_enrolled(runtime: Runtime) -> None:
    _configure(runtime, attestation=("group-key",))
    runtime.devices.create_group_key("phones", actor="test")
    key = bytes.fromhex(runtime.devices.export_device_keys("phones", [DEV_ID], actor="test")[DEV_ID])
    body = initiation(*ALL_MOS).encode()
    header = hmac_scheme.authorization_header(key, "phones", DEV_ID, body)
    with TestClient(create_app(runtime=runtime), base_url="https://testserver") as client:
        reply = client.post("/dm/bootstrap", content=body, headers={
            "Content-Type": INITIATION_MEDIA_TYPE, "OMADM-DevID": DEV_ID, "Authorization": header})
        assert reply.status_code == 200, reply.text
        replay = client.post("/dm/bootstrap", content=body, headers={
            "Content-Type": INITIATION_MEDIA_TYPE, "OMADM-DevID": DEV_ID, "Authorization": header})
        assert_problem(replay, 401, "authentication-failed")
    assert runtime.devices.get(DEV_ID).row.status == "enrolled"


def test_unknown_object_is_404(setup: Setup) -> None:
    assert_problem(setup.client.get("/dm/objects/nope"), 404, "not-found")


# --- DDFs --------------------------------------------------------------------------------------


def test_our_ddf_urls_are_served(setup: Setup) -> None:
    reply = setup.client.get(f"/ddf/{TRUST_1_0}")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == DDF_MEDIA_TYPE
    assert b"urn:oma:mo:ext-dmboot-trust:1.0" in reply.content
    assert_problem(setup.client.get("/ddf/urn:oma:mo:nothing:1.0"), 404, "not-found")


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "status", "slug"), [
    pytest.param({"Content-Type": "application/json"}, 415, "unsupported-media-type", id="json"),
    pytest.param({"Content-Type": ""}, 415, "unsupported-media-type", id="no-content-type"),
    pytest.param({"Content-Type": REQUEST_MEDIA_TYPE}, 415, "unsupported-media-type", id="package-2-type"),
    pytest.param({"Accept": "text/html"}, 406, "not-acceptable", id="accept-html"),
    pytest.param({"Accept": f"{REQUEST_MEDIA_TYPE};q=0"}, 406, "not-acceptable", id="accept-q0"),
    pytest.param({"OMADM-DevID": ""}, 400, "invalid-request", id="no-devid"),
    pytest.param({"Authorization": ""}, 401, "authentication-failed", id="no-credential"),
    pytest.param({"Authorization": "Bearer abc"}, 401, "authentication-failed", id="bearer"),
    pytest.param({"Authorization": "DMBoot-Token dmt_wrong"}, 401, "authentication-failed", id="wrong-token"),
    pytest.param({"Authorization": "DMBoot-HMAC garbage"}, 401, "authentication-failed", id="bad-hmac-header"),
])
def test_package1_refusals_issue_nothing(setup: Setup, headers: dict[str, str], status: int, slug: str) -> None:
    assert_problem(post1(setup, headers=headers), status, slug)
    assert certificates(setup.runtime) == 0


@pytest.mark.parametrize(("accept", "omadm_accept"), [
    pytest.param("*/*", None, id="any"),
    pytest.param("application/*;q=0.5, text/html", None, id="application-wildcard"),
    pytest.param(f"text/html, {REQUEST_MEDIA_TYPE}", "application/json", id="listed"),
    pytest.param(None, "application/*", id="omadm-accept-wildcard"),
    pytest.param(None, "application/cbor", id="omadm-accept-in-a-request-is-ignored"),
])
def test_acceptable_formats(setup: Setup, accept: str | None, omadm_accept: str | None) -> None:
    """A request's OMADM-Accept is not ours to judge: the server sends that header, it does not read it."""
    headers = {"Accept": accept or "", "OMADM-Accept": omadm_accept or ""}
    assert post1(setup, headers=headers).status_code == 200


@pytest.mark.parametrize(("body", "field"), [
    pytest.param(b"{not json", "/", id="malformed"),
    pytest.param(b'{"MOS": []}', "CSR", id="no-csr-and-no-server-keygen"),
    pytest.param(json.dumps({"MOS": [], "ext-dmboot": {"CSR": base64.b64encode(b"junk").decode()}}).encode(),
                 "csr", id="csr-junk"),
])
def test_bad_package1_is_400_and_issues_nothing(setup: Setup, body: bytes, field: str) -> None:
    problem = assert_problem(post1(setup, body=body), 400, "invalid-request" if field != "csr" else "bad-csr")
    assert problem["field"] == field
    assert certificates(setup.runtime) == 0


def test_a_missing_devid_header_is_named_as_the_problem_field(setup: Setup) -> None:
    # Not "/" (the body's root): the body is fine, the header is what is missing.
    problem = assert_problem(post1(setup, headers={"OMADM-DevID": ""}), 400, "invalid-request")
    assert problem["field"] == "OMADM-DevID" and "OMADM-DevID" in problem["detail"]
    assert certificates(setup.runtime) == 0


def test_a_used_token_is_refused_and_audited(setup: Setup) -> None:
    assert post1(setup).status_code == 200
    assert_problem(post1(setup), 401, "authentication-failed")
    assert certificates(setup.runtime) == 1
    with setup.runtime.database.session() as session:
        outcomes = [e.outcome for e in session.exec(select(AuditEvent).where(AuditEvent.action == "device.enroll"))]
    assert outcomes == ["success", "failure"]


def test_a_csr_for_another_device_is_refused(setup: Setup) -> None:
    other = initiation(*ALL_MOS, dev_id="IMEI:999")
    body = json.loads(other.encode())
    assert_problem(post1(setup, body=json.dumps(body).encode()), 400, "csr-policy")
    assert certificates(setup.runtime) == 0


# --- package 3 refusals ------------------------------------------------------------------------


@pytest.fixture
def session_ref(setup: Setup) -> str:
    reply = post1(setup)
    assert reply.status_code == 200, reply.text
    return str(reply.headers[SESSION_HEADER])


@pytest.mark.parametrize(("mangle", "dev_id", "response", "status", "field"), [
    pytest.param(lambda s: None, DEV_ID, None, 401, "OMADM-Session", id="no-session"),
    pytest.param(lambda s: "s1.e30.AAAA", DEV_ID, None, 401, "OMADM-Session", id="malformed-session"),
    pytest.param(lambda s: s[:-4] + ("AAAA" if not s.endswith("AAAA") else "BBBB"), DEV_ID, None, 401,
                 "OMADM-Session", id="forged-session"),
    pytest.param(lambda s: s, "IMEI:other", None, 401, "OMADM-DevID", id="other-devid"),
    pytest.param(lambda s: s, DEV_ID, Response((Status(200, ("x",)),), ()), 400, "/Alert", id="no-completion"),
    pytest.param(lambda s: s, DEV_ID, Response((Status(500, ("x",)),), (Alert(BOOTSTRAP_COMPLETE),)), 400,
                 "/Status", id="failed-command"),
])
def test_package3_refusals(setup: Setup, session_ref: str, mangle: Any, dev_id: str, response: Response | None,
                           status: int, field: str) -> None:
    problem = assert_problem(post3(setup, mangle(session_ref), response, dev_id=dev_id), status,
                             "authentication-failed" if status == 401 else "invalid-request")
    assert problem["field"] == field
    assert setup.runtime.devices.get(DEV_ID).row.status == "enrolled"


def test_malformed_package3_is_400(setup: Setup, session_ref: str) -> None:
    reply = setup.client.post("/dm/bootstrap", content=b"[1,", headers={
        "Content-Type": RESPONSE_MEDIA_TYPE, SESSION_HEADER: session_ref})
    assert_problem(reply, 400, "invalid-request")


def test_package3_without_devid_header_uses_the_session(setup: Setup, session_ref: str) -> None:
    assert post3(setup, session_ref, dev_id=None).status_code == 204


def test_csr_is_der_in_package1() -> None:
    assert initiation().csr[:1] == b"\x30"
    assert Encoding.DER  # the helpers send DER; PEM base64 would be refused by the CSR parser as junk
