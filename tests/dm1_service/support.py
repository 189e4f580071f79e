"""Builders and independent checks for the DM 1.x service tests.

Nothing here calls the code under test to compute what it checks: MAC keys,
MACs and digests are built by hand from the specifications (docs/dm1x.md), and
served messages are read by libwbxml's wbxml2xml and ElementTree, never by the
project's own SyncML or WBXML decoder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import subprocess
import xml.etree.ElementTree as ET
from typing import Any

from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from tests.support.peers import require_peer

ADMIN = "test:admin"
DEV = "IMEI:490154203237518"
PROFILE = "legacy"
SERVER_ID = "dm.example"
SERVER_URL = "https://dm.example.net:8443/dm"
IMSI = "001010123456789"
#: GSM 11.11 EF_IMSI semi-octets of IMSI, by hand: nibbles 9 0 0 1 0 1 0 1 2 3 4 5 6 7 8 9, each pair swapped.
IMSI_KEY = bytes.fromhex("0910101032547698")
WBXML2XML = "wbxml2xml"


def configure(runtime: Runtime, **dmacc: Any) -> None:
    """One DM server and the ``legacy`` profile (token and group key), with ``dmacc`` extras."""
    runtime.config.add_server(SERVER_ID, "Legacy DM", SERVER_URL, actor=ADMIN)
    runtime.config.add_profile(ProfileSpec(name=PROFILE, dm_servers=(SERVER_ID,),
                                           dmacc={"Name": "Legacy DM", **dmacc},
                                           attestation=("token", "group-key")), actor=ADMIN)
    runtime.devices.create_group_key(PROFILE, actor=ADMIN)


def token(runtime: Runtime, dev_id: str = DEV) -> str:
    """A one-time token for ``dev_id``, registering the device first if needed."""
    if not any(v.row.dev_id == dev_id for v in runtime.devices.search(q=dev_id)):
        runtime.devices.register(dev_id, PROFILE, actor=ADMIN)
    return runtime.devices.create_token(dev_id=dev_id, actor=ADMIN)[1]


def mac_key(sec: str, pin: str) -> bytes:
    """The bootstrap MAC key of DM Security 1.2 5.7, by hand."""
    return {"NETWORKID": IMSI_KEY, "USERPIN": pin.encode(), "USERPIN_NETWORKID": IMSI_KEY + pin.encode()}[sec]


def hmac_sha1_hex(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha1).hexdigest().upper()


def content_type_params(value: str) -> tuple[str, dict[str, str]]:
    media, *params = (p.strip() for p in value.split(";"))
    return media, dict(p.split("=", 1) for p in params)


def auth_md5(name: str, secret: str, nonce: bytes) -> str:
    """syncml:auth-md5 by hand: B64(MD5(B64(MD5(name:secret)):nonce))."""
    inner = base64.b64encode(hashlib.md5(f"{name}:{secret}".encode()).digest())  # noqa: S324 - the DM 1.x scheme
    return base64.b64encode(hashlib.md5(inner + b":" + nonce).digest()).decode()  # noqa: S324


# -- libwbxml ----------------------------------------------------------------------------

_RAW_BIN = re.compile(rb"(>)bin(</Format>.*?<Data><!\[CDATA\[)(.*?)(\]\]></Data>)", re.DOTALL)


def wbxml2xml(data: bytes) -> bytes:
    """Decode with libwbxml; binary items rewritten as our XML form carries them (Format b64)."""
    done = subprocess.run([require_peer(WBXML2XML), "-m", "0", "-o", "-", "-"], input=data, capture_output=True,
                          check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    # wbxml2xml writes OPAQUE bytes raw in CDATA; our XML form has them base64 with Format b64 (TND 7.7.2).
    return _RAW_BIN.sub(lambda m: m[1] + b"b64" + m[2] + base64.b64encode(m[3]) + m[4], done.stdout)


def canonical(data: bytes) -> tuple[object, ...]:
    """Namespaced tags, attributes and leaf text; whitespace between elements ignored."""

    def walk(node: ET.Element) -> tuple[object, ...]:
        text = "" if len(node) else (node.text or "")
        return (node.tag, sorted(node.attrib.items()), text, [walk(child) for child in node])

    return walk(ET.fromstring(data))  # noqa: S314 - our own output or libwbxml's


# -- reading a served SyncML DM message without the project's decoder -----------------------

_SYNCML = "{SYNCML:SYNCML1.2}"
_METINF = "{syncml:metinf}"


def syncml_tree(body: bytes) -> ET.Element:
    """The message as an XML tree: WBXML decoded by libwbxml's wbxml2xml, XML parsed as it is."""
    xml = body if body.lstrip().startswith(b"<") else wbxml2xml(body)
    return ET.fromstring(xml)  # noqa: S314 - our own output or libwbxml's


def syncml_target(body: bytes) -> str:
    """SyncHdr/Target/LocURI: the device the message is for."""
    found = syncml_tree(body).findtext(f"{_SYNCML}SyncHdr/{_SYNCML}Target/{_SYNCML}LocURI")
    assert found is not None
    return found


def syncml_final(body: bytes) -> bool:
    """Whether SyncBody ends the package with <Final/>."""
    return syncml_tree(body).find(f"{_SYNCML}SyncBody/{_SYNCML}Final") is not None


def syncml_leaves(body: bytes) -> dict[str, object]:
    """Every leaf node the message adds or replaces: LocURI -> value by its Meta/Format (chr: str, int: int,
    bool: bool, b64 and bin: bytes); interior nodes (Format node) are left out."""
    leaves: dict[str, object] = {}
    for item in syncml_tree(body).iter(f"{_SYNCML}Item"):
        uri = item.findtext(f"{_SYNCML}Target/{_SYNCML}LocURI")
        form = item.findtext(f"{_SYNCML}Meta/{_METINF}Format") or "chr"
        assert uri is not None
        if form == "node":
            continue
        text = item.findtext(f"{_SYNCML}Data") or ""
        value: object = {"int": int, "bool": lambda s: {"true": True, "false": False}[s],
                         "b64": base64.b64decode, "bin": base64.b64decode, "chr": str}[form](text)
        leaves[uri] = value
    return leaves
