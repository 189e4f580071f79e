"""A device's whole DM 2.0 bootstrap over real HTTPS, then mutual TLS with what package 2 gave it.

For each attestation method (one-time token, group key, manufacturer certificate) and
each delivery (inline PUT, HGET from the data repository): package 1 -> package 2;
the device takes its certificate chain and trust anchors from package 2 alone and
opens mutual TLS to the DM server of its DMAcc and to the data repository, each
side checking the other; package 3 BootstrapComplete -> the device is bootstrapped.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlmodel import func, select

from bootstrap.auth import hmac_scheme
from bootstrap.store.models import CertificateRow
from pki.identity import device_uri
from tests.dm2.helpers import EXTRA_MOID
from tests.e2e.conftest import Stack
from tests.e2e.device import DMACC_1_2, INITIATION, TRUST_1_0, Device, Provisioned, commands_of, moid_of

pytestmark = pytest.mark.slow

ALL_MOS = (DMACC_1_2, TRUST_1_0, EXTRA_MOID)
PROBLEM = "application/problem+json"
_serial = count(1)


@dataclass
class Enrolling:
    """A device ready to send package 1: its authorization (None for IDevID) and body."""

    device: Device
    authorization: str | None
    body: bytes


def _dev_id(method: str) -> str:
    return f"e2e-{method}-{next(_serial)}"


def token_device(stack: Stack, profile: str, *moids: str) -> Enrolling:
    device = stack.device(_dev_id("token"))
    stack.admin.call("POST", "/devices", {"dev_id": device.dev_id, "profile": profile})
    token = stack.admin.call("POST", "/enrollment-tokens", {"dev_id": device.dev_id})["token"]
    return Enrolling(device, f"DMBoot-Token {token}", device.initiation(*(moids or ALL_MOS)))


def group_key_device(stack: Stack, profile: str, *moids: str) -> Enrolling:
    device = stack.device(_dev_id("group"))  # not registered: the group key registers it
    exported = stack.admin.call("POST", f"/profiles/{profile}/group-key/export", {"dev_ids": [device.dev_id]})
    key = bytes.fromhex(exported["keys"][device.dev_id])
    body = device.initiation(*(moids or ALL_MOS))
    return Enrolling(device, hmac_scheme.authorization_header(key, profile, device.dev_id, body), body)


def idevid_device(stack: Stack, profile: str, *moids: str) -> Enrolling:
    dev_id = _dev_id("idevid")
    cert, key, print_ = stack.manufacturer.idevid(dev_id, stack.folder / "devices" / dev_id)
    stack.admin.call("POST", "/devices", {"dev_id": dev_id, "profile": profile, "idevid_fingerprint": print_})
    device = stack.device(dev_id, idevid=(cert, key))
    return Enrolling(device, None, device.initiation(*(moids or ALL_MOS)))


METHODS: dict[str, Callable[..., Enrolling]] = {
    "token": token_device, "group-key": group_key_device, "idevid": idevid_device}


def device_certificates(stack: Stack, dev_id: str) -> int:
    with stack.runtime.database.session() as session:
        return int(session.exec(select(func.count()).select_from(CertificateRow)
                                .where(CertificateRow.device_id == dev_id)).one())


def assert_credential(device: Device, provisioned: Provisioned) -> x509.Certificate:
    leaf = x509.load_der_x509_certificate(provisioned.chain[0])
    assert leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == \
        device.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [device_uri(device.dev_id)]
    assert base64.b64decode(provisioned.account["Auth"]["Trsp"]["Data"]) == provisioned.chain[0]
    return leaf


@pytest.mark.parametrize("delivery", ["inline"])  # ours; the specification's flow: test_conforming_device.py
@pytest.mark.parametrize("method", list(METHODS))
def test_device_bootstraps_then_does_mutual_tls(stack: Stack, method: str, delivery: str) -> None:
    enrolling = METHODS[method](stack, delivery)
    device = enrolling.device

    reply = device.package1(*ALL_MOS, authorization=enrolling.authorization, body=enrolling.body)
    provisioned = device.apply(reply)
    commands = commands_of(reply.content)
    assert [c[0] for c in commands] == ["PUT", "PUT", "PUT", "END"]
    assert {i.moid for i in provisioned.instances.values()} == set(ALL_MOS)
    leaf = assert_credential(device, provisioned)

    # The DM server of the delivered account, with the delivered credential and dm-server anchors only.
    account = provisioned.account
    assert account["SrvID"] == "dm-test"
    status, body, server_der = Device.https_get(account["SrvURI"], device.tls_context(provisioned, "dm-server"))
    assert status == 200
    assert json.loads(body) == {"server": "dm", "device": device.dev_id}
    assert server_der == stack.dm.certificate_der  # the device verified and saw the DM server
    seen = stack.dm.seen[-1]
    assert (seen.client_der, seen.dev_id) == (leaf.public_bytes(Encoding.DER), device.dev_id)  # and vice versa

    # The data repository, likewise with data-repository anchors only.
    repo_url = stack.repository.url + "/dmboot/not-a-ref"
    status, _, server_der = Device.https_get(repo_url, device.tls_context(provisioned, "data-repository"))
    assert status == 404
    assert server_der == stack.repository.certificate_der
    assert stack.repository.seen[-1].client_der == leaf.public_bytes(Encoding.DER)

    done = device.package3(provisioned)
    assert done.status_code == 204, done.text
    shown = stack.device_status(device.dev_id)
    assert shown["status"] == "bootstrapped"
    assert shown["current_serial"] == format(leaf.serial_number, "x")
    assert [m["MOID"] for m in shown["declared_mos"]] == list(ALL_MOS)  # DM-HLF-008
    assert shown["features"] == {"tls": ["1.2", "1.3"], "hget": True}


def test_the_dm_server_refuses_a_device_without_a_delivered_credential(stack: Stack) -> None:
    enrolling = token_device(stack, "inline")
    provisioned = enrolling.device.apply(enrolling.device.package1(authorization=enrolling.authorization,
                                                                   body=enrolling.body))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=stack.root_pem)  # trusts the server, offers no certificate
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        Device.https_get(provisioned.account["SrvURI"], context)


def test_a_device_declaring_no_dmacc_gets_no_dmacc(stack: Stack) -> None:
    enrolling = token_device(stack, "inline", TRUST_1_0)
    reply = enrolling.device.package1(authorization=enrolling.authorization, body=enrolling.body)
    commands = commands_of(reply.content)
    assert [(c[0], moid_of(c[1]) if c[0] == "PUT" else None) for c in commands] == [("PUT", TRUST_1_0), ("END", None)]


# --- refusals ----------------------------------------------------------------------------------


def problem(reply: httpx.Response, status: int) -> dict[str, object]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM
    body: dict[str, object] = reply.json()
    return body


def test_wrong_media_type_is_415(stack: Stack) -> None:
    enrolling = token_device(stack, "inline")
    reply = enrolling.device.package1(authorization=enrolling.authorization, body=enrolling.body,
                                      headers={"Content-Type": "application/json"})
    assert problem(reply, 415)["type"] == "urn:dmboot:problem:unsupported-media-type"
    assert device_certificates(stack, enrolling.device.dev_id) == 0


def test_malformed_json_is_400(stack: Stack) -> None:
    enrolling = token_device(stack, "inline")
    reply = enrolling.device.package1(authorization=enrolling.authorization, body=b'{"MOS": [')
    assert "not valid JSON" in str(problem(reply, 400)["detail"])
    assert device_certificates(stack, enrolling.device.dev_id) == 0


def test_unacceptable_accept_is_406(stack: Stack) -> None:
    enrolling = token_device(stack, "inline")
    reply = enrolling.device.package1(authorization=enrolling.authorization, body=enrolling.body,
                                      headers={"Accept": "application/xml"})
    problem(reply, 406)


def test_a_bad_session_reference_is_refused_and_a_good_one_still_works(stack: Stack) -> None:
    enrolling = token_device(stack, "inline")
    provisioned = enrolling.device.apply(enrolling.device.package1(authorization=enrolling.authorization,
                                                                   body=enrolling.body))
    forged = provisioned.session[:-4] + ("AAAA" if not provisioned.session.endswith("AAAA") else "BBBB")
    assert problem(enrolling.device.package3(provisioned, session=forged), 401)["field"] == "OMADM-Session"
    assert problem(enrolling.device.package3(provisioned, session="s1.x.y"), 401)["field"] == "OMADM-Session"
    assert stack.device_status(enrolling.device.dev_id)["status"] == "enrolled"
    assert enrolling.device.package3(provisioned).status_code == 204


def test_a_used_token_issues_nothing(stack: Stack) -> None:
    enrolling = token_device(stack, "inline")
    assert enrolling.device.package1(authorization=enrolling.authorization, body=enrolling.body).status_code == 200
    again = enrolling.device.package1(authorization=enrolling.authorization,
                                      body=enrolling.device.initiation(*ALL_MOS))
    problem(again, 401)
    assert device_certificates(stack, enrolling.device.dev_id) == 1


def test_an_idevid_from_an_untrusted_ca_is_refused(stack: Stack) -> None:
    from tests.e2e.conftest import Manufacturer

    dev_id = _dev_id("rogue")
    cert, key, print_ = Manufacturer.create("Rogue CA").idevid(dev_id, stack.folder / "devices" / dev_id)
    stack.admin.call("POST", "/devices", {"dev_id": dev_id, "profile": "inline", "idevid_fingerprint": print_})
    device = stack.device(dev_id, idevid=(cert, key))
    try:
        reply = device.package1(*ALL_MOS, headers={"Content-Type": INITIATION})
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        pass  # the TLS layer refused the certificate outright
    else:
        problem(reply, 401)
    assert device_certificates(stack, dev_id) == 0
