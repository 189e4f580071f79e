"""SyncML DM 1.2 messages: building, our own parser, TNDS, and refusals."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.dm import wbxml
from bootstrap.dm.syncml import (
    DmCommand,
    DmNode,
    SyncHeader,
    SyncmlError,
    bootstrap_commands,
    parse_message,
    tnds_xml,
    to_wbxml,
    to_xml,
)

SYNCML_NS = "{SYNCML:SYNCML1.2}"


def _root(data: bytes) -> ET.Element:
    return ET.fromstring(data)  # noqa: S314 - our own output, not untrusted input


METINF_NS = "{syncml:metinf}"
HEADER = SyncHeader(target="IMEI:490154203237518", source="https://dm.example.com/bootstrap")
NODES = [
    DmNode("./DMAcc/x1", "node", type="org.openmobilealliance/1.0/w7"),
    DmNode("./DMAcc/x1/AppID", "chr", "w7"),
    DmNode("./DMAcc/x1/Name", "chr", "Acme DM, \u00e9t\u00e9 \u6f22 <&>"),
    DmNode("./DMAcc/x1/Port", "int", 443, "text/plain"),
    DmNode("./DMAcc/x1/Enabled", "bool", True),
    DmNode("./DMAcc/x1/AAuthData", "bin", bytes(range(256))),
    DmNode("./DMAcc/x1/Empty", "null"),
]
COMMANDS = [*bootstrap_commands(NODES), DmCommand("Replace", (DmNode("./DMAcc/x1/Name", "chr", "New"),))]


def test_xml_form_has_doctype_and_namespaces() -> None:
    doc = to_xml(HEADER, COMMANDS)
    assert doc.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE SyncML PUBLIC')
    assert b'"-//SYNCML//DTD SyncML 1.2//EN"' in doc
    root = _root(doc)
    assert root.tag == SYNCML_NS + "SyncML"
    assert root.findtext(f"{SYNCML_NS}SyncHdr/{SYNCML_NS}VerProto") == "DM/1.2"
    assert root.findtext(f"{SYNCML_NS}SyncHdr/{SYNCML_NS}Target/{SYNCML_NS}LocURI") == HEADER.target
    formats = root.findall(f".//{SYNCML_NS}Meta/{METINF_NS}Format")
    assert [f.text for f in formats] == ["node", "chr", "chr", "int", "bool", "b64", "null", "chr"]


def test_xml_form_sends_binary_as_base64() -> None:
    root = _root(to_xml(HEADER, COMMANDS))
    item = root.findall(f".//{SYNCML_NS}Item")[5]
    assert item.findtext(f"{SYNCML_NS}Data") == base64.b64encode(bytes(range(256))).decode()


def test_commands_are_numbered_and_final_is_last() -> None:
    body = wbxml.decode(to_wbxml(HEADER, COMMANDS)).find("SyncBody")
    assert body is not None
    tags = [el.tag for el in body.elements()]
    assert tags == ["Add"] * len(NODES) + ["Replace", "Final"]
    ids = [cmd.find("CmdID") for cmd in body.elements() if cmd.tag != "Final"]
    assert [el.children if el is not None else None for el in ids] == [[str(i)] for i in range(1, 9)]


def test_wbxml_sends_binary_raw_as_opaque() -> None:
    item = [el for el in _items(to_wbxml(HEADER, COMMANDS)) if _loc(el) == "./DMAcc/x1/AAuthData"][0]
    assert item.find("Data") == wbxml.Element("Data", [bytes(range(256))])
    meta = item.find("Meta")
    assert meta is not None and meta.find("Format") == wbxml.Element("Format", ["bin"])


def test_wbxml_b64_mode_sends_base64_text_as_opaque() -> None:
    items = _items(to_wbxml(HEADER, COMMANDS, binary="b64"))
    item = [el for el in items if _loc(el) == "./DMAcc/x1/AAuthData"][0]
    assert item.find("Data") == wbxml.Element("Data", [base64.b64encode(bytes(range(256)))])


def _items(doc: bytes) -> list[wbxml.Element]:
    body = wbxml.decode(doc).find("SyncBody")
    assert body is not None
    return [item for cmd in body.elements() for item in cmd.elements() if item.tag == "Item"]


def _loc(item: wbxml.Element) -> str:
    target = item.find("Target")
    loc = target.find("LocURI") if target is not None else None
    assert loc is not None
    return str(loc.children[0])


ENCODINGS: dict[str, Callable[[], bytes]] = {
    "xml": lambda: to_xml(HEADER, COMMANDS),
    "wbxml-opaque": lambda: to_wbxml(HEADER, COMMANDS),
    "wbxml-b64": lambda: to_wbxml(HEADER, COMMANDS, binary="b64"),
    "wbxml-no-string-table": lambda: to_wbxml(HEADER, COMMANDS, string_table=False),
}


@pytest.mark.parametrize("encode", ENCODINGS.values(), ids=ENCODINGS.keys())
def test_parser_returns_what_was_built(encode: Callable[[], bytes]) -> None:
    message = parse_message(encode())
    assert message.header == HEADER
    assert message.final
    assert list(message.commands) == COMMANDS


_SEGMENTS = st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True).filter(lambda s: s not in (".", ".."))
# Text XML 1.0 can carry: no C0 controls, no U+FFFE/U+FFFF, no lone surrogates.
_XML_TEXT = st.text(st.characters(codec="utf-8", min_codepoint=0x20), max_size=20).filter(
    lambda t: "\ufffe" not in t and "\uffff" not in t
)


@st.composite
def _nodes(draw: st.DrawFn) -> DmNode:
    path = "./" + "/".join(draw(st.lists(_SEGMENTS, min_size=1, max_size=4)))
    kind = draw(st.sampled_from(["chr", "int", "bool", "bin", "node", "null"]))
    value: st.SearchStrategy[Any] = {
        "chr": _XML_TEXT,
        "int": st.integers(-(2**31), 2**31 - 1),
        "bool": st.booleans(),
        "bin": st.binary(max_size=40),
        "node": st.none(),
        "null": st.none(),
    }[kind]
    return DmNode(path, kind, draw(value), draw(st.none() | st.sampled_from(["text/plain", "urn:x"])))


@settings(deadline=None, max_examples=150)
@given(nodes=st.lists(_nodes(), max_size=6), verb=st.sampled_from(["Add", "Replace"]))
def test_random_nodes_round_trip_in_both_forms(nodes: list[DmNode], verb: str) -> None:
    commands = bootstrap_commands(nodes, "Add" if verb == "Add" else "Replace")
    for doc in (to_wbxml(HEADER, commands), to_xml(HEADER, commands)):
        assert list(parse_message(doc).commands) == commands


# --------------------------------------------------------------------------- DmNode


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("DMAcc/x1", "chr", "a"), ValueError),
        (("./", "node", None), ValueError),
        (("./DMAcc//x1", "node", None), ValueError),
        (("./DMAcc/../x", "node", None), ValueError),
        (("./DM Acc", "node", None), ValueError),
        (("./a", "string", "a"), ValueError),
        (("./a", "chr", 1), TypeError),
        (("./a", "int", True), TypeError),
        (("./a", "int", "1"), TypeError),
        (("./a", "bool", 1), TypeError),
        (("./a", "bin", "AAAA"), TypeError),
        (("./a", "node", "x"), TypeError),
    ],
    ids=[
        "relative-path",
        "root-only",
        "empty-segment",
        "dot-dot",
        "space",
        "unknown-format",
        "chr-int",
        "int-bool",
        "int-str",
        "bool-int",
        "bin-str",
        "node-with-value",
    ],
)
def test_bad_nodes_are_refused(args: tuple[str, str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        DmNode(*args)  # type: ignore[arg-type]


def test_node_repr_hides_value() -> None:
    assert "s3cret" not in repr(DmNode("./DMAcc/x1/AppAuth/1/AAuthSecret", "chr", "s3cret"))


def test_xml_refuses_control_characters() -> None:
    with pytest.raises(ValueError, match="XML"):
        to_xml(HEADER, bootstrap_commands([DmNode("./a", "chr", "bell\x07")]))


# --------------------------------------------------------------------------- parser refusals


def _xml(body: str, verproto: str = "DM/1.2") -> bytes:
    return (
        '<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD>'
        f"<VerProto>{verproto}</VerProto><SessionID>1</SessionID><MsgID>1</MsgID>"
        "<Target><LocURI>d</LocURI></Target><Source><LocURI>s</LocURI></Source></SyncHdr>"
        f"<SyncBody>{body}<Final/></SyncBody></SyncML>"
    ).encode()


def _add(fmt: str, data: str) -> str:
    meta = f'<Meta><Format xmlns="syncml:metinf">{fmt}</Format></Meta>'
    item = f"<Item><Target><LocURI>./a</LocURI></Target>{meta}<Data>{data}</Data></Item>"
    return f"<Add><CmdID>1</CmdID>{item}</Add>"


BAD_MESSAGES = {
    "not-xml": b"<SyncML",
    "entity-declaration": b'<!DOCTYPE x [<!ENTITY a "b">]><SyncML/>',
    "wrong-root": b"<SyncBody/>",
    "no-header": b'<SyncML xmlns="SYNCML:SYNCML1.2"><SyncBody/></SyncML>',
    "ds-not-dm": _xml("", verproto="SyncML/1.2"),
    "unsupported-command": _xml("<Exec><CmdID>1</CmdID></Exec>"),
    "bad-int": _xml(_add("int", "12a")),
    "bad-bool": _xml(_add("bool", "yes")),
    "bad-b64": _xml(_add("b64", "!!!")),
    "unknown-format": _xml(_add("xml", "<x/>")),
    "bad-path": _xml(_add("chr", "a").replace("./a", "a/b")),
    "depth-bomb": b"<SyncML>" + b"<Item>" * 40 + b"</Item>" * 40 + b"</SyncML>",
}


@pytest.mark.parametrize("data", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_bad_messages_raise_syncml_error(data: bytes) -> None:
    with pytest.raises(SyncmlError):
        parse_message(data)


def test_format_defaults_to_chr_and_command_meta_applies() -> None:
    body = (
        '<Replace><CmdID>1</CmdID><Meta><Format xmlns="syncml:metinf">int</Format></Meta>'
        "<Item><Target><LocURI>./a</LocURI></Target><Data>7</Data></Item></Replace>"
        "<Add><CmdID>2</CmdID><Item><Target><LocURI>./b</LocURI></Target><Data>t</Data></Item></Add>"
    )
    commands = parse_message(_xml(body)).commands
    assert commands == (
        DmCommand("Replace", (DmNode("./a", "int", 7),)),
        DmCommand("Add", (DmNode("./b", "chr", "t"),)),
    )


# --------------------------------------------------------------------------- TNDS


def test_tnds_nests_nodes_under_their_parents() -> None:
    root = _root(tnds_xml(NODES))
    ns = "{syncml:dmddf1.2}"
    assert root.tag == ns + "MgmtTree"
    assert root.findtext(ns + "VerDTD") == "1.2"
    (top,) = root.findall(ns + "Node")
    assert top.findtext(ns + "NodeName") == "x1"
    assert top.findtext(ns + "Path") == "./DMAcc"
    assert top.find(f"{ns}RTProperties/{ns}Format/{ns}node") is not None
    assert top.findtext(f"{ns}RTProperties/{ns}Type/{ns}DDFName") == "org.openmobilealliance/1.0/w7"
    leaves = {n.findtext(ns + "NodeName"): n for n in top.findall(ns + "Node")}
    assert list(leaves) == ["AppID", "Name", "Port", "Enabled", "AAuthData", "Empty"]
    assert leaves["Port"].findtext(ns + "Value") == "443"
    assert leaves["Port"].findtext(f"{ns}RTProperties/{ns}Type/{ns}MIME") == "text/plain"
    assert leaves["AAuthData"].find(f"{ns}RTProperties/{ns}Format/{ns}b64") is not None
    assert leaves["AAuthData"].findtext(ns + "Value") == base64.b64encode(bytes(range(256))).decode()
    assert leaves["Empty"].find(ns + "Value") is None


def test_tnds_makes_orphans_top_level_nodes_with_their_path() -> None:
    root = _root(tnds_xml([DmNode("./DMAcc/x1/Name", "chr", "a"), DmNode("./Vendor/y", "node")]))
    ns = "{syncml:dmddf1.2}"
    assert [(n.findtext(ns + "NodeName"), n.findtext(ns + "Path")) for n in root] == [
        (None, None),  # VerDTD
        ("Name", "./DMAcc/x1"),
        ("y", "./Vendor"),
    ]
