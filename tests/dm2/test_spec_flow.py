"""The specification's DM 2.0 flow in process: HGET + CONT, package 3 -> END, delivered, bootstrapped.

Package 1 without our extension (ClientInitiatedMgmt alert, no CSR), HTTP Basic and Digest,
server-side key generation, encrypted single-use HGET objects, and the DM server's
BootstrapComplete report. On SQLite and PostgreSQL (the ``runtime`` fixture).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_private_key
from sqlmodel import select
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.dm.mo import DMACC_1_2, TRUST_1_0
from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from bootstrap.store.models import AuditEvent, DmObjectRow
from tests.dm2.helpers import DEV_ID

INITIATION = "application/vnd.oma.dm.initiation+json"
REQUEST = "application/vnd.oma.dm.request+json"
RESPONSE = "application/vnd.oma.dm.response+json"
PACKAGE1 = json.dumps({"MOS": [{"MOID": DMACC_1_2, "MIID": []}, {"MOID": TRUST_1_0, "MIID": []}],
                       "Alert": [{"AlertType": "urn:oma:at:dm:2.0:ClientInitiatedMgmt"}]}).encode()


@dataclass
class Flow:
    runtime: Runtime
    client: TestClient


def _configure(runtime: Runtime, *, attestation: tuple[str, ...] = ("token", "group-key"),
               server_keygen: bool = True) -> None:
    runtime.config.add_server("dm.example", "Example DM", "https://dm.example/dm", actor="test")
    runtime.config.add_profile(ProfileSpec(
        name="phones", dm_servers=("dm.example",), dmacc={"Perm": ["urn:oma:mo:oma-dm-devinfo:1.0"]},
        attestation=attestation, server_keygen=server_keygen), actor="test")


@pytest.fixture
def flow(runtime: Runtime) -> Iterator[Flow]:
    _configure(runtime)
    with TestClient(create_app(runtime=runtime), base_url="https://testserver") as client:
        yield Flow(runtime, client)


def _token(flow: Flow) -> str:
    flow.runtime.devices.register(DEV_ID, "phones", actor="test")
    return flow.runtime.devices.create_token(dev_id=DEV_ID, actor="test")[1]


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"{DEV_ID}:{password}".encode()).decode()


def post1(flow: Flow, authorization: str | None, body: bytes = PACKAGE1) -> Any:
    headers = {"Content-Type": INITIATION, "Accept": REQUEST, "OMADM-DevID": DEV_ID}
    if authorization:
        headers["Authorization"] = authorization
    return flow.client.post("/dm/bootstrap", content=body, headers=headers)


def run_package2(flow: Flow, reply: Any) -> tuple[list[dict[str, Any]], str]:
    """Fetch every HGET (in process) and return the MO instances and the CONT URI."""
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == REQUEST
    assert "omadm-session" not in reply.headers
    commands = json.loads(reply.content)["CMD"]
    assert all(isinstance(p, str) for c in commands for p in c)
    assert [c[0] for c in commands] == ["HGET"] * (len(commands) - 1) + ["CONT"]
    instances = []
    for _, uri in commands[:-1]:
        got = flow.client.get(urlsplit(uri).path)
        assert got.status_code == 200, got.text
        (instance,) = json.loads(got.content)
        instances.append(instance)
    return instances, commands[-1][1]


def post3(flow: Flow, cont: str, statuses: list[dict[str, Any]]) -> Any:
    return flow.client.post(urlsplit(cont).path, content=json.dumps({"Status": statuses}),
                            headers={"Content-Type": RESPONSE, "OMADM-DevID": DEV_ID})


def account(instances: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [i for i in instances if i["ClientURI"] == f"{DMACC_1_2}//"]
    (data,) = found["MOData"].values()
    assert isinstance(data, dict)
    return data


def test_basic_token_device_goes_through_hget_cont_end_and_the_dm_server_completes(flow: Flow) -> None:
    token = _token(flow)
    instances, cont = run_package2(flow, post1(flow, basic(token)))
    assert re.fullmatch(r"https://dmboot.test/dm/bootstrap/s1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", cont)
    assert [i["ClientURI"] for i in instances] == [f"{TRUST_1_0}//", f"{DMACC_1_2}//"]
    assert all(set(i) == {"DDF", "ClientURI", "MOData"} for i in instances)  # no MOID, no server CV
    data = account(instances)
    cert = x509.load_der_x509_certificate(base64.b64decode(data["Auth"]["Trsp"]["Data"]))
    key = load_der_private_key(base64.b64decode(data["Auth"]["Trsp"]["Secret"]), None)
    assert key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == (
        cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    assert set(data["Auth"]["Bootstrap"]) == {"ServerURI", "SecMode", "ClientPubKey", "ServerPubKey",
                                              "ClientSecretKey"}
    assert flow.runtime.devices.get(DEV_ID).row.status == "enrolled"

    done = post3(flow, cont, [{"sc": 200, "URI": [f"{TRUST_1_0}/t"]}, {"sc": 200, "URI": [f"{DMACC_1_2}/a"]},
                              {"sc": 200}])
    assert done.status_code == 200, done.text
    assert done.headers["content-type"] == REQUEST
    assert json.loads(done.content) == {"CMD": [["END"]]}
    assert flow.runtime.devices.get(DEV_ID).row.status == "delivered"

    # The DM server reports the BootstrapComplete alert of the device's first session.
    dm_token = flow.runtime.tokens.create("dm.example", roles=["dm-server"], actor="test")
    reported = flow.client.post(f"/api/v1/devices/{DEV_ID}/bootstrap-complete",
                                headers={"Authorization": f"Bearer {dm_token}"})
    assert reported.status_code == 200, reported.text
    assert reported.json() == {"dev_id": DEV_ID, "status": "bootstrapped"}
    assert flow.runtime.devices.get(DEV_ID).row.status == "bootstrapped"


def test_only_dm_server_principals_may_report_completion(flow: Flow) -> None:
    _token(flow)
    admin = flow.runtime.tokens.create("auditor", roles=["auditor"], actor="test")
    reply = flow.client.post(f"/api/v1/devices/{DEV_ID}/bootstrap-complete",
                             headers={"Authorization": f"Bearer {admin}"})
    assert reply.status_code == 403
    assert flow.client.post(f"/api/v1/devices/{DEV_ID}/bootstrap-complete").status_code == 401
    assert flow.runtime.devices.get(DEV_ID).row.status == "registered"


def test_hget_objects_are_single_use_and_encrypted_at_rest(flow: Flow) -> None:
    token = _token(flow)
    reply = post1(flow, basic(token))
    commands = json.loads(reply.content)["CMD"]
    with flow.runtime.database.session() as session:
        stored = [row.body for row in session.exec(select(DmObjectRow))]
    assert len(stored) == 2
    uri = next(c[1] for c in commands if c[0] == "HGET")
    capability = uri.rsplit("/", 1)[1]
    assert all(capability not in body and "Secret" not in body for body in stored)
    served = flow.client.get(urlsplit(uri).path)
    assert served.status_code == 200
    assert flow.client.get(urlsplit(uri).path).status_code == 404  # single use
    # What was served (base64 certificates: "MII...") is nowhere in what is stored. A stored body
    # is base64 too, so it may hold "MII" by chance: compare 40-character runs, not the prefix.
    runs = [served.text[m.start():m.start() + 40] for m in re.finditer("MII", served.text)]
    assert runs and not any(run in body for run in runs for body in stored)
    assert flow.client.get("/dm/objects/" + "A" * 43).status_code == 404


def test_without_server_keygen_a_device_without_csr_is_refused_and_nothing_issued(runtime: Runtime) -> None:
    _configure(runtime, server_keygen=False)
    with TestClient(create_app(runtime=runtime), base_url="https://testserver") as client:
        flow = Flow(runtime, client)
        reply = post1(flow, basic(_token(flow)))
        assert reply.status_code == 400
        assert reply.json()["field"] == "CSR"
    assert runtime.devices.get(DEV_ID).row.status == "registered"


def test_no_credential_is_401_offering_digest_and_basic(flow: Flow) -> None:
    _token(flow)
    reply = post1(flow, None)
    assert reply.status_code == 401
    offered = reply.headers.get_list("www-authenticate")
    assert [v.split(" ", 1)[0] for v in offered] == ["Digest", "Basic"]
    assert 'algorithm=SHA-256' in offered[0] and 'qop="auth"' in offered[0]


def test_a_credential_that_does_not_verify_is_401_offering_the_schemes_too(flow: Flow) -> None:
    _token(flow)
    reply = post1(flow, basic("dmt_" + "x" * 43))  # well formed, but no such enrollment token
    assert reply.status_code == 401
    assert [v.split(" ", 1)[0] for v in reply.headers.get_list("www-authenticate")] == ["Digest", "Basic"]


def _digest(challenge: str, password: str, *, uri: str = "/dm/bootstrap", cnonce: str = "0a4f113b") -> str:
    """A Digest answer computed here from RFC 7616 3.4.1 (not with the code under test)."""
    params = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge.removeprefix("Digest ")))

    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    ha1, ha2 = h(f"{DEV_ID}:{params['realm']}:{password}"), h(f"POST:{uri}")
    response = h(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}")
    return (f'Digest username="{DEV_ID}", realm="{params["realm"]}", nonce="{params["nonce"]}", uri="{uri}", '
            f'algorithm=SHA-256, qop=auth, nc=00000001, cnonce="{cnonce}", response="{response}"')


def test_digest_with_a_devid_bound_token(flow: Flow) -> None:
    token = _token(flow)
    challenge = post1(flow, None).headers.get_list("www-authenticate")[0]
    assert post1(flow, _digest(challenge, "dmt_wrong")).status_code == 401
    run_package2(flow, post1(flow, _digest(challenge, token)))
    assert flow.runtime.devices.get(DEV_ID).row.status == "enrolled"


def test_basic_and_digest_with_the_group_derived_key_and_no_replay(flow: Flow) -> None:
    flow.runtime.devices.create_group_key("phones", actor="test")
    key = flow.runtime.devices.export_device_keys("phones", [DEV_ID], actor="test")[DEV_ID]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    challenge = post1(flow, None).headers.get_list("www-authenticate")[0]
    answer = _digest(challenge, key)
    run_package2(flow, post1(flow, answer))  # an unknown DevID: the group key registers it
    assert post1(flow, answer).status_code == 401  # the same nonce, cnonce and nc again
    run_package2(flow, post1(flow, basic(key)))  # Basic: the device key as the password (re-enroll)
    assert post1(flow, basic("0" * 64)).status_code == 401
    with flow.runtime.database.session() as session:
        query = select(AuditEvent).where(AuditEvent.action == "device.enroll", AuditEvent.outcome == "success")
        details = [json.loads(e.detail) if isinstance(e.detail, str) else e.detail for e in session.exec(query)]
    assert [d.get("scheme") for d in details] == ["digest", "basic"]


def test_a_digest_for_another_uri_is_refused(flow: Flow) -> None:
    token = _token(flow)
    challenge = post1(flow, None).headers.get_list("www-authenticate")[0]
    assert post1(flow, _digest(challenge, token, uri="/elsewhere")).status_code == 401


def test_a_failed_hget_leaves_the_device_undelivered_but_the_session_ends(flow: Flow) -> None:
    token = _token(flow)
    _, cont = run_package2(flow, post1(flow, basic(token)))
    done = post3(flow, cont, [{"sc": 200}, {"sc": 500}, {"sc": 200}])
    assert json.loads(done.content) == {"CMD": [["END"]]}
    assert flow.runtime.devices.get(DEV_ID).row.status == "enrolled"


@pytest.mark.parametrize("mangle", [
    pytest.param(lambda c: c[:-4] + ("AAAA" if not c.endswith("AAAA") else "BBBB"), id="forged"),
    pytest.param(lambda c: c.rsplit("/", 1)[0] + "/s1.e30.AAAA", id="malformed"),
])
def test_a_bad_cont_reference_is_401(flow: Flow, mangle: Any) -> None:
    token = _token(flow)
    _, cont = run_package2(flow, post1(flow, basic(token)))
    reply = post3(flow, mangle(cont), [{"sc": 200}, {"sc": 200}, {"sc": 200}])
    assert reply.status_code == 401
    assert flow.runtime.devices.get(DEV_ID).row.status == "enrolled"


def test_too_few_statuses_is_400(flow: Flow) -> None:
    token = _token(flow)
    _, cont = run_package2(flow, post1(flow, basic(token)))
    assert post3(flow, cont, [{"sc": 200}]).status_code == 400
