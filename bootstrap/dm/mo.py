"""DM 2.0 MO instance data: the JSON we send and read, and its ClientURI.

DM 2.0 serializes MO instances as a JSON array (OMA-TS-DM_Protocol-V2_0, "MO
serialization")::

    [{"DDF": <url>?, "ClientURI": <uri>, "CV": <validator>?, "MOData": {...}}]

Specification: ``ClientURI`` and ``MOData`` are required; ``ClientURI`` names the
instance root (``urn:oma:mo:oma-dm-devinfo:1.0//``) and ``MOData`` is keyed by the
root node's name (``{"DevInfo": {...}}``); the cache validator ``CV`` is assigned by
the client, so we never make one; when HGET creates an instance the client assigns
its MIID. Ours (docs/mo-formats.md):

- an MO whose root is a placeholder (``<x>``: DMAcc 1.2, our trust MO) is keyed by the
  instance name we propose (the client may choose another and reports it in the
  status ``URI``); internally :class:`MoInstance` holds ``MOID/MIID`` and the
  root's children;
- ``bin``/``b64`` leaves travel as canonical standard base64 text (RFC 4648 §4);
- a reader also accepts our earlier form (``MOID/MIID`` with MOData holding the
  root's children, and a ``MOID`` member), which stored profiles may still hold.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlsplit

from bootstrap import strict_json
from bootstrap.dm.ddf import Ddf, DdfRegistry, MoProblem, MoTree, MoValidationError, node_name_error
from bootstrap.strict_json import StrictJsonError

__all__ = [
    "ALL_INSTANCES",
    "CV_LENGTH",
    "DMACC_1_0",
    "DMACC_1_2",
    "MAX_TREE_DEPTH",
    "MO_INSTANCE_MEDIA_TYPE",
    "OMNA_DDF_URLS",
    "TRUST_1_0",
    "TRUST_ROLES",
    "ClientUri",
    "MoInstance",
    "MoValidationError",
    "canonical_json",
    "compute_cv",
    "ddf_url",
    "dump_instances",
    "load_instances",
    "trust_fingerprint",
    "validate_instance",
]

DMACC_1_2 = "urn:oma:mo:oma-dm-dmacc:1.2"
DMACC_1_0 = "urn:oma:mo:oma-dm-dmacc:1.0"
#: Ours: the trust MO (config/ddf/dmboot-trust-1.0.ddf).
TRUST_1_0 = "urn:oma:mo:ext-dmboot-trust:1.0"
#: Ours: the values of the trust MO's Anchors/<x>/Role; a DDF cannot express them.
TRUST_ROLES = frozenset({"dm-server", "data-repository", "issuing-ca"})
#: Where OMA publishes the DDFs of its MOs; any other MO's DDF is served by us (see :func:`ddf_url`).
OMNA_DDF_URLS: Mapping[str, str] = MappingProxyType({
    DMACC_1_2: "http://www.openmobilealliance.org/tech/omna/dm_mo/dm_dmacc-v1_2.ddf",
})
#: Ours: a plain JSON array of MO instances (DM 2.0 names no media type for it that we know of).
MO_INSTANCE_MEDIA_TYPE = "application/json"
#: The ClientURI instance part meaning "every instance of the MO".
ALL_INSTANCES = "*"
CV_LENGTH = 22  # 132 bits of SHA-256: collisions are not a concern for a cache validator
MAX_TREE_DEPTH = 32  # ours: far deeper than any MO, shallow enough that recursion is safe

_MOID_RE = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[^\s/?#]+", re.IGNORECASE)
_CV_RE = re.compile(r"[\x21-\x7e]{1,128}")  # opaque to a reader: printable ASCII, no spaces
_MEMBERS = ("DDF", "MOID", "ClientURI", "CV", "MOData")


class _FieldError(ValueError):
    """A bad value, with the JSON member or MOData path it is about."""

    def __init__(self, field_: str, reason: str) -> None:
        super().__init__(f"{field_}: {reason}")
        self.field = field_
        self.reason = reason


class _FieldTypeError(_FieldError, TypeError):
    """A value of the wrong type, with the JSON member or MOData path it is about."""


def _check_moid(moid: object, field_: str) -> str:
    if not isinstance(moid, str):
        raise _FieldTypeError(field_, f"must be a string, not {type(moid).__name__}")
    if not _MOID_RE.fullmatch(moid):
        raise _FieldError(field_, f"{moid!r} is not an MO id (urn:<nid>:<nss>, without '/')")
    return moid


@dataclass(frozen=True, slots=True)
class ClientUri:
    """A DM 2.0 ClientURI, ``MOID/MIID[/path]`` or ``MOID/*``.

    The other forms DM 2.0 allows (``MOID/(x)/path?nv=...``, ``MOID//path``,
    ``?cv=``) select instances at the client; we never send them, so they are refused.
    """

    moid: str
    miid: str = ALL_INSTANCES
    path: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_moid(self.moid, "ClientURI")
        if self.miid == ALL_INSTANCES and self.path:
            raise _FieldError("ClientURI", "a path after '*' is not supported; name the instance")
        steps = self.path if self.miid == ALL_INSTANCES else (self.miid, *self.path)
        for step in steps:
            if reason := node_name_error(step):
                raise _FieldError("ClientURI", f"{step!r}: {reason}")

    def __str__(self) -> str:
        return "/".join((self.moid, self.miid, *self.path))

    @classmethod
    def parse(cls, text: str) -> ClientUri:
        """Parse ``MOID/MIID[/path]`` or ``MOID/*``; raise ValueError naming ``ClientURI``."""
        if not isinstance(text, str):
            raise _FieldTypeError("ClientURI", f"must be a string, not {type(text).__name__}")
        if "?" in text or "#" in text:
            raise _FieldError("ClientURI", "a query (?nv=, ?cv=) or fragment is not supported here")
        moid, _, rest = text.partition("/")
        if not rest:
            raise _FieldError("ClientURI", f"{text!r} names no instance; use MOID/MIID or MOID/*")
        miid, *path = rest.split("/")
        return cls(moid, miid, tuple(path))

    def instance_path(self, ddf: Ddf) -> str:
        """The path, relative to ``ddf``'s top, of the node this URI addresses."""
        steps = [ddf.mount] if ddf.mount else []
        if self.miid != ALL_INSTANCES:
            steps += [self.miid, *self.path]
        return "/".join(steps)


@dataclass(frozen=True, slots=True)
class MoInstance:
    """One serialized MO instance; ``data`` is MOData, stored deeply read-only.

    Raises:
        ValueError: A bad member, naming it (``DDF``, ``ClientURI``, ``MOData/Auth/...``).
        TypeError: A member or node value of the wrong type, naming it.
    """

    moid: str
    ddf_url: str
    client_uri: str
    data: MoTree = field(hash=False)
    cv: str | None = None

    def __post_init__(self) -> None:
        _check_moid(self.moid, "MOID")
        _check_url(self.ddf_url)
        uri = ClientUri.parse(self.client_uri)
        if uri.moid != self.moid:
            raise _FieldError("ClientURI", f"names MO {uri.moid!r}, but MOID is {self.moid!r}")
        if self.cv is not None and not (isinstance(self.cv, str) and _CV_RE.fullmatch(self.cv)):
            raise _FieldError("CV", "must be 1 to 128 printable ASCII characters without spaces")
        if not isinstance(self.data, Mapping):
            kind = type(self.data).__name__
            raise _FieldTypeError("MOData", f"must be an object (a node tree), not {kind}")
        object.__setattr__(self, "data", _freeze(self.data, "MOData", 0))

    @classmethod
    def create(cls, moid: str, data: MoTree, *, ddf_url: str, miid: str = ALL_INSTANCES,
               path: Sequence[str] = ()) -> MoInstance:
        """Build an instance addressed ``moid/miid[/path]``; no CV (the client assigns it)."""
        uri = ClientUri(moid, miid, tuple(path))
        return cls(moid=moid, ddf_url=ddf_url, client_uri=str(uri), data=data)

    @property
    def uri(self) -> ClientUri:
        return ClientUri.parse(self.client_uri)

    def to_json(self) -> dict[str, Any]:
        """This instance as DM 2.0 serializes it: ``MOID//`` and MOData keyed by the root node.

        Bytes leaves become base64 text. An instance addressed below its root
        (``MOID/MIID/path``) or as every instance (``MOID/*``) keeps that ClientURI.
        """
        uri = self.uri
        data = _jsonable(self.data)
        if uri.miid != ALL_INSTANCES and not uri.path:
            client_uri, data = f"{self.moid}//", {uri.miid: data}
        else:
            client_uri = self.client_uri
        obj: dict[str, Any] = {"DDF": self.ddf_url, "ClientURI": client_uri}
        if self.cv is not None:
            obj["CV"] = self.cv
        obj["MOData"] = data
        return obj

    def to_stored_json(self) -> dict[str, Any]:
        """Ours: the form enrollment profiles keep, ``MOID`` and ``MOID/MIID`` with the root's children.

        :meth:`from_json` reads it too; what goes on the wire is always :meth:`to_json`.
        """
        obj: dict[str, Any] = {"DDF": self.ddf_url, "MOID": self.moid, "ClientURI": self.client_uri}
        if self.cv is not None:
            obj["CV"] = self.cv
        obj["MOData"] = _jsonable(self.data)
        return obj

    @classmethod
    def from_json(cls, obj: object) -> MoInstance:
        """Read one instance from a decoded JSON object, strictly.

        Raises:
            MoValidationError: Each problem names its member (``ClientURI``, ``MOData/...``).
        """
        if not isinstance(obj, dict):
            raise MoValidationError([MoProblem("", "an MO instance must be a JSON object")])
        problems = [MoProblem(str(k), "unknown member") for k in obj if k not in _MEMBERS]
        problems += [MoProblem(k, "required member missing") for k in ("DDF", "ClientURI", "MOData")
                     if k not in obj]
        problems += [MoProblem(k, "must be a string, not null") for k in ("MOID", "CV")
                     if k in obj and obj[k] is None]  # an absent member is fine, a null one is not
        if problems:
            raise MoValidationError(problems)
        client_uri, data = obj["ClientURI"], obj["MOData"]
        if isinstance(client_uri, str) and client_uri.endswith("//") and client_uri.count("/") == 2:
            # The specification's form: the instance root, MOData keyed by the root node's name.
            if not isinstance(data, dict) or len(data) != 1:
                raise MoValidationError([MoProblem("MOData", "must hold exactly one member, the root node")])
            (root, data), = data.items()
            client_uri = client_uri[:-1] + str(root)
        try:
            moid = obj["MOID"] if "MOID" in obj else ClientUri.parse(client_uri).moid
            return cls(moid=moid, ddf_url=obj["DDF"], client_uri=client_uri, data=data, cv=obj.get("CV"))
        except _FieldError as exc:
            raise MoValidationError([MoProblem(exc.field, exc.reason)]) from None


def _check_url(url: object) -> None:
    if not isinstance(url, str):
        raise _FieldTypeError("DDF", f"must be a string, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise _FieldError("DDF", f"{url!r} is not an absolute http(s) URL")


def _freeze(value: object, path: str, depth: int) -> Any:
    if isinstance(value, Mapping):
        if depth >= MAX_TREE_DEPTH:
            raise _FieldError(path, f"nested deeper than {MAX_TREE_DEPTH} levels")
        return MappingProxyType({_check_name(name, path): _freeze(child, f"{path}/{name}", depth + 1)
                                 for name, child in value.items()})
    if isinstance(value, float) and not math.isfinite(value):
        raise _FieldError(path, "NaN and infinity cannot be sent in JSON")
    if isinstance(value, str):
        _check_text(value, path)
    elif not (value is None or isinstance(value, int | float | bytes)):  # bool is an int
        raise _FieldTypeError(path, f"a node value cannot be {type(value).__name__}")
    return value


def _check_name(name: object, path: str) -> str:
    if not isinstance(name, str):
        raise _FieldTypeError(path, f"node name {name!r} is not a string")
    if reason := node_name_error(name):
        raise _FieldError(f"{path}/{name!r}", reason)
    return name


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _FieldError(path, "text is not valid Unicode (a lone surrogate)") from None


def _jsonable(value: object) -> Any:
    if isinstance(value, Mapping):
        return {name: _jsonable(child) for name, child in value.items()}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def canonical_json(data: MoTree) -> bytes:
    """The canonical form of MOData that CV hashes: sorted keys, no whitespace, UTF-8.

    Raises:
        ValueError: ``data`` is not a valid node tree (TypeError for a wrong type).
    """
    frozen = _freeze(data, "MOData", 0)
    return json.dumps(_jsonable(frozen), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def compute_cv(data: MoTree) -> str:
    """Ours: the CV of MOData, base64url(SHA-256(canonical JSON)) cut to 22 characters.

    Stable across key order and across bytes vs their base64 text, so it survives
    a JSON round trip.
    """
    digest = hashlib.sha256(canonical_json(data)).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:CV_LENGTH]


def dump_instances(instances: Iterable[MoInstance]) -> bytes:
    """The JSON array of ``instances``, compact UTF-8."""
    return json.dumps([i.to_json() for i in instances], separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def load_instances(data: str | bytes) -> tuple[MoInstance, ...]:
    """Read a JSON array of MO instances, strictly.

    Raises:
        MoValidationError: Every problem found, named by JSON Pointer (``/0/ClientURI``).
    """
    try:
        doc = strict_json.loads(data)
    except StrictJsonError as exc:
        raise MoValidationError([MoProblem("", f"not valid JSON: {exc}")]) from None
    if not isinstance(doc, list):
        raise MoValidationError([MoProblem("", "MO instance data must be a JSON array")])
    instances, problems = [], []
    for index, obj in enumerate(doc):
        try:
            instances.append(MoInstance.from_json(obj))
        except MoValidationError as exc:
            problems += [MoProblem(f"/{index}/{p.path}".rstrip("/"), p.reason) for p in exc.problems]
    if problems:
        raise MoValidationError(problems)
    return tuple(instances)


def validate_instance(instance: MoInstance, registry: DdfRegistry) -> Ddf:
    """Check ``instance`` against its DDF before it is sent; return that DDF.

    Problem paths are ClientURIs, e.g. ``urn:oma:mo:oma-dm-dmacc:1.2/x1/Auth/Trsp/Data``.

    Raises:
        MoValidationError: No DDF is registered for the MOID, or MOData does not match it.
    """
    ddf = registry.find(instance.moid)
    if ddf is None:
        raise MoValidationError([MoProblem("MOID", f"no DDF is registered for {instance.moid}")])
    uri = instance.uri
    label = instance.moid if uri.miid == ALL_INSTANCES else instance.client_uri
    ddf.validate(instance.data, at=uri.instance_path(ddf), label=label)
    return ddf


def ddf_url(moid: str, *, base_url: str) -> str:
    """The URL to put in ``DDF``: OMA's for OMA MOs we know, else ours, ``{base_url}/ddf/{moid}``.

    Ours: the service must serve each registered DDF at that URL as
    ``application/vnd.syncml.dmddf+xml``.
    """
    _check_moid(moid, "MOID")
    return OMNA_DDF_URLS.get(moid) or f"{base_url.rstrip('/')}/ddf/{quote(moid, safe=':')}"


def trust_fingerprint(der: bytes) -> str:
    """Ours: the trust MO's Fingerprint of a DER certificate, ``sha256:<lowercase hex>``."""
    return "sha256:" + hashlib.sha256(der).hexdigest()
