"""OMA DM Device Description Framework (DDF): parse, look up, validate.

A DDF (``application/vnd.syncml.dmddf+xml``, OMA DM 1.2/1.3 TND; DM 2.0 reuses
it) describes the nodes of a management object (MO): names or ``<x>``
placeholders, formats, occurrences and access types. :func:`load_ddf` turns one
into an immutable :class:`Ddf`; :meth:`Ddf.validate` checks an MO instance (a
nested dict) against it and reports every problem at once in a
:class:`MoValidationError`. :class:`DdfRegistry` holds the DDFs we ship in
``config/ddf`` plus any an operator adds, by MO id.

The XML is parsed by expat into ElementTree elements. No DTD declaration is
accepted (no ENTITY, ELEMENT, ATTLIST or NOTATION), which rules out entity
expansion bombs and external entities; a bare ``<!DOCTYPE MgmtTree ...>`` is
allowed because OMA's published DDFs carry one, and the external DTD is never
fetched. Our own rules, documented in docs/mo-formats.md, are marked "ours".
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
import math
import os
import xml.etree.ElementTree as ET  # noqa: S405 - only TreeBuilder; expat below refuses DTD declarations
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, NoReturn, TypeAlias, TypeVar
from xml.parsers import expat

from bootstrap.errors import ConfigurationError, InvalidRequest, NotFound

__all__ = [
    "DDF_MEDIA_TYPE",
    "DEFAULT_DDF_DIR",
    "MAX_DDF_BYTES",
    "MAX_NODE_NAME_LENGTH",
    "PLACEHOLDER",
    "AccessType",
    "Ddf",
    "DdfError",
    "DdfNode",
    "DdfRegistry",
    "DfFormat",
    "MoProblem",
    "MoTree",
    "MoValidationError",
    "MoValue",
    "Occurrence",
    "Scope",
    "load_ddf",
    "load_ddf_bytes",
    "node_name_error",
]

DDF_MEDIA_TYPE = "application/vnd.syncml.dmddf+xml"
#: How a placeholder (an empty NodeName: any name) is written in DDF paths.
PLACEHOLDER = "<x>"
#: Ours: DM leaves it to the device (DevDetail/URI/MaxSegLen); 128 leaves room for 64-char SHA-256 hex names.
MAX_NODE_NAME_LENGTH = 128
#: A DDF larger than this is refused before parsing; the largest OMA DDFs are well under 100 KiB.
MAX_DDF_BYTES = 1 << 20
#: The DDFs shipped in a source checkout: <repo>/config/ddf.
DEFAULT_DDF_DIR = Path(__file__).resolve().parents[2] / "config" / "ddf"

_MAX_XML_DEPTH = 100  # element nesting; a deep MO is ~15 nodes, each adds one level
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1  # ours: DM int as a 32-bit signed integer
_RESERVED_NAMES = frozenset({".", "..", "*", "(x)", PLACEHOLDER})  # path steps, ClientURI wildcards

MoValue: TypeAlias = "str | int | float | bool | bytes | None | Mapping[str, MoValue]"
MoTree: TypeAlias = Mapping[str, MoValue]

_E = TypeVar("_E", bound=enum.Enum)


class DdfError(ConfigurationError):
    """A DDF that is not well-formed XML or not a valid DDF; names the source, line and node."""

    def __init__(self, reason: str, *, source: str, line: int | None = None, path: str | None = None) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {path}: {reason}" if path else f"{where}: {reason}", field=path)
        self.reason = reason
        self.source = source
        self.line = line
        self.path = path


@dataclass(frozen=True, slots=True)
class MoProblem:
    """One way an MO instance differs from its DDF: the node path and what is wrong."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class MoValidationError(InvalidRequest):
    """An MO instance that does not match its DDF, or malformed MO instance JSON."""

    def __init__(self, problems: Sequence[MoProblem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:10])
        more = len(self.problems) - 10
        super().__init__(shown + (f" (and {more} more)" if more > 0 else ""),
                         field=self.problems[0].path if self.problems else None)


class DfFormat(enum.StrEnum):
    """DFFormat: the data format of a node's value; ``node`` means interior."""

    B64 = "b64"
    BIN = "bin"
    BOOL = "bool"
    CHR = "chr"
    INT = "int"
    NODE = "node"
    NULL = "null"
    XML = "xml"
    DATE = "date"
    TIME = "time"
    FLOAT = "float"


class AccessType(enum.StrEnum):
    """AccessType: the DM commands a server may apply to the node."""

    ADD = "Add"
    COPY = "Copy"
    DELETE = "Delete"
    EXEC = "Exec"
    GET = "Get"
    REPLACE = "Replace"


class Scope(enum.StrEnum):
    """Scope: whether the device creates the node (Permanent) or a server may (Dynamic)."""

    PERMANENT = "Permanent"
    DYNAMIC = "Dynamic"


class _CaseSense(enum.StrEnum):
    CS = "CS"
    CIS = "CIS"


_OCCURRENCE_BOUNDS: dict[str, tuple[int, int | None]] = {
    "One": (1, 1), "ZeroOrOne": (0, 1), "ZeroOrMore": (0, None), "OneOrMore": (1, None),
}
_OCCURRENCE_N = {"ZeroOrN": 0, "OneOrN": 1}


@dataclass(frozen=True, slots=True)
class Occurrence:
    """How many instances of a node may exist under its parent (``max`` None: unbounded)."""

    min: int
    max: int | None

    @property
    def label(self) -> str:
        """The DDF element name, e.g. ``ZeroOrMore`` or ``OneOrN(8)``."""
        for name, bounds in _OCCURRENCE_BOUNDS.items():
            if bounds == (self.min, self.max):
                return name
        return f"{'Zero' if self.min == 0 else 'One'}OrN({self.max})"


@dataclass(frozen=True, slots=True)
class DdfNode:
    """One node of a DDF: a named node, or a placeholder (``name`` None) that takes any name."""

    name: str | None
    path: str
    format: DfFormat
    occurrence: Occurrence
    access: frozenset[AccessType]
    scope: Scope | None = None
    mime: str | None = None
    ddf_name: str | None = None
    title: str | None = None
    description: str | None = None
    default: str | None = None
    case_sensitive: bool = True
    children: tuple[DdfNode, ...] = ()
    line: int = 0

    @property
    def is_placeholder(self) -> bool:
        return self.name is None

    @property
    def is_interior(self) -> bool:
        return self.format is DfFormat.NODE

    @property
    def display_name(self) -> str:
        return PLACEHOLDER if self.name is None else self.name

    @property
    def readable(self) -> bool:
        """False for nodes without Get, such as secrets: never log or echo their values."""
        return AccessType.GET in self.access

    def child(self, name: str) -> DdfNode | None:
        """The definition an instance child called ``name`` falls under, or None."""
        return _match(self.children, name)


def _match(defs: Sequence[DdfNode], name: str) -> DdfNode | None:
    # A named definition wins over a placeholder sibling; "<x>" asks for the placeholder itself.
    placeholder = None
    for d in defs:
        if d.name is None:
            placeholder = d
        elif name != PLACEHOLDER and (d.name == name or (
                not d.case_sensitive and d.name.casefold() == name.casefold())):
            return d
    return placeholder


def node_name_error(name: str) -> str | None:
    """Why ``name`` cannot be a DM node name, or None if it can.

    Ours: not empty, at most :data:`MAX_NODE_NAME_LENGTH` characters, no ``/``,
    ``?``, ``#`` or control characters, not ``.``, ``..``, ``*``, ``(x)`` or ``<x>``
    (path steps, ClientURI wildcards, the placeholder), and valid Unicode.
    """
    if not name:
        return "empty node name"
    if len(name) > MAX_NODE_NAME_LENGTH:
        return f"node name longer than {MAX_NODE_NAME_LENGTH} characters"
    if name in _RESERVED_NAMES:
        return f"node name {name!r} is reserved"
    if any(c in "/?#" or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "node name contains '/', '?', '#' or a control character"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "node name is not valid Unicode"
    return None


@dataclass(frozen=True, slots=True)
class Ddf:
    """A parsed DDF: the MO id, its root node and the whole node tree."""

    moid: str
    ver_dtd: str
    nodes: tuple[DdfNode, ...]
    root: DdfNode
    location: str | None = None
    source: str = "<bytes>"

    @property
    def root_name(self) -> str | None:
        """The MO root's node name; None when it is a placeholder (DM 2.0 MOs, DMAcc's ``<x>``)."""
        return self.root.name

    @property
    def mount(self) -> str:
        """DDF path of the MO root's parent: ``DMAcc`` for DMAcc 1.0, ``""`` for a top-level root."""
        return self.root.path.rpartition("/")[0]

    def find(self, path: str) -> DdfNode | None:
        """The definition for ``path``, or None.

        ``path`` is relative to the DDF's top (``DMAcc/x1/AppID``), may use instance
        names or ``<x>`` for placeholders, and may start with the DDF's <Path>
        (``./DMAcc/x1``).
        """
        if self.location and path.startswith(self.location + "/"):
            path = path[len(self.location) + 1:]
        defs, node = self.nodes, None
        for step in path.split("/") if path else ():
            node = _match(defs, step) if step else None
            if node is None:
                return None
            defs = node.children
        return node

    def walk(self) -> Iterator[DdfNode]:
        """Every node, depth first, in document order."""
        stack = list(reversed(self.nodes))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def validate(self, tree: MoTree, *, at: str = "", label: str | None = None) -> None:
        """Check an MO instance tree against this DDF.

        Args:
            tree: The children of the node at ``at``: node name -> dict (interior) or
                leaf value (see docs/mo-formats.md for the value each format takes).
            at: Instance path of the node ``tree`` describes, relative to the DDF top
                (``""``: ``tree`` holds the top-level nodes; ``"x1"``: one DMAcc 1.2 account).
            label: Prefix for problem paths instead of ``at``, e.g. a ClientURI.

        Raises:
            MoValidationError: Listing every problem, each naming the full node path.
        """
        prefix = at if label is None else label
        problems: list[MoProblem] = []
        defs = self._resolve(at, prefix, problems)
        if defs is not None:
            _check_children(tree, defs, prefix, problems)
        if problems:
            raise MoValidationError(problems)

    def _resolve(self, at: str, prefix: str, problems: list[MoProblem]) -> Sequence[DdfNode] | None:
        if not at:
            return self.nodes
        errors = [e for step in at.split("/") if step != PLACEHOLDER and (e := node_name_error(step))]
        node = None if errors else self.find(at)
        if node is not None and node.is_interior:
            return node.children
        if not errors:
            errors.append("not defined by the DDF" if node is None else "is a leaf, not a node tree")
        problems.append(MoProblem(prefix, errors[0]))
        return None


# --- validation --------------------------------------------------------------------------------

def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _check_children(value: object, defs: Sequence[DdfNode], path: str, problems: list[MoProblem]) -> None:
    if not isinstance(value, Mapping):
        problems.append(MoProblem(path, f"expected an interior node, got {_kind(value)}"))
        return
    counts: dict[int, int] = {}  # by id(): hashing a DdfNode would hash its whole subtree
    for name, child in value.items():
        defn = _child_definition(name, defs, path, problems)
        if defn is not None:
            counts[id(defn)] = counts.get(id(defn), 0) + 1
            _check_node(child, defn, _join(path, name), problems)
    for defn in defs:
        _check_occurrence(defn, counts.get(id(defn), 0), path, problems)


def _child_definition(name: object, defs: Sequence[DdfNode], path: str,
                      problems: list[MoProblem]) -> DdfNode | None:
    if not isinstance(name, str):
        problems.append(MoProblem(_join(path, repr(name)), "node name is not a string"))
        return None
    if reason := node_name_error(name):
        problems.append(MoProblem(_join(path, repr(name)), reason))
        return None
    defn = _match(defs, name)
    if defn is None:
        problems.append(MoProblem(_join(path, name), "not defined by the DDF"))
    return defn


def _check_occurrence(defn: DdfNode, count: int, path: str, problems: list[MoProblem]) -> None:
    occ, where = defn.occurrence, _join(path, defn.display_name)
    if count < occ.min:
        problems.append(MoProblem(where, "required node missing" if defn.name else
                                  f"at least {occ.min} node(s) required ({occ.label}), found {count}"))
    elif occ.max is not None and count > occ.max:
        problems.append(MoProblem(where, f"at most {occ.max} node(s) allowed ({occ.label}), found {count}"))


def _check_node(value: object, defn: DdfNode, path: str, problems: list[MoProblem]) -> None:
    if defn.is_interior:
        _check_children(value, defn.children, path, problems)
    elif not _LEAF_CHECKS[defn.format](value):
        # Never echo the value: leaves without Get hold secrets.
        problems.append(MoProblem(path, f"expected format {defn.format} ({_ACCEPTS[defn.format]}), "
                                        f"got {_kind(value)}"))


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "an interior node"
    if value is None:
        return "null"
    return type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and _INT_MIN <= value <= _INT_MAX


def _is_float(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_binary(value: object) -> bool:
    if isinstance(value, bytes):
        return True
    if not isinstance(value, str):
        return False
    try:  # canonical RFC 4648 base64 only, so a value has exactly one text form (and one cv)
        return base64.b64encode(base64.b64decode(value, validate=True)).decode() == value
    except (binascii.Error, ValueError):
        return False


def _is_iso(parse: type[datetime.date] | type[datetime.time], value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse.fromisoformat(value)
    except ValueError:
        return False
    return True


_LEAF_CHECKS: dict[DfFormat, Callable[[object], bool]] = {
    DfFormat.CHR: lambda v: isinstance(v, str),
    DfFormat.XML: lambda v: isinstance(v, str),
    DfFormat.INT: _is_int,
    DfFormat.BOOL: lambda v: isinstance(v, bool),
    DfFormat.FLOAT: _is_float,
    DfFormat.BIN: _is_binary,
    DfFormat.B64: _is_binary,
    DfFormat.DATE: lambda v: _is_iso(datetime.date, v),
    DfFormat.TIME: lambda v: _is_iso(datetime.time, v),
    DfFormat.NULL: lambda v: v is None,
    DfFormat.NODE: lambda v: False,
}
_ACCEPTS = {
    DfFormat.CHR: "text", DfFormat.XML: "text", DfFormat.BOOL: "true or false",
    DfFormat.INT: "an integer from -2147483648 to 2147483647",
    DfFormat.FLOAT: "a finite number", DfFormat.BIN: "bytes or base64 text",
    DfFormat.B64: "bytes or base64 text", DfFormat.DATE: "ISO 8601 date text",
    DfFormat.TIME: "ISO 8601 time text", DfFormat.NULL: "null", DfFormat.NODE: "a node tree",
}


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
