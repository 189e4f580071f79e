"""A parsed DDF and the validation of an MO instance against it."""

from __future__ import annotations

import base64
import binascii
import datetime
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from bootstrap.dm.ddf._model import (
    _INT_MAX,
    _INT_MIN,
    PLACEHOLDER,
    DdfNode,
    DfFormat,
    MoProblem,
    MoTree,
    MoValidationError,
    _match,
    node_name_error,
)


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
