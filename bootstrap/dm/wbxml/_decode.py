"""WBXML 1.3 decoding into an :class:`~bootstrap.dm.wbxml.Element` tree: bounded depth, strict tokens."""

from __future__ import annotations

from bootstrap.dm.wbxml._model import (
    _EXTENSIONS,
    _HAS_ATTRS,
    _HAS_CONTENT,
    _LITERALS,
    _MAX_MB_UINT32,
    _TAG_MASK,
    CHARSET_UTF8,
    END,
    ENTITY,
    LITERAL,
    OPAQUE,
    PI,
    STR_I,
    STR_T,
    SWITCH_PAGE,
    SYNCML12,
    Element,
    Language,
    WbxmlError,
)

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
