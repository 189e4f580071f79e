"""OMA Client Provisioning: the DM account as a w7 APPLICATION characteristic.

For devices that take their DM account only by Client Provisioning
(``application/vnd.wap.connectivity-wbxml``, OMA-WAP-TS-ProvCont-V1_1, public id
``-//WAPFORUM//DTD PROV 1.0//EN`` = 0x0B), after the w7 mapping of
OMA-TS-DM_Bootstrap-V1_2 (appendix on CP)::

    <wap-provisioningdoc version="1.0">
      <characteristic type="APPLICATION">
        APPID w7, PROVIDER-ID = ServerID, NAME
        <characteristic type="APPADDR"> ADDR, ADDRTYPE, <characteristic type="PORT"> PORTNBR
        <characteristic type="APPAUTH"> AAUTHLEVEL APPSRV (the client's credential, CLCRED),
                                        AAUTHTYPE, AAUTHNAME, AAUTHSECRET, AAUTHDATA (base64)
        <characteristic type="APPAUTH"> AAUTHLEVEL CLIENT (the server's credential, SRVCRED) ...

The WBXML uses the ProvCont attribute-start tokens (``name="APPID"`` is one
token) and sends every value as an inline string (value tokens such as
``APPSRV`` are allowed, not required). Tag and attribute code pages are switched
so that a decoder keeping one page state or two (WBXML 1.3 section 5.8.1) reads
the same document. ProvBoot's MAC (HMAC-SHA1 over the document) uses the keys of
:func:`bootstrap.dm.dm1_security.bootstrap_mac`: NETWPIN = NETWORKID, USERPIN,
USERNETWPIN = USERPIN_NETWORKID. USERPINMAC (a MAC folded into the PIN) is not
produced.
"""

from __future__ import annotations

import base64
from xml.sax.saxutils import quoteattr

from bootstrap.dm.dm1_security import SecMode, bootstrap_mac
from bootstrap.dm.dmacc10 import APP_ID, Dm1Account, Dm1AppAuth
from bootstrap.dm.wbxml import CHARSET_UTF8, WBXML_VERSION_1_3, Element, WbxmlError

__all__ = ["CP_MEDIA_TYPE", "CP_SEC", "PROV10_PUBLIC_ID", "content_type", "to_wbxml", "to_xml", "w7_document"]

CP_MEDIA_TYPE = "application/vnd.wap.connectivity-wbxml"
PROV10_PUBLIC_ID = 0x0B
#: DM bootstrap SEC mode -> the ProvBoot SEC with the same key.
CP_SEC: dict[str, str] = {"NETWORKID": "NETWPIN", "USERPIN": "USERPIN", "USERPIN_NETWORKID": "USERNETWPIN"}
_PUBLIC_ID_TEXT = "-//WAPFORUM//DTD PROV 1.0//EN"
_SYSTEM_ID = "http://www.wapforum.org/DTD/prov.dtd"
_SWITCH_PAGE, _END, _STR_I = 0x00, 0x01, 0x03
_HAS_ATTRS, _HAS_CONTENT = 0x80, 0x40
_TAGS = {"wap-provisioningdoc": 0x05, "characteristic": 0x06, "parm": 0x07}  # code page 0
#: Attribute-start tokens we use, (page, token), from ProvCont section 7 (checked against libwbxml).
_ATTRS: dict[str, tuple[int, int]] = {
    "name": (0, 0x05), "value": (0, 0x06), 'name="NAME"': (0, 0x07), 'name="PORTNBR"': (0, 0x23),
    "version": (0, 0x45), 'version="1.0"': (0, 0x46), "type": (0, 0x50), 'type="PORT"': (0, 0x53),
    'name="AAUTHDATA"': (1, 0x2F), 'name="AAUTHLEVEL"': (1, 0x30), 'name="AAUTHNAME"': (1, 0x31),
    'name="AAUTHSECRET"': (1, 0x32), 'name="AAUTHTYPE"': (1, 0x33), 'name="ADDR"': (1, 0x34),
    'name="ADDRTYPE"': (1, 0x35), 'name="APPID"': (1, 0x36), 'name="PROVIDER-ID"': (1, 0x38),
    'type="APPLICATION"': (1, 0x55), 'type="APPADDR"': (1, 0x56), 'type="APPAUTH"': (1, 0x57),
}  # fmt: skip
#: AAuthLevel of DMAcc 1.0 -> the CP AAUTHLEVEL of the w7 mapping.
_LEVELS = {"CLCRED": "APPSRV", "SRVCRED": "CLIENT"}


def w7_document(account: Dm1Account) -> Element:
    """The CP document that provisions ``account`` (the same values as its DMAcc 1.0 form)."""
    addr: list[Element | str | bytes] = [_parm("ADDR", account.addr), _parm("ADDRTYPE", account.addr_type)]
    if account.port is not None:
        addr.append(_characteristic("PORT", [_parm("PORTNBR", str(account.port))]))
    application = _characteristic("APPLICATION", [
        _parm("APPID", APP_ID), _parm("PROVIDER-ID", account.server_id), _parm("NAME", account.name),
        _characteristic("APPADDR", addr), _app_auth(account.client_auth), _app_auth(account.server_auth),
    ])  # fmt: skip
    return Element("wap-provisioningdoc", [application], {"version": "1.0"})


def _parm(name: str, value: str) -> Element:
    return Element("parm", [], {"name": name, "value": value})


def _characteristic(kind: str, children: list[Element | str | bytes]) -> Element:
    return Element("characteristic", children, {"type": kind})


def _app_auth(auth: Dm1AppAuth) -> Element:
    parms: list[Element | str | bytes] = [_parm("AAUTHLEVEL", _LEVELS[auth.level]), _parm("AAUTHTYPE", auth.type),
                                          _parm("AAUTHNAME", auth.name), _parm("AAUTHSECRET", auth.secret)]
    if auth.data is not None:
        parms.append(_parm("AAUTHDATA", base64.b64encode(auth.data).decode("ascii")))
    return _characteristic("APPAUTH", parms)


def to_xml(document: Element) -> bytes:
    """The document as XML (what ``wbxml2xml`` prints for :func:`to_wbxml`'s output)."""

    def render(node: Element) -> str:
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in node.attrs.items())
        inner = "".join(render(c) for c in node.elements())
        return f"<{node.tag}{attrs}>{inner}</{node.tag}>" if inner else f"<{node.tag}{attrs}/>"

    prolog = f'<?xml version="1.0"?>\n<!DOCTYPE wap-provisioningdoc PUBLIC "{_PUBLIC_ID_TEXT}" "{_SYSTEM_ID}">\n'
    return (prolog + render(document) + "\n").encode()


def to_wbxml(document: Element) -> bytes:
    """The document as WBXML 1.3, UTF-8, no string table.

    Raises:
        WbxmlError: an unknown tag, text content, or a value with NUL.
    """
    writer = _Writer()
    writer.element(document)
    return bytes([WBXML_VERSION_1_3, PROV10_PUBLIC_ID, CHARSET_UTF8, 0]) + bytes(writer.out)


def content_type(sec: SecMode, wbxml: bytes, *, imsi: str | None = None, pin: str | None = None) -> str:
    """``application/vnd.wap.connectivity-wbxml; SEC=<NETWPIN|USERPIN|USERNETWPIN>; MAC=<hex>``.

    Raises:
        ValueError: as :func:`~bootstrap.dm.dm1_security.bootstrap_mac`.
    """
    return f"{CP_MEDIA_TYPE}; SEC={CP_SEC[sec]}; MAC={bootstrap_mac(sec, wbxml, imsi=imsi, pin=pin)}"


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()
        # One state for tags, one for attributes, and the last page switched to: a switch is
        # written whenever either model of the decoder would be on another page.
        self.pages = {"tag": 0, "attr": 0}
        self.last = 0

    def switch(self, state: str, page: int) -> None:
        if page != self.pages[state] or page != self.last:
            self.out += bytes([_SWITCH_PAGE, page])
            self.pages[state] = self.last = page

    def element(self, node: Element) -> None:
        if node.tag not in _TAGS or any(not isinstance(c, Element) for c in node.children):
            raise WbxmlError(f"not a provisioning document element: {node.tag}")
        self.switch("tag", 0)
        self.out.append(_TAGS[node.tag] | (_HAS_ATTRS if node.attrs else 0) | (_HAS_CONTENT if node.children else 0))
        if node.attrs:
            for name, value in node.attrs.items():
                self.attribute(name, value)
            self.out.append(_END)
        for child in node.elements():
            self.element(child)
        if node.children:
            self.out.append(_END)

    def attribute(self, name: str, value: str) -> None:
        whole = _ATTRS.get(f'{name}="{value}"')
        if whole is None and name not in _ATTRS:
            raise WbxmlError(f"not a provisioning document attribute: {name}")
        page, token = whole or _ATTRS[name]
        self.switch("attr", page)
        self.out.append(token)
        if whole is None:
            if "\x00" in value:
                raise WbxmlError("an attribute value contains NUL")
            self.out += bytes([_STR_I]) + value.encode("utf-8") + b"\x00"
