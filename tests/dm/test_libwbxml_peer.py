"""Interoperability with an independent codec: libwbxml's wbxml2xml and xml2wbxml.

Debian's libwbxml2-utils decodes every WBXML message we produce, and encodes our
XML form into WBXML that our decoder must read back to the same tree.
"""

from __future__ import annotations

import base64
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from bootstrap.dm import wbxml
from bootstrap.dm.dmacc10 import Dm1Account, Dm1AppAuth, build_dmacc10
from bootstrap.dm.syncml import DmCommand, DmNode, SyncHeader, bootstrap_commands, parse_message, tnds_xml
from bootstrap.dm.syncml import to_wbxml as syncml_to_wbxml
from bootstrap.dm.syncml import to_xml as syncml_to_xml
from bootstrap.dm.wbxml import SYNCML12, Element

WBXML2XML = "wbxml2xml"
XML2WBXML = "xml2wbxml"
pytestmark = pytest.mark.peers(WBXML2XML, XML2WBXML)

HEADER = SyncHeader(target="IMEI:490154203237518", source="bootstrap", session_id="42", msg_id="1")
ACCOUNT = Dm1Account(
    account_name="x1",
    server_id="dm.example.com",
    name="Example DM \u00e9t\u00e9 \u6f22",
    addr="https://dm.example.com/dm",
    addr_type="URI",
    port=443,
    auth_pref="DIGEST",
    client_auth=Dm1AppAuth("CLCRED", "DIGEST", "IMEI:490154203237518", "c-secret", bytes(range(16))),
    server_auth=Dm1AppAuth("SRVCRED", "DIGEST", "dm.example.com", "s-secret", b"\x00<&]>\xff" * 3),
)
DMACC = bootstrap_commands(build_dmacc10(ACCOUNT).nodes)
REPLACE = [
    DmCommand("Replace", (DmNode("./DMAcc/x1/Name", "chr", "a < b & c > d"), DmNode("./Ext/n", "int", -7))),
    DmCommand("Add", (DmNode("./Ext/flag", "bool", False), DmNode("./Ext/empty", "chr", ""))),
]
MESSAGES: dict[str, tuple[list[DmCommand], Callable[[list[DmCommand]], bytes]]] = {
    "dmacc10-opaque": (DMACC, lambda c: syncml_to_wbxml(HEADER, c)),
    "dmacc10-b64": (DMACC, lambda c: syncml_to_wbxml(HEADER, c, binary="b64")),
    "dmacc10-no-string-table": (DMACC, lambda c: syncml_to_wbxml(HEADER, c, string_table=False)),
    "replace-and-markup": (REPLACE, lambda c: syncml_to_wbxml(HEADER, c)),
}


def _run(tool: str | None, data: bytes, *args: str) -> bytes:
    assert tool is not None
    done = subprocess.run([tool, *args, "-o", "-", "-"], input=data, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def _root(data: bytes) -> ET.Element:
    return ET.fromstring(data)  # noqa: S314 - our output or libwbxml's, never untrusted input


def _canonical(node: ET.Element) -> tuple[object, ...]:
    """Namespaced tag, attributes, leaf text, children: whitespace between elements ignored."""
    text = "" if len(node) else (node.text or "")
    return (node.tag, sorted(node.attrib.items()), text, [_canonical(child) for child in node])


def _canonical_tree(node: Element, parent_ns: str = "") -> tuple[object, ...]:
    """The same canonical form for a decoded WBXML tree, namespaced by code page."""
    page = SYNCML12.page_of(node.tag)
    ns = SYNCML12.namespaces[page] if page is not None else parent_ns
    kids = list(node.elements())
    text = "" if kids else "".join(c.decode() if isinstance(c, bytes) else str(c) for c in node.children)
    return (f"{{{ns}}}{node.tag}", sorted(node.attrs.items()), text, [_canonical_tree(k, ns) for k in kids])


_RAW_BIN_DATA = re.compile(rb"(>)bin(</Format>.*?<Data><!\[CDATA\[)(.*?)(\]\]></Data>)", re.DOTALL)


def _raw_binary_as_b64(xml: bytes) -> bytes:
    # wbxml2xml writes OPAQUE bytes raw into its XML. Our XML form carries them
    # as base64 with Format b64 (TND 7.7.2), so rewrite each bin item that way.
    return _RAW_BIN_DATA.sub(lambda m: m[1] + b"b64" + m[2] + base64.b64encode(m[3]) + m[4], xml)


@pytest.mark.parametrize("name", MESSAGES)
def test_wbxml2xml_decodes_our_wbxml_to_our_xml(name: str) -> None:
    commands, encode = MESSAGES[name]
    decoded = _raw_binary_as_b64(_run(WBXML2XML, encode(commands), "-m", "0"))
    assert _canonical(_root(decoded)) == _canonical(_root(syncml_to_xml(HEADER, commands)))


@pytest.mark.parametrize("name", MESSAGES)
def test_xml2wbxml_encodes_our_xml_into_what_we_decode(name: str) -> None:
    commands, _ = MESSAGES[name]
    ours = syncml_to_xml(HEADER, commands)
    theirs = _run(XML2WBXML, ours)
    assert _canonical_tree(wbxml.decode(theirs)) == _canonical(_root(ours))
    assert parse_message(theirs).commands == parse_message(ours).commands == tuple(commands)


def test_token_tables_match_libwbxml_byte_for_byte() -> None:
    page0 = [t for _, t in sorted(SYNCML12.pages[0].items()) if t != "SyncML"]
    page1 = [t for _, t in sorted(SYNCML12.pages[1].items())]
    xml = (
        '<?xml version="1.0"?>\n<SyncML xmlns="SYNCML:SYNCML1.2">'
        + "".join(f"<{t}/>" for t in page0)
        + "".join(f'<{t} xmlns="syncml:metinf"/>' for t in page1)
        + "<Final/></SyncML>"
    ).encode()
    tree = Element("SyncML", [Element(t) for t in [*page0, *page1, "Final"]])
    assert _run(XML2WBXML, xml, "-n") == wbxml.encode(tree, string_table=False)


def test_wbxml2xml_reads_the_literal_public_id() -> None:
    tree = Element("SyncML", [Element("SyncHdr", [Element("VerDTD", ["1.2"])]), Element("Final")])
    decoded = _root(_run(WBXML2XML, wbxml.encode(tree, literal_public_id=True)))
    assert decoded.findtext("{SYNCML:SYNCML1.2}SyncHdr/{SYNCML:SYNCML1.2}VerDTD") == "1.2"


def test_libwbxml_round_trips_our_tnds() -> None:
    ours = tnds_xml(build_dmacc10(ACCOUNT).nodes)
    back = _run(WBXML2XML, _run(XML2WBXML, ours), "-m", "0")
    assert _canonical(_root(back)) == _canonical(_root(ours))
