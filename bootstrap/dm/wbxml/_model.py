"""The WBXML tree, its errors, and the SyncML 1.2 / MetInf 1.2 code pages."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

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
