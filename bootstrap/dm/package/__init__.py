"""DM 2.0 bootstrap packages 1, 2 and 3: parse and build. Pure: no HTTP, no database.

- Package 1, :class:`Initiation` (``application/vnd.oma.dm.initiation+json``), device -> server:
  the ``OMADM-DevID`` header, the ``MOS`` list (DM-HLF-001) and - ours - ``Features`` and the
  ``ext-dmboot`` member carrying the PKCS#10 request.
- Package 2 (``application/vnd.oma.dm.request+json``), server -> device: ``{"CMD": [...]}``,
  positional commands :class:`Put`, :class:`Hget`, :class:`End`. :func:`bootstrap_instances`
  turns a :class:`~bootstrap.dm.content.BootstrapContent` into the MO instances a device gets
  (only the MOs it declared, each validated against its DDF, DM-INT-004).
- Package 3, :class:`Response` (``application/vnd.oma.dm.response+json``), device -> server:
  ``Status`` and ``Alert`` lists, with ``urn:oma:at:dm:2.0:BootstrapComplete``.

Everything marked "ours" is our definition where the DM 2.0 text is not known to us; the
whole set is documented in docs/dm2-exchange.md and lives in this package only. Every name
is importable from ``bootstrap.dm.package``; the modules split it by package and concept.

- :mod:`~bootstrap.dm.package.initiation`, :mod:`~bootstrap.dm.package.extension` (``ext-dmboot``,
  TPM members included), :mod:`~bootstrap.dm.package.request`, :mod:`~bootstrap.dm.package.instances`
  (package 2's MO instances), :mod:`~bootstrap.dm.package.response`, :mod:`~bootstrap.dm.package.alert`
  (packages 1 and 3).
"""

from __future__ import annotations

from bootstrap.dm.package._json import (
    PackageBuildError,
    PackageError,
)
from bootstrap.dm.package.alert import (
    BOOTSTRAP_COMPLETE,
    CLIENT_INITIATED,
    Alert,
)
from bootstrap.dm.package.extension import (
    EXTENSION,
    MAX_CSR_BYTES,
    MAX_TOKEN_LENGTH,
    TPM_MEMBERS,
)
from bootstrap.dm.package.initiation import (
    FEATURES,
    INITIATION_MEDIA_TYPE,
    MAX_FEATURES,
    MAX_MIIDS,
    MAX_MOS,
    DeclaredMo,
    Initiation,
    declared_json,
    parse_initiation,
)
from bootstrap.dm.package.instances import (
    DEFAULT_PERM,
    SECMODE_X509,
    TRUST_MIID,
    BootstrapServer,
    account_instance,
    account_miid,
    bootstrap_instances,
    trust_instance,
)
from bootstrap.dm.package.request import (
    REQUEST_MEDIA_TYPE,
    Command,
    Cont,
    End,
    Hget,
    Put,
    encode_request,
    hget_url,
    parse_request,
)
from bootstrap.dm.package.response import (
    RESPONSE_MEDIA_TYPE,
    Response,
    Status,
    parse_response,
)

__all__ = [
    "BOOTSTRAP_COMPLETE",
    "CLIENT_INITIATED",
    "DEFAULT_PERM",
    "EXTENSION",
    "FEATURES",
    "INITIATION_MEDIA_TYPE",
    "MAX_CSR_BYTES",
    "MAX_FEATURES",
    "MAX_MIIDS",
    "MAX_MOS",
    "MAX_TOKEN_LENGTH",
    "REQUEST_MEDIA_TYPE",
    "RESPONSE_MEDIA_TYPE",
    "SECMODE_X509",
    "TPM_MEMBERS",
    "TRUST_MIID",
    "Alert",
    "BootstrapServer",
    "Command",
    "Cont",
    "DeclaredMo",
    "End",
    "Hget",
    "Initiation",
    "PackageBuildError",
    "PackageError",
    "Put",
    "Response",
    "Status",
    "account_instance",
    "account_miid",
    "bootstrap_instances",
    "declared_json",
    "encode_request",
    "hget_url",
    "parse_initiation",
    "parse_request",
    "parse_response",
    "trust_instance",
]
