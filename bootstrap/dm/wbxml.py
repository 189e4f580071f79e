"""WBXML 1.3 encoder and decoder, with the SyncML 1.2 / MetInf 1.2 code pages.

WAP-192-WBXML-20010725-a (WBXML 1.3) defines the format::

    start    = version publicid charset strtbl body
    body     = *pi element *pi
    element  = [switchPage] stag [1*attribute END] [*content END]
    content  = element | string | extension | entity | pi | opaque

This module handles tags (with the content and attribute flags of section 5.8.2),
SWITCH_PAGE, STR_I, STR_T, ENTITY, OPAQUE, END and literal (string table) tag and
attribute names. Extension tokens and processing instructions are refused: no
SyncML DM message uses them.

The token tables are those of libwbxml's ``src/wbxml_tables.c``
(``sv_syncml_syncml12_tag_table``, public id ``0x1201``, namespaces
``SYNCML:SYNCML1.2`` for code page 0 and ``syncml:metinf`` for code page 1), which
follow OMA-TS-SyncML_RepPro-V1_2 section 8 and OMA-TS-SyncML_MetaInfo-V1_2.

The tree is our own small :class:`Element`: a child is an element, a ``str``
(STR_I or STR_T on the wire) or ``bytes`` (OPAQUE on the wire). Which leaf data
travels as OPAQUE is the caller's choice; :mod:`bootstrap.dm.syncml` sends binary
node values that way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

__all__ = [
    "CHARSET_UTF8",
    "SYNCML12",
    "WBXML_VERSION_1_3",
    "Element",
    "Language",
    "WbxmlError",
    "decode",
    "encode",
]

# Global tokens, WBXML 1.3 section 7.1.
SWITCH_PAGE, END, ENTITY, STR_I, LITERAL = 0x00, 0x01, 0x02, 0x03, 0x04
PI, STR_T, OPAQUE = 0x43, 0x83, 0xC3
_LITERALS = {0x04, 0x44, 0x84, 0xC4}
_EXTENSIONS = {0x40, 0x41, 0x42, 0x80, 0x81, 0x82, 0xC0, 0xC1, 0xC2}
_HAS_ATTRS, _HAS_CONTENT, _TAG_MASK = 0x80, 0x40, 0x3F

WBXML_VERSION_1_3 = 0x03
#: IANA MIBenum of UTF-8, the only charset we write or read.
CHARSET_UTF8 = 106
_MAX_MB_UINT32 = 0xFFFFFFFF


class WbxmlError(ValueError):
    """A WBXML document that cannot be decoded, or a tree that cannot be encoded."""


@dataclass
class Element:
    """One element: a tag name, attributes, and children in document order.

    A child is an :class:`Element`, a ``str`` (inline or string-table text) or
    ``bytes`` (OPAQUE data).
    """

    tag: str
    children: list[Element | str | bytes] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)

    def find(self, tag: str) -> Element | None:
        """Return the first child element named ``tag``, or None."""
        return next((c for c in self.elements() if c.tag == tag), None)

    def elements(self) -> Iterator[Element]:
        """Iterate over the child elements, skipping text and opaque data."""
        return (c for c in self.children if isinstance(c, Element))


@dataclass(frozen=True)
class Language:
    """A WBXML application: public ids, code pages of tag tokens, namespaces."""

    name: str
    public_id: int
    public_id_text: str
    system_id: str
    pages: Mapping[int, Mapping[int, str]]
    namespaces: Mapping[int, str]

    @cached_property
    def _tokens(self) -> dict[str, tuple[int, int]]:
        return {name: (page, tok) for page, toks in self.pages.items() for tok, name in toks.items()}

    def token(self, tag: str) -> tuple[int, int] | None:
        """Return ``(page, token)`` for a tag name, or None if the tables lack it."""
        return self._tokens.get(tag)

    def page_of(self, tag: str) -> int | None:
        """Return the code page that defines ``tag``, or None."""
        found = self.token(tag)
        return None if found is None else found[0]


def _page(first: int, names: str) -> dict[int, str]:
    # "-" marks a reserved token (SyncML 1.2 page 0, token 0x30).
    return {first + i: n for i, n in enumerate(names.split()) if n != "-"}


#: SyncML 1.2 as libwbxml 0.11 encodes it (WBXML_LANG_SYNCML_SYNCML12).
SYNCML12 = Language(
    name="SyncML 1.2",
    public_id=0x1201,
    public_id_text="-//SYNCML//DTD SyncML 1.2//EN",
    system_id="http://www.openmobilealliance.org/tech/DTD/OMA-TS-SyncML_RepPro_DTD-V1_2.dtd",
    pages={
        0: _page(
            0x05,
            "Add Alert Archive Atomic Chal Cmd CmdID CmdRef Copy Cred Data Delete Exec Final"
            " Get Item Lang LocName LocURI Map MapItem Meta MsgID MsgRef NoResp NoResults Put"
            " Replace RespURI Results Search Sequence SessionID SftDel Source SourceRef Status"
            " Sync SyncBody SyncHdr SyncML Target TargetRef - VerDTD VerProto NumberOfChanges"
            " MoreData Field Filter Record FilterType SourceParent TargetParent Move Correlator",
        ),
        1: _page(
            0x05,
            "Anchor EMI Format FreeID FreeMem Last Mark MaxMsgSize Mem MetInf Next NextNonce"
            " SharedMem Size Type Version MaxObjSize FieldLevel",
        ),
    },
    namespaces={0: "SYNCML:SYNCML1.2", 1: "syncml:metinf"},
)


# --------------------------------------------------------------------------- encoder


def encode(
    root: Element,
    language: Language = SYNCML12,
    *,
    string_table: bool = True,
    literal_public_id: bool = False,
) -> bytes:
    """Encode an element tree as a WBXML 1.3 document in UTF-8.

    Args:
        root: The document element.
        language: Token tables and public id.
        string_table: Put text that occurs more than once in the string table and
            refer to it with STR_T (WBXML 1.3 section 5.7); otherwise all text is STR_I.
        literal_public_id: Write the public id as the string-table literal
            ``-//SYNCML//DTD SyncML 1.2//EN`` instead of its code ``0x1201``.

    Returns:
        The document bytes.

    Raises:
        WbxmlError: A text contains NUL, which STR_I and STR_T cannot carry.
    """
    writer = _Writer(language, _repeated_texts(root) if string_table else set())
    if literal_public_id:
        writer.table_index(language.public_id_text)
    writer.element(root)
    header = bytearray([WBXML_VERSION_1_3])
    if literal_public_id:
        header += b"\x00" + _mb_uint32(0)  # publicid = 0 index (section 5.5)
    else:
        header += _mb_uint32(language.public_id)
    header += _mb_uint32(CHARSET_UTF8) + _mb_uint32(len(writer.table)) + writer.table
    return bytes(header + writer.out)


def _mb_uint32(value: int) -> bytes:
    # Multi-byte unsigned integer, 7 bits per byte, most significant first (section 5.1).
    if not 0 <= value <= _MAX_MB_UINT32:
        raise WbxmlError(f"mb_u_int32 out of range: {value}")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _repeated_texts(root: Element) -> set[str]:
    counts: Counter[str] = Counter()
    stack = [root]
    while stack:
        node = stack.pop()
        for child in node.children:
            if isinstance(child, Element):
                stack.append(child)
            elif isinstance(child, str) and len(child) > 2:
                counts[child] += 1
    return {text for text, n in counts.items() if n > 1}


class _Writer:
    def __init__(self, language: Language, shared: set[str]) -> None:
        self.language = language
        self.shared = shared
        self.table = bytearray()
        self.index: dict[str, int] = {}
        self.out = bytearray()
        self.page = 0

    def table_index(self, text: str) -> int:
        if text not in self.index:
            self.index[text] = len(self.table)
            self.table += _nul_terminated(text)
        return self.index[text]

    def element(self, node: Element) -> None:
        flags = (_HAS_CONTENT if node.children else 0) | (_HAS_ATTRS if node.attrs else 0)
        found = self.language.token(node.tag)
        if found is None:
            self.out += bytes([LITERAL | flags]) + _mb_uint32(self.table_index(node.tag))
        else:
            page, token = found
            if page != self.page:
                self.out += bytes([SWITCH_PAGE, page])
                self.page = page
            self.out.append(token | flags)
        if node.attrs:
            self.attributes(node.attrs)
        for child in node.children:
            self.content(child)
        if node.children:
            self.out.append(END)

    def attributes(self, attrs: dict[str, str]) -> None:
        # SyncML has no attribute code page: names go as LITERAL, values as STR_I.
        for name, value in attrs.items():
            self.out += bytes([LITERAL]) + _mb_uint32(self.table_index(name))
            self.out += bytes([STR_I]) + _nul_terminated(value)
        self.out.append(END)

    def content(self, child: Element | str | bytes) -> None:
        if isinstance(child, Element):
            self.element(child)
        elif isinstance(child, bytes):
            self.out += bytes([OPAQUE]) + _mb_uint32(len(child)) + child
        elif child in self.shared:
            self.out += bytes([STR_T]) + _mb_uint32(self.table_index(child))
        else:
            self.out += bytes([STR_I]) + _nul_terminated(child)


def _nul_terminated(text: str) -> bytes:
    if "\x00" in text:
        raise WbxmlError("text contains NUL; send it as opaque bytes instead")
    try:
        return text.encode("utf-8") + b"\x00"
    except UnicodeEncodeError as exc:
        raise WbxmlError(f"text is not encodable as UTF-8: {exc.reason}") from exc


# --------------------------------------------------------------------------- decoder


def decode(data: bytes, language: Language = SYNCML12, *, max_depth: int = 32) -> Element:
    """Decode a WBXML document of ``language`` into an element tree.

    Args:
        data: The whole document.
        language: The expected application; its public id must match, by code or
            by string-table literal.
        max_depth: Deepest element nesting accepted.

    Returns:
        The root element.

    Raises:
        WbxmlError: The bytes are not a well-formed WBXML document of ``language``
            in UTF-8, or they nest deeper than ``max_depth``.
    """
    reader = _Reader(bytes(data), language, max_depth)
    reader.header()
    root = reader.element(depth=1)
    if reader.pos != len(reader.data):
        raise WbxmlError(f"trailing bytes after the root element at offset {reader.pos}")
    return root


class _Reader:
    def __init__(self, data: bytes, language: Language, max_depth: int) -> None:
        self.data = data
        self.language = language
        self.max_depth = max_depth
        self.pos = 0
        self.page = 0
        self.table = b""

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise WbxmlError(f"unexpected end of document at offset {self.pos}")
        self.pos += 1
        return self.data[self.pos - 1]

    def mb_uint32(self) -> int:
        value = 0
        for _ in range(5):
            octet = self.byte()
            value = (value << 7) | (octet & 0x7F)
            if not octet & 0x80:
                if value > _MAX_MB_UINT32:
                    break
                return value
        raise WbxmlError(f"mb_u_int32 longer than 5 octets or over 32 bits at offset {self.pos}")

    def take(self, length: int) -> bytes:
        if length > len(self.data) - self.pos:
            raise WbxmlError(f"length {length} runs past the end at offset {self.pos}")
        self.pos += length
        return self.data[self.pos - length : self.pos]

    def header(self) -> None:
        version = self.byte()
        if version not in (0x01, 0x02, 0x03):  # 1.0 has no charset field
            raise WbxmlError(f"unsupported WBXML version byte 0x{version:02x}")
        public_id = self.mb_uint32()
        literal_index = self.mb_uint32() if public_id == 0 else None
        charset = self.mb_uint32()
        if charset != CHARSET_UTF8:
            raise WbxmlError(f"unsupported charset MIBenum {charset}; only UTF-8 (106)")
        self.table = self.take(self.mb_uint32())
        if literal_index is not None:
            if self.table_string(literal_index) != self.language.public_id_text:
                raise WbxmlError("public id literal is not " + self.language.public_id_text)
        elif public_id != self.language.public_id:
            raise WbxmlError(f"public id 0x{public_id:x} is not {self.language.name}")

    def table_string(self, index: int) -> str:
        end = self.table.find(b"\x00", index)
        if index >= len(self.table) or end < 0:
            raise WbxmlError(f"string table reference {index} out of bounds")
        return _utf8(self.table[index:end])

    def inline_string(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise WbxmlError(f"unterminated inline string at offset {self.pos}")
        text = _utf8(self.data[self.pos : end])
        self.pos = end + 1
        return text

    def element(self, depth: int) -> Element:
        if depth > self.max_depth:
            raise WbxmlError(f"elements nest deeper than {self.max_depth}")
        token = self.byte()
        while token == SWITCH_PAGE:
            self.page = self.byte()
            token = self.byte()
        node = Element(self.tag_name(token))
        if token & _HAS_ATTRS:
            node.attrs = self.attributes()
        if token & _HAS_CONTENT:
            node.children = self.contents(depth)
        return node

    def tag_name(self, token: int) -> str:
        if token in _LITERALS:
            return self.table_string(self.mb_uint32())
        name = self.language.pages.get(self.page, {}).get(token & _TAG_MASK)
        if name is None:
            raise WbxmlError(f"unknown tag token 0x{token:02x} on page {self.page} at offset {self.pos - 1}")
        return name

    def attributes(self) -> dict[str, str]:
        attrs: dict[str, str] = {}
        token = self.byte()
        while token != END:
            if token == SWITCH_PAGE:
                self.byte()  # attribute code pages are unused: SyncML has none
            elif token == LITERAL:
                name, parts = self.table_string(self.mb_uint32()), []
                while self.pos < len(self.data) and self.data[self.pos] in (STR_I, STR_T):
                    parts.append(self.string(self.byte()))
                attrs[name] = "".join(parts)
            else:
                raise WbxmlError(f"unsupported attribute token 0x{token:02x} at offset {self.pos - 1}")
            token = self.byte()
        return attrs

    def contents(self, depth: int) -> list[Element | str | bytes]:
        children: list[Element | str | bytes] = []
        while True:
            token = self.data[self.pos] if self.pos < len(self.data) else None
            if token == END:
                self.pos += 1
                return children
            if token in (STR_I, STR_T, ENTITY, OPAQUE):
                children.append(self.text(self.byte()))
            elif token is not None and (token in _EXTENSIONS or token == PI):
                raise WbxmlError(f"unsupported token 0x{token:02x} at offset {self.pos}")
            else:
                children.append(self.element(depth + 1))

    def string(self, token: int) -> str:
        if token == STR_I:
            return self.inline_string()
        return self.table_string(self.mb_uint32())

    def text(self, token: int) -> str | bytes:
        if token in (STR_I, STR_T):
            return self.string(token)
        if token == ENTITY:
            code = self.mb_uint32()
            if not (0 < code <= 0x10FFFF) or 0xD800 <= code <= 0xDFFF:
                raise WbxmlError(f"invalid character entity {code}")
            return chr(code)
        return self.take(self.mb_uint32())  # OPAQUE


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WbxmlError(f"string is not UTF-8: {exc.reason}") from exc
