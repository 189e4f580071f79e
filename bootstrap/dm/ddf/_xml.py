"""DDF XML to :class:`~bootstrap.dm.ddf.Ddf`: expat with no DTD declarations, and the registry of DDFs by MO id."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET  # noqa: S405 - only TreeBuilder; expat below refuses DTD declarations
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, NoReturn
from xml.parsers import expat

from bootstrap.dm.ddf._model import (
    _E,
    _MAX_XML_DEPTH,
    _OCCURRENCE_BOUNDS,
    _OCCURRENCE_N,
    DEFAULT_DDF_DIR,
    MAX_DDF_BYTES,
    PLACEHOLDER,
    AccessType,
    DdfError,
    DdfNode,
    DfFormat,
    Occurrence,
    Scope,
    _CaseSense,
    node_name_error,
)
from bootstrap.dm.ddf._tree import Ddf, _join
from bootstrap.errors import NotFound

# --- XML ---------------------------------------------------------------------------------------

class _SafeXml:
    """expat feeding ElementTree's TreeBuilder; records each element's line; refuses DTD declarations."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[ET.Element, int] = {}
        self._builder = ET.TreeBuilder()
        self._depth = 0
        p = self._parser = expat.ParserCreate()
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.buffer_text = True
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = lambda *_: self._refuse("an ENTITY declaration")
        p.UnparsedEntityDeclHandler = lambda *_: self._refuse("an ENTITY declaration")
        p.ElementDeclHandler = lambda *_: self._refuse("an ELEMENT declaration")
        p.AttlistDeclHandler = lambda *_: self._refuse("an ATTLIST declaration")
        p.NotationDeclHandler = lambda *_: self._refuse("a NOTATION declaration")
        p.SkippedEntityHandler = lambda name, _pe: self._refuse(f"the undeclared entity &{name};")
        p.ExternalEntityRefHandler = lambda *_: self._refuse("an external entity")
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._builder.data

    def parse(self, data: bytes) -> ET.Element:
        try:
            self._parser.Parse(data, True)
        except expat.ExpatError as exc:
            raise DdfError(f"not well-formed XML: {expat.ErrorString(exc.code)}",
                           source=self.source, line=exc.lineno) from None
        return self._builder.close()

    def _refuse(self, what: str) -> NoReturn:
        raise DdfError(f"{what} is refused: a DDF may not declare or reference DTD entities",
                       source=self.source, line=self._parser.CurrentLineNumber)

    def _doctype(self, name: str, _sysid: str | None, _pubid: str | None, _internal: bool) -> None:
        if name != "MgmtTree":
            self._refuse(f"DOCTYPE {name!r} (expected MgmtTree)")

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        self._depth += 1
        if self._depth > _MAX_XML_DEPTH:
            raise DdfError(f"elements nested deeper than {_MAX_XML_DEPTH}", source=self.source,
                           line=self._parser.CurrentLineNumber)
        self.lines[self._builder.start(tag, attrs)] = self._parser.CurrentLineNumber

    def _end(self, tag: str) -> None:
        self._depth -= 1
        self._builder.end(tag)


# --- DDF structure -----------------------------------------------------------------------------

class _Props(NamedTuple):
    format: DfFormat
    occurrence: Occurrence
    access: frozenset[AccessType]
    scope: Scope | None
    mime: str | None
    ddf_name: str | None
    title: str | None
    description: str | None
    default: str | None
    case_sensitive: bool


class _Ctx:
    """Where we are in one document, to name the line and node path in every error."""

    def __init__(self, source: str, lines: dict[ET.Element, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, el: ET.Element, path: str | None, reason: str) -> NoReturn:
        raise DdfError(reason, source=self.source, line=self.lines.get(el), path=path or None)

    def one(self, el: ET.Element, tag: str, path: str) -> ET.Element | None:
        found = [c for c in el if c.tag == tag]
        if len(found) > 1:
            self.fail(found[1], path, f"more than one <{tag}>")
        return found[0] if found else None

    def need(self, el: ET.Element, tag: str, path: str) -> ET.Element:
        found = self.one(el, tag, path)
        if found is None:
            self.fail(el, path, f"<{el.tag}> has no <{tag}>")
        return found

    def choice(self, el: ET.Element, kind: type[_E], path: str) -> _E:
        kids = list(el)
        allowed = ", ".join(f"<{k.value}/>" for k in kind)
        if len(kids) != 1:
            self.fail(el, path, f"<{el.tag}> must hold exactly one of {allowed}")
        try:
            return kind(kids[0].tag)
        except ValueError:
            self.fail(kids[0], path, f"unknown <{el.tag}> value <{kids[0].tag}>; expected one of {allowed}")


def _text(el: ET.Element | None) -> str | None:
    text = "".join(el.itertext()).strip() if el is not None else ""
    return text or None


def _build_ddf(root: ET.Element, ctx: _Ctx) -> Ddf:
    if root.tag != "MgmtTree":
        ctx.fail(root, None, f"root element is <{root.tag}>, expected <MgmtTree>")
    ver_dtd = _text(ctx.need(root, "VerDTD", "MgmtTree"))
    if ver_dtd is None:
        ctx.fail(root, "MgmtTree", "<VerDTD> is empty")
    tops = [el for el in root if el.tag == "Node"]
    if not tops:
        ctx.fail(root, "MgmtTree", "<MgmtTree> has no <Node>")
    nodes = _build_siblings(tops, "", ctx)
    mo_root = _find_mo_root(nodes)
    if mo_root is None:
        ctx.fail(root, "MgmtTree", "no node declares the MO type (DFType/DDFName)")
    if not mo_root.is_interior:
        ctx.fail(root, mo_root.path, f"the MO root must be an interior node, not format {mo_root.format}")
    location = _text(ctx.one(tops[0], "Path", nodes[0].path))
    return Ddf(moid=mo_root.ddf_name or "", ver_dtd=ver_dtd, nodes=nodes, root=mo_root,
               location=location, source=ctx.source)


def _find_mo_root(nodes: Sequence[DdfNode]) -> DdfNode | None:
    # Breadth first: the shallowest node naming an MO type is the root; deeper ones embed other MOs.
    queue = deque(nodes)
    while queue:
        node = queue.popleft()
        if node.ddf_name:
            return node
        queue.extend(node.children)
    return None


def _build_siblings(elems: Sequence[ET.Element], parent: str, ctx: _Ctx) -> tuple[DdfNode, ...]:
    built = tuple(_build_node(el, parent, ctx) for el in elems)
    seen: dict[str, DdfNode] = {}
    for el, node in zip(elems, built, strict=True):
        key = node.display_name if node.case_sensitive else node.display_name.casefold()
        if key in seen:
            what = "more than one placeholder" if node.name is None else "duplicate node name"
            ctx.fail(el, node.path, f"{what} under {parent or 'MgmtTree'}")
        seen[key] = node
    return built


def _build_node(el: ET.Element, parent: str, ctx: _Ctx) -> DdfNode:
    name_el = ctx.need(el, "NodeName", parent or "MgmtTree")
    name = _text(name_el)
    path = _join(parent, name or PLACEHOLDER)
    if name is not None and (reason := node_name_error(name)):
        ctx.fail(name_el, path, f"<NodeName>: {reason}")
    props = _parse_props(ctx.need(el, "DFProperties", path), path, ctx)
    kids = [c for c in el if c.tag == "Node"]
    if kids and props.format is not DfFormat.NODE:
        ctx.fail(kids[0], path, f"a leaf (format {props.format}) cannot have child nodes")
    children = _build_siblings(kids, path, ctx)
    return DdfNode(name, path, children=children, line=ctx.lines.get(el, 0), **props._asdict())


def _parse_props(el: ET.Element, path: str, ctx: _Ctx) -> _Props:
    occurrence_el, scope_el = ctx.one(el, "Occurrence", path), ctx.one(el, "Scope", path)
    case_el = ctx.one(el, "CaseSense", path)
    mime, ddf_name = _parse_dftype(ctx.one(el, "DFType", path), path, ctx)
    return _Props(
        format=ctx.choice(ctx.need(el, "DFFormat", path), DfFormat, path),
        occurrence=Occurrence(1, 1) if occurrence_el is None else _parse_occurrence(occurrence_el, path, ctx),
        access=_parse_access(ctx.need(el, "AccessType", path), path, ctx),
        scope=None if scope_el is None else ctx.choice(scope_el, Scope, path),
        mime=mime,
        ddf_name=ddf_name,
        title=_text(ctx.one(el, "DFTitle", path)),
        description=_text(ctx.one(el, "Description", path)),
        default=_text(ctx.one(el, "DefaultValue", path)),
        case_sensitive=case_el is None or ctx.choice(case_el, _CaseSense, path) is _CaseSense.CS,
    )


def _parse_access(el: ET.Element, path: str, ctx: _Ctx) -> frozenset[AccessType]:
    access = set()
    for kid in el:
        try:
            access.add(AccessType(kid.tag))
        except ValueError:
            allowed = ", ".join(f"<{a.value}/>" for a in AccessType)
            ctx.fail(kid, path, f"unknown access type <{kid.tag}>; expected {allowed}")
    return frozenset(access)


def _parse_occurrence(el: ET.Element, path: str, ctx: _Ctx) -> Occurrence:
    kids = list(el)
    names = [*_OCCURRENCE_BOUNDS, *_OCCURRENCE_N]
    if len(kids) != 1 or kids[0].tag not in names:
        ctx.fail(el, path, f"<Occurrence> must hold exactly one of {', '.join(names)}")
    tag = kids[0].tag
    if tag in _OCCURRENCE_BOUNDS:
        return Occurrence(*_OCCURRENCE_BOUNDS[tag])
    text = _text(kids[0]) or ""
    if not (text.isascii() and text.isdigit() and int(text) >= 1):
        ctx.fail(kids[0], path, f"<{tag}> must hold a positive integer, not {text!r}")
    return Occurrence(_OCCURRENCE_N[tag], int(text))


def _parse_dftype(el: ET.Element | None, path: str, ctx: _Ctx) -> tuple[str | None, str | None]:
    if el is None:
        return None, None
    kids = list(el)
    if len(kids) != 1 or kids[0].tag not in ("MIME", "DDFName"):
        ctx.fail(el, path, "<DFType> must hold exactly one of <MIME>, <DDFName>")
    text = _text(kids[0])
    return (text, None) if kids[0].tag == "MIME" else (None, text)


# --- loading -----------------------------------------------------------------------------------

def load_ddf_bytes(data: bytes, *, source: str = "<bytes>") -> Ddf:
    """Parse a DDF document.

    Args:
        data: The XML document (any encoding expat knows: UTF-8, UTF-16, ISO-8859-1).
        source: Name used in error messages, e.g. the file path.

    Raises:
        DdfError: Not well-formed XML, a DTD declaration, or not a valid DDF.
    """
    if len(data) > MAX_DDF_BYTES:
        raise DdfError(f"larger than {MAX_DDF_BYTES} bytes", source=source)
    xml = _SafeXml(source)
    root = xml.parse(data)
    return _build_ddf(root, _Ctx(source, xml.lines))


def load_ddf(path: str | os.PathLike[str]) -> Ddf:
    """Read and parse the DDF file at ``path``; raise DdfError if it is missing or invalid."""
    file = Path(path)
    try:
        with file.open("rb") as f:
            data = f.read(MAX_DDF_BYTES + 1)  # +1 so an oversized file is refused, not truncated
    except OSError as exc:
        raise DdfError(f"cannot read: {exc.strerror}", source=str(file)) from None
    return load_ddf_bytes(data, source=str(file))


class DdfRegistry:
    """The DDFs the service knows, by MO id.

    A later directory overrides an earlier one for the same MO id, so an operator
    can replace one of our reconstructed DDFs with OMA's published text.
    """

    def __init__(self, ddfs: Iterable[Ddf] = ()) -> None:
        self._by_moid: dict[str, Ddf] = {}
        for ddf in ddfs:
            self._by_moid[ddf.moid] = ddf

    @classmethod
    def load(cls, extra_dir: str | os.PathLike[str] | None = None, *,
             default_dir: str | os.PathLike[str] | None = DEFAULT_DDF_DIR) -> DdfRegistry:
        """Load every ``*.ddf`` in ``default_dir``, then in ``extra_dir`` (which wins).

        Raises:
            DdfError: A directory is missing, a file is invalid, or two files in one
                directory describe the same MO.
        """
        dirs = [Path(d) for d in (default_dir, extra_dir) if d is not None]
        return cls([ddf for d in dirs for ddf in _load_dir(d)])

    def find(self, moid: str) -> Ddf | None:
        """The DDF for ``moid``, or None."""
        return self._by_moid.get(moid)

    def get(self, moid: str) -> Ddf:
        """The DDF for ``moid``; raise NotFound (field ``MOID``) if there is none."""
        ddf = self._by_moid.get(moid)
        if ddf is None:
            raise NotFound(f"no DDF is registered for MO {moid!r}", field="MOID")
        return ddf

    @property
    def moids(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_moid))

    def __contains__(self, moid: object) -> bool:
        return moid in self._by_moid

    def __iter__(self) -> Iterator[Ddf]:
        return iter(self._by_moid.values())

    def __len__(self) -> int:
        return len(self._by_moid)


def _load_dir(directory: Path) -> list[Ddf]:
    if not directory.is_dir():
        raise DdfError("DDF directory does not exist", source=str(directory))
    loaded: dict[str, Ddf] = {}
    for file in sorted(directory.glob("*.ddf")):
        ddf = load_ddf(file)
        if ddf.moid in loaded:
            raise DdfError(f"MO {ddf.moid} is also described by {loaded[ddf.moid].source}", source=str(file))
        loaded[ddf.moid] = ddf
    return list(loaded.values())
