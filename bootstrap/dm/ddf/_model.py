"""DDF nodes: names, formats, occurrences, access types; the errors of a DDF and of an MO instance."""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, TypeVar

from bootstrap.errors import ConfigurationError, InvalidRequest

DDF_MEDIA_TYPE = "application/vnd.syncml.dmddf+xml"


#: How a placeholder (an empty NodeName: any name) is written in DDF paths.
PLACEHOLDER = "<x>"


#: Ours: DM leaves it to the device (DevDetail/URI/MaxSegLen); 128 leaves room for 64-char SHA-256 hex names.
MAX_NODE_NAME_LENGTH = 128


#: A DDF larger than this is refused before parsing; the largest OMA DDFs are well under 100 KiB.
MAX_DDF_BYTES = 1 << 20


#: The DDFs shipped in a source checkout: <repo>/config/ddf.
DEFAULT_DDF_DIR = Path(__file__).resolve().parents[3] / "config" / "ddf"


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


@functools.lru_cache(maxsize=4096)
def node_name_error(name: str) -> str | None:
    """Why ``name`` cannot be a DM node name, or None if it can (remembered: names repeat in every package).

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
