"""The OMA Client Provisioning (w7) form: tokens by hand, libwbxml as a peer, the ProvBoot MAC."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from starlette.testclient import TestClient

from bootstrap.app import create_app
from bootstrap.dm import cp
from bootstrap.dm.dmacc10 import Dm1Account, Dm1AppAuth
from bootstrap.dm.wbxml import Element, WbxmlError
from bootstrap.runtime import Runtime
from bootstrap.services.dm1 import credentials_path
from tests.dm1_service.support import (
    DEV,
    IMSI,
    SERVER_ID,
    WBXML2XML,
    canonical,
    configure,
    content_type_params,
    hmac_sha1_hex,
    mac_key,
    syncml_leaves,
    token,
)

XML2WBXML = "xml2wbxml"
needs_libwbxml = pytest.mark.peers("wbxml2xml", "xml2wbxml")
ACCOUNT = Dm1Account("x1", "dm.example", "L\u00e9gacy <DM> & co", "https://dm.example.net:8443/dm", "URI", 8443,
                     "DIGEST", Dm1AppAuth("CLCRED", "DIGEST", DEV, "c-secret", bytes(range(16))),
                     Dm1AppAuth("SRVCRED", "DIGEST", "dm.example", 's"ecret', b"xyz"))


def _libwbxml(tool: str | None, data: bytes) -> bytes:
    assert tool is not None
    done = subprocess.run([tool, "-o", "-", "-"], input=data, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def test_tokens_by_hand() -> None:
    doc = Element("wap-provisioningdoc", [Element("characteristic", [
        Element("parm", [], {"name": "APPID", "value": "w7"}),
        Element("parm", [], {"name": "NAME", "value": "A"})], {"type": "APPLICATION"})], {"version": "1.0"})
    expected = bytes.fromhex(
        "030b6a00"  # WBXML 1.3, -//WAPFORUM//DTD PROV 1.0//EN, UTF-8, no string table
        "c54601"  # wap-provisioningdoc (attrs, content) version="1.0" END
        "c6 0001 55 01"  # characteristic, attribute page 1, type="APPLICATION", END
        "0000 87 0001 36 0000 06 03 7737 00 01"  # parm: name="APPID" (page 1) value (page 0) "w7"
        "87 07 06 03 41 00 01"  # parm: name="NAME", value "A" - all on page 0
        "01 01"  # END characteristic, END document
        .replace(" ", ""))
    assert cp.to_wbxml(doc) == expected


def test_unknown_elements_are_refused() -> None:
    with pytest.raises(WbxmlError):
        cp.to_wbxml(Element("wap-provisioningdoc", [Element("foo")]))
    with pytest.raises(WbxmlError):
        cp.to_wbxml(Element("parm", [], {"colour": "red"}))


def test_the_w7_document_carries_the_account() -> None:
    root = ET.fromstring(cp.to_xml(cp.w7_document(ACCOUNT)))  # noqa: S314 - our own output
    app = root.find("characteristic[@type='APPLICATION']")
    assert app is not None
    parms = {p.get("name"): p.get("value") for p in app.findall("parm")}
    assert parms == {"APPID": "w7", "PROVIDER-ID": "dm.example", "NAME": ACCOUNT.name}
    auths = app.findall("characteristic[@type='APPAUTH']")
    assert [{p.get("name"): p.get("value") for p in a.findall("parm")}["AAUTHLEVEL"] for a in auths] == [
        "APPSRV", "CLIENT"]  # CLCRED is what the client presents to the application server
    port = app.find("characteristic[@type='APPADDR']/characteristic[@type='PORT']/parm")
    assert port is not None and port.get("value") == "8443"


@needs_libwbxml
def test_libwbxml_decodes_our_wbxml_and_encodes_our_xml() -> None:
    doc = cp.w7_document(ACCOUNT)
    ours = cp.to_xml(doc)
    assert canonical(_libwbxml(WBXML2XML, cp.to_wbxml(doc))) == canonical(ours)
    assert canonical(_libwbxml(WBXML2XML, _libwbxml(XML2WBXML, ours))) == canonical(ours)


@pytest.mark.parametrize(("sec", "cp_sec"), [("NETWORKID", "NETWPIN"), ("USERPIN", "USERPIN"),
                                             ("USERPIN_NETWORKID", "USERNETWPIN")])
def test_the_provboot_mac(sec: Any, cp_sec: str) -> None:
    body = cp.to_wbxml(cp.w7_document(ACCOUNT))
    media, params = content_type_params(cp.content_type(sec, body, imsi=IMSI, pin="1234"))
    assert (media, params) == (cp.CP_MEDIA_TYPE, {"SEC": cp_sec, "MAC": hmac_sha1_hex(mac_key(sec, "1234"), body)})


@needs_libwbxml
def test_the_route_serves_client_provisioning_when_asked(runtime: Runtime) -> None:
    configure(runtime, dm1_sec="NETWORKID")
    with TestClient(create_app(runtime=runtime), base_url="https://testserver") as client:
        def post(accept: str) -> Any:
            return client.post("/dm1/bootstrap", json={"dev_id": DEV, "token": token(runtime), "imsi": IMSI},
                               headers={"Accept": accept})

        reply = post(cp.CP_MEDIA_TYPE)
        syncml = post("application/vnd.syncml.dm+xml")
    assert reply.status_code == 200, reply.text
    media, params = content_type_params(reply.headers["content-type"])
    pin = runtime.store.get(credentials_path(DEV))[0]["pin"]
    assert (media, params) == (cp.CP_MEDIA_TYPE, {"SEC": "NETWPIN",
                                                  "MAC": hmac_sha1_hex(mac_key("NETWORKID", pin), reply.content)})
    decoded = ET.fromstring(_libwbxml(WBXML2XML, reply.content))  # noqa: S314 - libwbxml's output
    secrets = [p.get("value") for p in decoded.iter("parm") if p.get("name") == "AAUTHSECRET"]
    leaves = syncml_leaves(syncml.content)
    assert secrets == [leaves[f"./DMAcc/{SERVER_ID}/AppAuth/{n}/AAuthSecret"] for n in (1, 2)]
