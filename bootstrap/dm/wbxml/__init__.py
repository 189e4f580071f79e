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

from bootstrap.dm.wbxml._decode import decode
from bootstrap.dm.wbxml._encode import encode
from bootstrap.dm.wbxml._model import CHARSET_UTF8, SYNCML12, WBXML_VERSION_1_3, Element, Language, WbxmlError

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
