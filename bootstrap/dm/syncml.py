"""SyncML DM 1.2 bootstrap messages, in XML and WBXML, and TNDS documents.

A bootstrap message (OMA-TS-DM_Bootstrap-V1_2 section 5.3, OMA-TS-DM_RepPro-V1_2
section 6) is one SyncML message: a SyncHdr (VerDTD 1.2, VerProto DM/1.2, SessionID,
MsgID, Target = the device, Source = the server) and a SyncBody of Add or Replace
commands, one per management-tree node, then Final.

Binary node values (Format ``bin``) follow OMA-TS-DM_TND-V1_2 section 7.7.2: in
WBXML they travel raw as OPAQUE with Meta Format ``bin`` (or, on request, as the
base64 text in OPAQUE with Format ``b64``); XML cannot carry raw bytes, so in XML
they are base64 with Format ``b64``. The parser maps both back to ``bin`` bytes,
as a DM client stores them.

Our own choices, kept here: CmdIDs count from 1 in command order; each node gets
its own command; Meta sits on the Item; the XML form carries the DOCTYPE and
namespaces that libwbxml writes (``xmlns="SYNCML:SYNCML1.2"`` on SyncML and
``xmlns="syncml:metinf"`` on each MetInf element).
"""

from __future__ import annotations

import base64
import binascii
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from xml.sax.saxutils import escape

from bootstrap.dm import wbxml
from bootstrap.dm.wbxml import SYNCML12, Element

__all__ = [
    "FORMATS",
    "TNDS_XML_MEDIA_TYPE",
    "WBXML_MEDIA_TYPE",
    "XML_MEDIA_TYPE",
    "DmCommand",
    "DmNode",
    "SyncHeader",
    "SyncMessage",
    "SyncmlError",
    "bootstrap_commands",
    "parse_message",
    "tnds_xml",
    "to_wbxml",
    "to_xml",
]

XML_MEDIA_TYPE = "application/vnd.syncml.dm+xml"
WBXML_MEDIA_TYPE = "application/vnd.syncml.dm+wbxml"
TNDS_XML_MEDIA_TYPE = "application/vnd.syncml.dmtnds+xml"

#: Node formats of OMA-TS-DM_TND-V1_2 section 7.7.2, with the Python value each takes.
FORMATS: dict[str, type | None] = {
    "chr": str, "int": int, "bool": bool, "bin": bytes, "node": None, "null": None,
    "float": str, "date": str, "time": str,
}  # fmt: skip
Verb = Literal["Add", "Replace"]
_SEGMENT = re.compile(r"(?!\.\.?$)[^/\s]+")  # a URI segment, not "." or ".."
_MAX_DEPTH = 32  # as wbxml.decode: a DM message nests about 8 deep
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TNDS_DOCTYPE = (
    '<!DOCTYPE MgmtTree PUBLIC "-//OMA//DTD-DM-DDF 1.2//EN"'
    ' "http://www.openmobilealliance.org/tech/DTD/dm_ddf-v1_2.dtd">'
)


class SyncmlError(ValueError):
    """Bytes that decode but are not a SyncML DM 1.2 message we understand."""


@dataclass(frozen=True)
class DmNode:
    """One management-tree node to create or replace.

    Attributes:
        path: Absolute URI such as ``./DMAcc/x1/ServerID``.
        format: One of :data:`FORMATS`; interior nodes have ``"node"``.
        value: ``str``, ``int``, ``bool`` or ``bytes`` as the format requires;
            None for ``node`` and ``null``. Hidden from repr: it may be a secret.
        type: Meta Type: a MIME type for a leaf, a DDF name for an interior node.
    """

    path: str
    format: str
    value: str | bytes | int | bool | None = field(default=None, repr=False)
    type: str | None = None

    def __post_init__(self) -> None:
        segments = self.path.split("/")
        names = segments[1:]
        if segments[0] != "." or not names or not all(map(_SEGMENT.fullmatch, names)):
            raise ValueError(f"path: not an absolute DM URI: {self.path!r}")
        if self.format not in FORMATS:
            raise ValueError(f"format: unknown DM format {self.format!r}")
        expected = FORMATS[self.format]
        if expected is None and self.value is not None:
            raise TypeError(f"value: a {self.format} node takes no value")
        if expected is not None and (type(self.value) is not expected):
            raise TypeError(f"value: a {self.format} node takes {expected.__name__}")


@dataclass(frozen=True)
class DmCommand:
    """An Add or Replace command with one Item per node."""

    verb: Verb
    nodes: tuple[DmNode, ...]


@dataclass(frozen=True)
class SyncHeader:
    """The SyncHdr fields that vary: device (Target), server (Source), ids."""

    target: str
    source: str
    session_id: str = "1"
    msg_id: str = "1"


@dataclass(frozen=True)
class SyncMessage:
    """A parsed message: its header, its commands and whether Final was set."""

    header: SyncHeader
    commands: tuple[DmCommand, ...]
    final: bool


def bootstrap_commands(nodes: Iterable[DmNode], verb: Verb = "Add") -> list[DmCommand]:
    """Wrap each node in its own command, parents first as given."""
    return [DmCommand(verb, (node,)) for node in nodes]


# --------------------------------------------------------------------------- building


def to_wbxml(
    header: SyncHeader,
    commands: Sequence[DmCommand],
    *,
    binary: Literal["opaque", "b64"] = "opaque",
    string_table: bool = True,
) -> bytes:
    """Encode a message as ``application/vnd.syncml.dm+wbxml`` (public id 0x1201).

    Args:
        header: SyncHdr values.
        commands: The commands, in order.
        binary: ``"opaque"`` sends ``bin`` values raw (Format bin); ``"b64"`` sends
            their base64 text, still as OPAQUE (Format b64).
        string_table: Passed to :func:`bootstrap.dm.wbxml.encode`.

    Returns:
        The WBXML document; the bootstrap MAC is computed over exactly these bytes.
    """
    tree = _message(header, commands, binary=binary, xml=False)
    return wbxml.encode(tree, SYNCML12, string_table=string_table)


def to_xml(header: SyncHeader, commands: Sequence[DmCommand]) -> bytes:
    """Encode a message as ``application/vnd.syncml.dm+xml`` in UTF-8.

    Raises:
        ValueError: A text value holds a character XML 1.0 cannot carry.
    """
    tree = _message(header, commands, binary="b64", xml=True)
    prolog = '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE SyncML PUBLIC "{}" "{}">\n'
    body = _serialize(tree, parent_ns=None)
    return (prolog.format(SYNCML12.public_id_text, SYNCML12.system_id) + body + "\n").encode()


def _message(header: SyncHeader, commands: Sequence[DmCommand], *, binary: str, xml: bool) -> Element:
    hdr = Element("SyncHdr", [
        _leaf("VerDTD", "1.2"), _leaf("VerProto", "DM/1.2"),
        _leaf("SessionID", header.session_id), _leaf("MsgID", header.msg_id),
        Element("Target", [_leaf("LocURI", header.target)]),
        Element("Source", [_leaf("LocURI", header.source)]),
    ])  # fmt: skip
    body = [_command(cmd_id, cmd, binary, xml) for cmd_id, cmd in enumerate(commands, start=1)]
    return Element("SyncML", [hdr, Element("SyncBody", [*body, Element("Final")])])


def _leaf(tag: str, text: str | bytes) -> Element:
    return Element(tag, [text])


def _command(cmd_id: int, command: DmCommand, binary: str, xml: bool) -> Element:
    items = [_item(node, binary, xml) for node in command.nodes]
    return Element(command.verb, [_leaf("CmdID", str(cmd_id)), *items])


def _item(node: DmNode, binary: str, xml: bool) -> Element:
    wire_format, data = _wire_value(node, binary, xml)
    meta = Element("Meta", [_leaf("Format", wire_format)])
    if node.type:
        meta.children.append(_leaf("Type", node.type))
    item = Element("Item", [Element("Target", [_leaf("LocURI", node.path)]), meta])
    if data is not None:
        item.children.append(_leaf("Data", data))
    return item


def _wire_value(node: DmNode, binary: str, xml: bool) -> tuple[str, str | bytes | None]:
    value = node.value
    if isinstance(value, bytes):
        # TND 7.7.2: bin goes raw over WBXML, base64 (Format b64) where it must.
        if binary == "opaque" and not xml:
            return "bin", value
        text = base64.b64encode(value).decode("ascii")
        return "b64", text if xml else text.encode("ascii")
    if isinstance(value, bool):
        return node.format, "true" if value else "false"
    return node.format, None if value is None else str(value)


def _serialize(node: Element, parent_ns: str | None) -> str:
    page = SYNCML12.page_of(node.tag)
    ns = SYNCML12.namespaces.get(page, parent_ns) if page is not None else parent_ns
    start = node.tag + (f' xmlns="{ns}"' if ns != parent_ns else "")
    if not node.children:
        return f"<{start}/>"
    inner = "".join(_serialize_child(child, ns) for child in node.children)
    return f"<{start}>{inner}</{node.tag}>"


def _serialize_child(child: Element | str | bytes, ns: str | None) -> str:
    if isinstance(child, Element):
        return _serialize(child, ns)
    text = child.decode("utf-8") if isinstance(child, bytes) else child
    if _XML_FORBIDDEN.search(text):
        raise ValueError("value: holds a character that XML 1.0 cannot carry; use format bin")
    return escape(text).replace("\r", "&#13;")


# --------------------------------------------------------------------------- parsing


def parse_message(data: bytes) -> SyncMessage:
    """Parse a SyncML DM 1.2 message in WBXML or XML back into commands.

    Only what our bootstrap messages contain is understood: Add, Replace, Final.

    Raises:
        bootstrap.dm.wbxml.WbxmlError: Malformed WBXML.
        SyncmlError: Malformed XML, or not a DM 1.2 bootstrap message.
    """
    root = _from_xml(data) if data.lstrip()[:1] in (b"<", b"\xef") else wbxml.decode(data)
    if root.tag != "SyncML":
        raise SyncmlError(f"root element is {root.tag}, not SyncML")
    header = _header(_child(root, "SyncHdr"))
    body = _child(root, "SyncBody")
    commands = [_parse_command(el) for el in body.elements() if el.tag != "Final"]
    return SyncMessage(header, tuple(commands), body.find("Final") is not None)


def _from_xml(data: bytes) -> Element:
    if b"<!ENTITY" in data:  # no entity declarations: nothing to expand, nothing to abuse
        raise SyncmlError("XML entity declarations are not accepted")
    try:
        return _etree_to_element(ET.fromstring(data))  # noqa: S314 - no DTD, no entities
    except ET.ParseError as exc:
        raise SyncmlError(f"not well-formed XML: {exc}") from exc


def _etree_to_element(node: ET.Element, depth: int = 1) -> Element:
    if depth > _MAX_DEPTH:
        raise SyncmlError(f"elements nest deeper than {_MAX_DEPTH}")
    tag = node.tag.rsplit("}", 1)[-1]  # namespaces are implied by the code pages
    if len(node):
        return Element(tag, [_etree_to_element(child, depth + 1) for child in node])
    return Element(tag, [node.text] if node.text else [])


def _child(parent: Element, tag: str) -> Element:
    found = parent.find(tag)
    if found is None:
        raise SyncmlError(f"{parent.tag} has no {tag}")
    return found


def _text(parent: Element, *path: str) -> str:
    node = parent
    for tag in path:
        node = _child(node, tag)
    if any(isinstance(c, Element) for c in node.children):
        raise SyncmlError(f"{node.tag} holds elements, not text")
    try:
        return "".join(c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in node.children)
    except UnicodeDecodeError as exc:
        raise SyncmlError(f"{node.tag} is not UTF-8 text") from exc


def _header(hdr: Element) -> SyncHeader:
    if (_text(hdr, "VerDTD"), _text(hdr, "VerProto")) != ("1.2", "DM/1.2"):
        raise SyncmlError("not a SyncML DM 1.2 message (VerDTD 1.2, VerProto DM/1.2)")
    return SyncHeader(
        target=_text(hdr, "Target", "LocURI"),
        source=_text(hdr, "Source", "LocURI"),
        session_id=_text(hdr, "SessionID"),
        msg_id=_text(hdr, "MsgID"),
    )


def _parse_command(cmd: Element) -> DmCommand:
    if cmd.tag not in ("Add", "Replace"):
        raise SyncmlError(f"unsupported command {cmd.tag}")
    items = [_parse_item(item, cmd.find("Meta")) for item in cmd.elements() if item.tag == "Item"]
    return DmCommand("Add" if cmd.tag == "Add" else "Replace", tuple(items))


def _parse_item(item: Element, cmd_meta: Element | None) -> DmNode:
    meta = item.find("Meta")
    meta = cmd_meta if meta is None else meta
    wire_format = _meta(meta, "Format") or "chr"  # RepPro: chr when Format is absent
    data = item.find("Data")
    raw = [] if data is None else [c for c in data.children if not isinstance(c, Element)]
    value = _value(wire_format, raw)
    node_format = "bin" if wire_format == "b64" else wire_format
    try:
        return DmNode(_text(item, "Target", "LocURI"), node_format, value, _meta(meta, "Type"))
    except (TypeError, ValueError) as exc:
        raise SyncmlError(f"bad Item: {exc}") from exc


def _meta(meta: Element | None, tag: str) -> str | None:
    return _text(meta, tag) if meta is not None and meta.find(tag) is not None else None


def _value(wire_format: str, raw: list[str | bytes]) -> str | bytes | int | bool | None:
    blob = b"".join(r if isinstance(r, bytes) else r.encode("utf-8") for r in raw)
    try:
        if wire_format == "b64":
            return base64.b64decode(blob, validate=True)
        if wire_format == "bin":
            return blob
        if FORMATS.get(wire_format, str) is None:
            return None
        text = blob.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise SyncmlError(f"Data is not valid {wire_format}: {exc}") from exc
    if wire_format == "int":
        if not re.fullmatch(r"-?[0-9]+", text):
            raise SyncmlError(f"Data is not an int: {text!r}")
        return int(text)
    if wire_format == "bool":
        if text not in ("true", "false"):
            raise SyncmlError(f"Data is not a bool: {text!r}")
        return text == "true"
    return text


# --------------------------------------------------------------------------- TNDS


def tnds_xml(nodes: Sequence[DmNode]) -> bytes:
    """Serialise nodes as a TNDS document (``application/vnd.syncml.dmtnds+xml``).

    Best effort after OMA-TS-DM_TNDS-V1_2: each node whose parent is not in
    ``nodes`` becomes a top-level Node with a ``Path`` naming that parent; the
    rest nest under their parents. RTProperties carry Format and Type (DDFName
    for interior nodes, MIME for leaves); ``bin`` values are base64 with Format
    ``b64``, as in the XML message form. No ACL is written.
    """
    by_path = {node.path: node for node in nodes}
    kids: dict[str, list[DmNode]] = {}
    tops: list[DmNode] = []
    for node in nodes:
        parent = node.path.rsplit("/", 1)[0]
        (kids.setdefault(parent, []) if parent in by_path else tops).append(node)
    body = "".join(_tnds_node(node, kids, top=True) for node in tops)
    prolog = f'<?xml version="1.0" encoding="UTF-8"?>\n{_TNDS_DOCTYPE}\n'
    return (prolog + f'<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD>{body}</MgmtTree>\n').encode()


def _tnds_node(node: DmNode, kids: dict[str, list[DmNode]], *, top: bool) -> str:
    parent, name = node.path.rsplit("/", 1)
    wire_format, data = _wire_value(node, "b64", xml=True)
    type_tag = "DDFName" if node.format == "node" else "MIME"
    node_type = f"<Type><{type_tag}>{escape(node.type)}</{type_tag}></Type>" if node.type else ""
    parts = [f"<NodeName>{escape(name)}</NodeName>"]
    parts += [f"<Path>{escape(parent)}</Path>"] if top else []
    parts.append(f"<RTProperties><Format><{wire_format}/></Format>{node_type}</RTProperties>")
    parts += [_tnds_node(kid, kids, top=False) for kid in kids.get(node.path, [])]
    if data is not None:
        parts.append(f"<Value>{_serialize_child(data, None)}</Value>")
    return "<Node>" + "".join(parts) + "</Node>"
