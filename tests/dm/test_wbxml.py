"""The WBXML 1.3 codec on its own: known bytes, round trips, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.dm.wbxml import SYNCML12, Element, WbxmlError, decode, encode

# version 1.3, public id 0x1201 as mb_u_int32 (0xA4 0x01), charset 106, empty string table
HEADER = bytes([0x03, 0xA4, 0x01, 0x6A, 0x00])
SYNCML_TAGS = sorted(name for page in SYNCML12.pages.values() for name in page.values())


def test_empty_root_is_header_and_one_token() -> None:
    assert encode(Element("SyncML")) == HEADER + bytes([0x2D])


def test_content_flag_end_and_inline_string() -> None:
    doc = encode(Element("SyncML", [Element("Final"), Element("MsgID", ["1"])]))
    # SyncML|content, Final (no content), MsgID|content STR_I "1" END, END
    assert doc == HEADER + bytes([0x6D, 0x12, 0x5B, 0x03, 0x31, 0x00, 0x01, 0x01])


def test_metinf_tags_switch_to_code_page_1_and_back() -> None:
    tree = Element("Meta", [Element("Format", ["chr"]), Element("Type", ["text/plain"])])
    doc = encode(Element("SyncML", [tree, Element("Final")]), string_table=False)
    body = doc[len(HEADER) :]
    assert body[:4] == bytes([0x6D, 0x5A, 0x00, 0x01])  # SyncML, Meta, SWITCH_PAGE 1
    assert body[4] == 0x47  # Format with content on page 1
    assert body[-4:] == bytes([0x00, 0x00, 0x12, 0x01])  # back to page 0 for Final


def test_opaque_carries_bytes_with_multibyte_length() -> None:
    blob = bytes(range(256)) * 80  # 20480 bytes: a three-octet mb_u_int32 length
    doc = encode(Element("SyncML", [Element("Data", [blob])]))
    assert bytes([0xC3, 0x81, 0xA0, 0x00]) in doc  # OPAQUE, 20480 = 0x81 0xA0 0x00
    assert decode(doc) == Element("SyncML", [Element("Data", [blob])])


def test_repeated_text_goes_to_string_table() -> None:
    tree = Element("SyncML", [Element("LocURI", ["./DMAcc/x1"]), Element("LocURI", ["./DMAcc/x1"])])
    doc = encode(tree)
    assert doc[4] == len(b"./DMAcc/x1\x00")  # string table length
    assert doc.count(b"./DMAcc/x1") == 1
    assert bytes([0x57, 0x83, 0x00, 0x01]) in doc  # LocURI, STR_T index 0, END
    assert decode(doc) == tree


def test_literal_public_id_is_read_from_string_table() -> None:
    tree = Element("SyncML", [Element("Final")])
    doc = encode(tree, literal_public_id=True)
    assert doc.startswith(bytes([0x03, 0x00, 0x00, 0x6A]))
    assert b"-//SYNCML//DTD SyncML 1.2//EN\x00" in doc
    assert decode(doc) == tree


def test_unknown_tags_and_attributes_travel_as_literals() -> None:
    tree = Element("SyncML", [Element("Vendor", ["x"], {"lang": "en"})])
    assert decode(encode(tree)) == tree


def test_entity_decodes_to_character() -> None:
    doc = HEADER + bytes([0x6D, 0x4F, 0x02, 0x81, 0x69, 0x01, 0x01])  # Data ENTITY 233 END END
    assert decode(doc) == Element("SyncML", [Element("Data", ["\u00e9"])])


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"], ids=["nul", "lone-surrogate"])
def test_text_that_inline_strings_cannot_carry_is_refused(text: str) -> None:
    with pytest.raises(WbxmlError):
        encode(Element("SyncML", [Element("Data", [text])]))


# --------------------------------------------------------------------------- round trips


def _trees(depth: int) -> st.SearchStrategy[Element]:
    chars = st.characters(codec="utf-8", exclude_characters="\x00")  # any Unicode but NUL
    text = st.text(alphabet=chars, max_size=12)
    leaf = st.one_of(text, st.binary(max_size=40))
    attrs = st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), text, max_size=2)
    if depth == 0:
        children: st.SearchStrategy[list[Element | str | bytes]] = st.lists(leaf, max_size=3)
    else:
        children = st.lists(st.one_of(leaf, _trees(depth - 1)), max_size=4)
    return st.builds(Element, st.sampled_from(SYNCML_TAGS), children, attrs)


@settings(deadline=None, max_examples=300)
@given(tree=_trees(4), string_table=st.booleans(), literal_public_id=st.booleans())
def test_round_trip(tree: Element, string_table: bool, literal_public_id: bool) -> None:
    doc = encode(tree, string_table=string_table, literal_public_id=literal_public_id)
    assert decode(doc) == tree


# --------------------------------------------------------------------------- garbage

GOOD = encode(Element("SyncML", [Element("LocURI", ["abc"]), Element("Data", [b"xyz"])]))

GARBAGE = {
    "empty": b"",
    "version-only": b"\x03",
    "wbxml-1.0-has-no-charset": bytes([0x00, 0xA4, 0x01, 0x6A, 0x00, 0x2D]),
    "version-9": bytes([0x09, 0xA4, 0x01, 0x6A, 0x00, 0x2D]),
    "other-public-id": bytes([0x03, 0x01, 0x6A, 0x00, 0x2D]),
    "wrong-literal-public-id": bytes([0x03, 0x00, 0x00, 0x6A, 0x02, 0x41, 0x00, 0x2D]),
    "latin1-charset": bytes([0x03, 0xA4, 0x01, 0x04, 0x00, 0x2D]),
    "string-table-past-end": bytes([0x03, 0xA4, 0x01, 0x6A, 0x7F, 0x2D]),
    "mb-uint32-six-octets": bytes([0x03, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    "mb-uint32-over-32-bits": bytes([0x03, 0x9F, 0xFF, 0xFF, 0xFF, 0x7F, 0x6A, 0x00]),
    "no-root": HEADER,
    "unknown-tag-token": HEADER + bytes([0x30]),
    "unknown-code-page": HEADER + bytes([0x00, 0x07, 0x05]),
    "unterminated-str-i": HEADER + bytes([0x6D, 0x03, 0x61, 0x62]),
    "str-t-out-of-bounds": HEADER + bytes([0x6D, 0x83, 0x05, 0x01]),
    "opaque-past-end": HEADER + bytes([0x6D, 0xC3, 0x10, 0x61, 0x01]),
    "missing-end": HEADER + bytes([0x6D, 0x12]),
    "trailing-bytes": GOOD + b"\x01",
    "invalid-utf8": HEADER + bytes([0x6D, 0x03, 0xC3, 0x28, 0x00, 0x01]),
    "extension-token": HEADER + bytes([0x6D, 0xC0, 0x01]),
    "processing-instruction": HEADER + bytes([0x6D, 0x43, 0x01]),
    "surrogate-entity": HEADER + bytes([0x6D, 0x02, 0x83, 0xB0, 0x00, 0x01]),
    "attribute-token-without-table": HEADER + bytes([0xAD, 0x05, 0x01, 0x01]),
    "depth-bomb": HEADER + bytes([0x74]) * 100,
    "literal-tag-no-table": HEADER + bytes([0x44, 0x00, 0x01]),
}


@pytest.mark.parametrize("data", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_raises_wbxml_error(data: bytes) -> None:
    with pytest.raises(WbxmlError):
        decode(data)


def test_wbxml_error_is_a_value_error() -> None:
    assert issubclass(WbxmlError, ValueError)


@settings(deadline=None, max_examples=500)
@given(data=st.binary(max_size=64))
def test_random_bytes_decode_or_raise_wbxml_error(data: bytes) -> None:
    try:
        decode(HEADER + data)
    except WbxmlError:
        pass


@settings(deadline=None, max_examples=500)
@given(pos=st.integers(0, len(GOOD) - 1), byte=st.integers(0, 255))
def test_corrupted_document_decodes_or_raises_wbxml_error(pos: int, byte: int) -> None:
    corrupted = GOOD[:pos] + bytes([byte]) + GOOD[pos + 1 :]
    try:
        decode(corrupted)
    except WbxmlError:
        pass
