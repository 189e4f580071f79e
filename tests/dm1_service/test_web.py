"""POST /dm1/bootstrap and GET /api/v1/dm1/credentials/{dev_id} over Starlette's TestClient.

The real service and database underneath (SQLite and PostgreSQL). libwbxml's
wbxml2xml, an independent decoder, reads every WBXML message the route serves.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import select
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.dm.package import INITIATION_MEDIA_TYPE, Initiation
from bootstrap.runtime import Runtime
from bootstrap.services.dm1 import credentials_path
from bootstrap.store.models import AuditEvent
from tests.dm1_service.support import (
    ADMIN,
    DEV,
    IMSI,
    SERVER_ID,
    auth_md5,
    canonical,
    configure,
    content_type_params,
    hmac_sha1_hex,
    mac_key,
    syncml_final,
    syncml_leaves,
    syncml_target,
    token,
    wbxml2xml,
)
from tests.factories import make_csr

WBXML = "application/vnd.syncml.dm+wbxml"
XML = "application/vnd.syncml.dm+xml"
TNDS = "application/vnd.syncml.dmtnds+xml"
PROBLEM = "application/problem+json"
needs_libwbxml = pytest.mark.peers("wbxml2xml")


@dataclass
class Setup:
    runtime: Runtime
    client: TestClient


@pytest.fixture
def setup(runtime: Runtime) -> Iterator[Setup]:
    configure(runtime, dm1_sec="USERPIN_NETWORKID")
    with TestClient(create_app(runtime=runtime), base_url="https://testserver") as client:
        yield Setup(runtime, client)


def post(setup: Setup, accept: str | None = None, *, headers: dict[str, str] | None = None, **members: Any) -> Any:
    document = {"dev_id": DEV, "imsi": IMSI, **members}
    if "token" not in members and not headers:
        document["token"] = token(setup.runtime)
    document = {k: v for k, v in document.items() if v is not None}
    sent = {"Content-Type": "application/json", **({"Accept": accept} if accept else {}), **(headers or {})}
    return setup.client.post("/dm1/bootstrap", content=json.dumps(document).encode(), headers=sent)


def bearer(runtime: Runtime, role: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + runtime.tokens.create(f"api-{role}", [role], actor=ADMIN)}


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:dmboot:problem:{slug}", body
    return body


# -- the bootstrap route -----------------------------------------------------------------


def test_a_device_gets_wbxml_with_sec_and_mac(setup: Setup) -> None:
    reply = post(setup, WBXML)
    assert reply.status_code == 200, reply.text
    media, params = content_type_params(reply.headers["content-type"])
    pin = setup.runtime.store.get(credentials_path(DEV))[0]["pin"]
    assert media == WBXML and params["SEC"] == "USERPIN_NETWORKID"
    assert params["MAC"] == hmac_sha1_hex(mac_key("USERPIN_NETWORKID", pin), reply.content)
    assert reply.headers["cache-control"] == "no-store"
    assert "dmboot-certificate-chain" not in reply.headers
    assert syncml_final(reply.content)


@pytest.mark.parametrize("sec", ["NETWORKID", "USERPIN", "USERPIN_NETWORKID"])
def test_the_mac_verifies_for_each_sec_mode_over_http(setup: Setup, sec: str) -> None:
    reply = post(setup, sec=sec)
    pin = setup.runtime.store.get(credentials_path(DEV))[0]["pin"]
    media, params = content_type_params(reply.headers["content-type"])
    assert (media, params) == (WBXML, {"SEC": sec, "MAC": hmac_sha1_hex(mac_key(sec, pin), reply.content)})
    as_xml = post(setup, XML, sec=sec)
    _, params = content_type_params(as_xml.headers["content-type"])
    assert params["MAC"] == hmac_sha1_hex(mac_key(sec, pin), as_xml.content)


@needs_libwbxml
@pytest.mark.parametrize("sec", ["NETWORKID", "USERPIN"])
def test_wbxml2xml_decodes_the_served_wbxml_to_the_served_xml(setup: Setup, sec: str) -> None:
    wbxml = post(setup, WBXML, sec=sec)
    xml = post(setup, XML, sec=sec)  # a second bootstrap: the same credentials, the same message
    assert xml.headers["content-type"].startswith(XML + ";")
    assert canonical(wbxml2xml(wbxml.content)) == canonical(xml.content)
    assert syncml_leaves(wbxml.content) == syncml_leaves(xml.content)


def test_tnds_when_asked_for(setup: Setup) -> None:
    reply = post(setup, TNDS)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith(TNDS)
    assert b"<NodeName>AAuthPref</NodeName>" in reply.content


def test_a_csr_gets_a_certificate_chain_header(setup: Setup) -> None:
    reply = post(setup, csr=make_csr(DEV).decode())
    assert reply.status_code == 200, reply.text
    chain = [x509.load_der_x509_certificate(base64.b64decode(v))
             for v in reply.headers["dmboot-certificate-chain"].split(",")]
    assert chain[0].subject.rfc4514_string() == f"CN={DEV}" and len(chain) == 2
    assert setup.runtime.devices.get(DEV).row.current_serial == format(chain[0].serial_number, "x")


def test_the_token_may_travel_in_the_authorization_header(setup: Setup) -> None:
    reply = post(setup, token=None, headers={"Authorization": f"DMBoot-Token {token(setup.runtime)}"})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(("kwargs", "status", "slug"), [
    pytest.param({"accept": "application/json"}, 406, "not-acceptable", id="accept"),
    pytest.param({"token": "nope"}, 401, "authentication-failed", id="unknown-token"),
    pytest.param({"imsi": None}, 400, "invalid-request", id="no-imsi"),
    pytest.param({"imsi": "12ab"}, 400, "invalid-request", id="bad-imsi"),
    pytest.param({"sec": "PIN"}, 400, "invalid-request", id="bad-sec"),
    pytest.param({"colour": "red"}, 400, "invalid-request", id="unknown-member"),
])
def test_refusals_are_problems_and_audited(setup: Setup, kwargs: dict[str, Any], status: int, slug: str) -> None:
    setup.runtime.devices.register(DEV, "legacy", actor=ADMIN)
    members = dict(kwargs)  # parameters are shared between the SQLite and PostgreSQL runs
    accept = members.pop("accept", None)
    assert_problem(post(setup, accept, **members), status, slug)
    with setup.runtime.database.session() as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "device.enroll")).all()[-1]
    assert (event.outcome, json.loads(event.detail)["channel"]) == ("failure", "dm1")
    assert setup.runtime.devices.get(DEV).row.status == "registered"


def test_a_body_that_is_not_json_is_refused(setup: Setup) -> None:
    reply = setup.client.post("/dm1/bootstrap", content=b"<SyncML/>", headers={"Content-Type": XML})
    assert_problem(reply, 415, "unsupported-media-type")


# -- the credential API ------------------------------------------------------------------


def test_a_dm_server_reads_the_credentials_and_the_digest_matches(setup: Setup) -> None:
    leaves = syncml_leaves(post(setup).content)
    reply = setup.client.get(f"/api/v1/dm1/credentials/{DEV}", headers=bearer(setup.runtime, "dm-server"))
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert (body["dev_id"], body["server_id"], body["auth_type"]) == (DEV, SERVER_ID, "DIGEST")
    for side, n in (("client", 1), ("server", 2)):
        base = f"./DMAcc/{SERVER_ID}/AppAuth/{n}"
        name, secret, nonce = leaves[f"{base}/AAuthName"], leaves[f"{base}/AAuthSecret"], leaves[f"{base}/AAuthData"]
        assert isinstance(name, str) and isinstance(secret, str) and isinstance(nonce, bytes)
        assert body[side]["auth_md5"] == auth_md5(name, secret, nonce)  # the message's credentials...
        assert body[side]["auth_md5"] == auth_md5(body[side]["name"], body[side]["secret"],
                                                  base64.b64decode(body[side]["nonce"]))  # ...are the API's
    with setup.runtime.database.session() as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "dm1.credentials.read")).one()
    assert (event.actor, event.target, event.outcome) == ("token:api-dm-server", DEV, "success")


def test_the_credential_api_needs_the_dm1_permission(setup: Setup) -> None:
    url = f"/api/v1/dm1/credentials/{DEV}"
    assert_problem(setup.client.get(url), 401, "authentication-failed")
    assert_problem(setup.client.get(url, headers=bearer(setup.runtime, "security-admin")), 403, "forbidden")
    assert_problem(setup.client.get(url, headers=bearer(setup.runtime, "dm-server")), 404, "not-found")


# -- the DM 2.0 route, for a client that asks for SyncML -----------------------------------


def test_dm2_package_1_with_a_syncml_accept_gets_the_dm1_bootstrap(setup: Setup) -> None:
    package1 = Initiation(dev_id=DEV, mos=(), csr=make_csr(DEV, encoding=Encoding.DER))
    headers = {"Content-Type": INITIATION_MEDIA_TYPE, "Accept": WBXML, "OMADM-DevID": DEV,
               "Authorization": f"DMBoot-Token {token(setup.runtime)}", "DMBoot-IMSI": IMSI}
    reply = setup.client.post("/dm/bootstrap", content=package1.encode(), headers=headers)
    assert reply.status_code == 200, reply.text
    media, params = content_type_params(reply.headers["content-type"])
    assert media == WBXML and params["SEC"] == "USERPIN_NETWORKID"
    assert "dmboot-certificate-chain" in reply.headers  # package 1 always carries a CSR
    assert syncml_target(reply.content) == DEV
    html = setup.client.post("/dm/bootstrap", content=package1.encode(), headers={**headers, "Accept": "text/html"})
    assert_problem(html, 406, "not-acceptable")
