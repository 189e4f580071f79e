"""WBXML 1.3 encoding of an :class:`~bootstrap.dm.wbxml.Element` tree, with a string table for repeated text."""

from __future__ import annotations

from collections import Counter

from bootstrap.dm.wbxml._model import (
    _HAS_ATTRS,
    _HAS_CONTENT,
    _MAX_MB_UINT32,
    CHARSET_UTF8,
    END,
    LITERAL,
    OPAQUE,
    STR_I,
    STR_T,
    SWITCH_PAGE,
    SYNCML12,
    WBXML_VERSION_1_3,
    Element,
    Language,
    WbxmlError,
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
