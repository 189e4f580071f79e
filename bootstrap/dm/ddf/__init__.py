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

from bootstrap.dm.ddf._model import (
    DDF_MEDIA_TYPE,
    DEFAULT_DDF_DIR,
    MAX_DDF_BYTES,
    MAX_NODE_NAME_LENGTH,
    PLACEHOLDER,
    AccessType,
    DdfError,
    DdfNode,
    DfFormat,
    MoProblem,
    MoTree,
    MoValidationError,
    MoValue,
    Occurrence,
    Scope,
    node_name_error,
)
from bootstrap.dm.ddf._tree import Ddf
from bootstrap.dm.ddf._xml import DdfRegistry, load_ddf, load_ddf_bytes

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
