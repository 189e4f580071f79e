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
whole set is documented in docs/dm2-exchange.md and lives in this module only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import quote, urlsplit

from cryptography import x509

from bootstrap import strict_json
from bootstrap.dm.content import BootstrapContent
from bootstrap.dm.ddf import DdfRegistry, MoValidationError, node_name_error
from bootstrap.dm.mo import (
    DMACC_1_2,
    TRUST_1_0,
    TRUST_ROLES,
    MoInstance,
    ddf_url,
    trust_fingerprint,
    validate_instance,
)
from bootstrap.errors import ConfigurationError, InvalidRequest
from bootstrap.strict_json import StrictJsonError
from pki.identity import check_dev_id

__all__ = [
    "BOOTSTRAP_COMPLETE",
    "EXTENSION",
    "TPM_MEMBERS",
    "FEATURES",
    "INITIATION_MEDIA_TYPE",
    "MAX_MIIDS",
    "MAX_MOS",
    "REQUEST_MEDIA_TYPE",
    "RESPONSE_MEDIA_TYPE",
    "TRUST_MIID",
    "Alert",
    "BootstrapServer",
    "CLIENT_INITIATED",
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

INITIATION_MEDIA_TYPE = "application/vnd.oma.dm.initiation+json"
REQUEST_MEDIA_TYPE = "application/vnd.oma.dm.request+json"
RESPONSE_MEDIA_TYPE = "application/vnd.oma.dm.response+json"
BOOTSTRAP_COMPLETE = "urn:oma:at:dm:2.0:BootstrapComplete"
CLIENT_INITIATED = "urn:oma:at:dm:2.0:ClientInitiatedMgmt"

#: Ours: the package 1 member holding our extension: ``{"CSR": <base64 DER>, "Token": <token>?}``.
EXTENSION = "ext-dmboot"
#: Ours: the package 1 member with the device's features, a flat JSON object.
FEATURES = "Features"
#: Ours: the MIID of the trust MO instance we PUT (one per bootstrap service).
TRUST_MIID = "dmboot"
#: Ours: limits on what a device may declare in package 1.
MAX_MOS = 128
MAX_MIIDS = 64
MAX_FEATURES = 64
MAX_CSR_BYTES = 16 * 1024
MAX_TOKEN_LENGTH = 512
_MAX_TEXT = 2048  # a DDF URL, an MIID, a feature value, a URI in a Status
_MAX_STATUSES = 256
_MAX_FEATURE_TEXT = 256
_FEATURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_MOID = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[^\s/?#]+", re.IGNORECASE)

Json: TypeAlias = Any


class PackageError(InvalidRequest):
    """A DM 2.0 package that is not valid JSON or breaks a package rule; ``field`` is a JSON Pointer."""

    def __init__(self, pointer: str, reason: str) -> None:
        super().__init__(f"{pointer or '/'}: {reason}", field=pointer or "/")
        self.pointer = pointer
        self.reason = reason


class PackageBuildError(ConfigurationError):
    """Bootstrap content that cannot become a valid package 2: a server-side fault, not the device's."""


# --- JSON --------------------------------------------------------------------------------------


def _load_object(body: bytes | str, what: str) -> dict[str, Any]:
    try:
        doc = strict_json.loads(body)
    except StrictJsonError as exc:
        raise PackageError("", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PackageError("", f"{what} must be a JSON object, not {_kind(doc)}")
    return doc


def _dump(doc: Json) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _text(value: object, pointer: str, *, limit: int = _MAX_TEXT, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise PackageError(pointer, f"must be a string, not {_kind(value)}")
    if not value and not empty:
        raise PackageError(pointer, "must not be empty")
    if len(value) > limit:
        raise PackageError(pointer, f"longer than {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PackageError(pointer, "is not valid Unicode (a lone surrogate)") from None
    return value


def _array(value: object, pointer: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise PackageError(pointer, f"must be an array, not {_kind(value)}")
    if len(value) > limit:
        raise PackageError(pointer, f"more than {limit} entries")
    return value


def _moid(value: object, pointer: str) -> str:
    text = _text(value, pointer, limit=256)
    if not _MOID.fullmatch(text):
        raise PackageError(pointer, f"{text!r} is not an MO id (urn:<nid>:<nss>, without '/')")
    return text


# --- package 1 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeclaredMo:
    """One entry of package 1's MOS list: an MO type the device supports and its instances."""

    moid: str
    ddf: str | None = None
    miids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The MOS entry as JSON (also the form kept in ``DeviceRow.declared_mos``)."""
        obj: dict[str, Any] = {"MOID": self.moid, "MIID": list(self.miids)}
        if self.ddf is not None:
            obj = {"DDF": self.ddf, **obj}
        return obj


@dataclass(frozen=True)
class Initiation:
    """Package 1: who the device is, what it supports, and - ours - its certification request."""

    dev_id: str
    mos: tuple[DeclaredMo, ...]
    #: DER PKCS#10 request (ours: ``ext-dmboot.CSR``); None when the device sent none (the
    #: specification's package 1 has no CSR: the profile may then generate the key).
    csr: bytes | None = field(repr=False)
    #: Ours: flat JSON object of feature name -> scalar (not null) or list of scalars.
    features: Mapping[str, Any] = field(default_factory=dict)
    #: Ours: a one-time enrollment token in the body (``ext-dmboot.Token``), for stacks that
    #: cannot set the Authorization header.
    token: str | None = field(default=None, repr=False)
    #: The package 1 ``Alert`` list (ClientInitiatedMgmt, ...).
    alerts: tuple[Alert, ...] = ()
    #: Ours: round 2 of TPM attestation (``ext-dmboot.TPM``, docs/tpm.md): member -> base64 or text.
    tpm: Mapping[str, str] | None = field(default=None, repr=False)

    @property
    def declared_moids(self) -> frozenset[str]:
        return frozenset(m.moid for m in self.mos)

    def encode(self) -> bytes:
        """The package 1 body (the DevID travels in the ``OMADM-DevID`` header, not here)."""
        ext: dict[str, Any] = {}
        if self.csr is not None:
            ext["CSR"] = base64.b64encode(self.csr).decode("ascii")
        if self.token is not None:
            ext["Token"] = self.token
        if self.tpm is not None:
            ext["TPM"] = dict(self.tpm)
        doc: dict[str, Any] = {"MOS": [m.to_json() for m in self.mos]}
        if self.alerts:
            doc["Alert"] = [a.to_json() for a in self.alerts]
        if self.features:
            doc[FEATURES] = dict(self.features)
        if ext:
            doc[EXTENSION] = ext
        return _dump(doc)


def parse_initiation(body: bytes | str, *, dev_id: str | None) -> Initiation:
    """Read package 1.

    Unknown top-level and MOS-entry members are ignored (DM 2.0 defines members we do not
    know); inside our own ``ext-dmboot`` member nothing unknown is accepted.

    Args:
        body: The request body.
        dev_id: The ``OMADM-DevID`` header.

    Raises:
        PackageError: What is wrong, with a JSON Pointer to it (``/MOS/2/MOID``).
    """
    if dev_id is None:
        raise PackageError("OMADM-DevID", "this header is required: it carries the device's DevID")
    try:
        check_dev_id(dev_id)
    except ValueError as exc:
        raise PackageError("OMADM-DevID", str(exc)) from None
    doc = _load_object(body, "package 1")
    if "MOS" not in doc:
        raise PackageError("/MOS", "required member missing: the MO types the device supports")
    mos = tuple(_declared(entry, f"/MOS/{i}") for i, entry in enumerate(_array(doc["MOS"], "/MOS", MAX_MOS)))
    features = _features(doc.get(FEATURES, {}))
    alerts = tuple(_alert(a, f"/Alert/{i}") for i, a in enumerate(_array(doc.get("Alert", []), "/Alert", 64)))
    csr, token, tpm = _extension(doc[EXTENSION]) if EXTENSION in doc else (None, None, None)
    return Initiation(dev_id=dev_id, mos=mos, csr=csr, features=features, token=token, alerts=alerts, tpm=tpm)


def _declared(entry: object, pointer: str) -> DeclaredMo:
    if not isinstance(entry, dict):
        raise PackageError(pointer, f"must be an object {{DDF, MOID, MIID}}, not {_kind(entry)}")
    if "MOID" not in entry:
        raise PackageError(f"{pointer}/MOID", "required member missing")
    moid = _moid(entry["MOID"], f"{pointer}/MOID")
    ddf = None
    if entry.get("DDF") is not None:
        ddf = _text(entry["DDF"], f"{pointer}/DDF")
        parts = urlsplit(ddf)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PackageError(f"{pointer}/DDF", "must be an absolute http(s) URL")
    miids = []
    for i, miid in enumerate(_array(entry.get("MIID", []), f"{pointer}/MIID", MAX_MIIDS)):
        text = _text(miid, f"{pointer}/MIID/{i}", limit=256)
        if reason := node_name_error(text):
            raise PackageError(f"{pointer}/MIID/{i}", reason)
        miids.append(text)
    return DeclaredMo(moid=moid, ddf=ddf, miids=tuple(miids))


def _features(value: object) -> dict[str, Any]:
    pointer = f"/{FEATURES}"
    if not isinstance(value, dict):
        raise PackageError(pointer, f"must be an object, not {_kind(value)}")
    if len(value) > MAX_FEATURES:
        raise PackageError(pointer, f"more than {MAX_FEATURES} features")
    for name, item in value.items():
        if not _FEATURE_NAME.fullmatch(name):
            raise PackageError(f"{pointer}/{name}", "a feature name is 1-64 of A-Z a-z 0-9 . _ : -")
        values = item if isinstance(item, list) else [item]
        if len(values) > MAX_FEATURES:
            raise PackageError(f"{pointer}/{name}", f"more than {MAX_FEATURES} values")
        for v in values:
            if not isinstance(v, str | int | float | bool):
                raise PackageError(f"{pointer}/{name}", "a feature is a scalar (not null) or an array of scalars")
            if isinstance(v, str):
                _text(v, f"{pointer}/{name}", limit=_MAX_FEATURE_TEXT, empty=True)
    return dict(value)


def _extension(value: object) -> tuple[bytes | None, str | None, dict[str, str] | None]:
    pointer = f"/{EXTENSION}"
    if not isinstance(value, dict):
        raise PackageError(pointer, f"must be an object, not {_kind(value)}")
    for key in value:
        if key not in ("CSR", "Token", "TPM"):
            raise PackageError(f"{pointer}/{key}", "unknown member (ours: CSR, Token, TPM)")
    csr = None
    if value.get("CSR") is not None:
        text = _text(value["CSR"], f"{pointer}/CSR", limit=MAX_CSR_BYTES * 4 // 3 + 4)
        try:
            csr = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise PackageError(f"{pointer}/CSR", "is not standard base64 (RFC 4648 4)") from None
    token = None
    if value.get("Token") is not None:
        token = _text(value["Token"], f"{pointer}/Token", limit=MAX_TOKEN_LENGTH)
    return csr, token, _tpm(value["TPM"], f"{pointer}/TPM") if value.get("TPM") is not None else None


#: ``ext-dmboot.TPM``: the members of round 2 of TPM attestation (docs/tpm.md), besides the CSR.
TPM_MEMBERS = ("challenge", "secret", "ak_public", "key_public", "certify_info", "signature")


def _tpm(value: object, pointer: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise PackageError(pointer, f"must be an object, not {_kind(value)}")
    for key in value:
        if key not in TPM_MEMBERS:
            raise PackageError(f"{pointer}/{key}", f"unknown member (ours: {', '.join(TPM_MEMBERS)})")
    missing = [key for key in TPM_MEMBERS if key not in value]
    if missing:
        raise PackageError(f"{pointer}/{missing[0]}", "required member missing")
    return {key: _text(value[key], f"{pointer}/{key}", limit=8192) for key in TPM_MEMBERS}


# --- package 2 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Put:
    """``["PUT", ClientURI, [MO instance]]``: data inline (DM-HLF-004)."""

    instance: MoInstance

    def to_json(self) -> list[Any]:
        return ["PUT", self.instance.client_uri, [self.instance.to_json()]]


@dataclass(frozen=True)
class Hget:
    """``["HGET", ServerURI, ClientURI?]``: the device GETs the data from a repository (DM-HLF-003).

    Without ClientURI (what we send) the client picks where the data goes and reports it in
    the status ``URI``; when it creates an MO instance, the client assigns its MIID.
    """

    server_uri: str
    client_uri: str | None = None

    def to_json(self) -> list[Any]:
        return ["HGET", self.server_uri] + ([self.client_uri] if self.client_uri is not None else [])


@dataclass(frozen=True)
class Cont:
    """``["CONT", ServerURI]``: send every following package 3 of this session to ServerURI."""

    server_uri: str

    def to_json(self) -> list[Any]:
        return ["CONT", self.server_uri]


@dataclass(frozen=True)
class End:
    """``["END"]``: no more commands in this session."""

    def to_json(self) -> list[Any]:
        return ["END"]


Command: TypeAlias = Put | Hget | Cont | End


def encode_request(commands: Iterable[Command]) -> bytes:
    """The package 2 body, ``{"CMD": [...]}``, compact UTF-8 JSON."""
    return _dump({"CMD": [c.to_json() for c in commands]})


def parse_request(body: bytes | str) -> tuple[Command, ...]:
    """Read package 2 (the device side: used by tests, the benchmark and device simulators).

    Raises:
        PackageError: Not a package 2 we send: only PUT (with inline data), HGET and END.
    """
    doc = _load_object(body, "package 2")
    commands: list[Command] = []
    for i, cmd in enumerate(_array(doc.get("CMD"), "/CMD", 1024)):
        pointer = f"/CMD/{i}"
        if not isinstance(cmd, list) or not cmd or not isinstance(cmd[0], str):
            raise PackageError(pointer, "a command is an array starting with its name")
        name, args = cmd[0], cmd[1:]
        if name == "END" and not args:
            commands.append(End())
        elif name == "HGET" and len(args) in (1, 2):
            client_uri = _text(args[1], f"{pointer}/2") if len(args) == 2 else None
            commands.append(Hget(_text(args[0], f"{pointer}/1"), client_uri))
        elif name == "CONT" and len(args) == 1:
            commands.append(Cont(_text(args[0], f"{pointer}/1")))
        elif name == "PUT" and len(args) == 2:
            data = _array(args[1], f"{pointer}/2", 1)
            if len(data) != 1:
                raise PackageError(f"{pointer}/2", "PUT carries exactly one MO instance")
            try:
                instance = MoInstance.from_json(data[0])
            except MoValidationError as exc:
                raise PackageError(f"{pointer}/2/0", str(exc)) from None
            if instance.client_uri != args[0]:
                raise PackageError(f"{pointer}/1", "differs from the instance's ClientURI")
            commands.append(Put(instance))
        else:
            raise PackageError(pointer, f"unknown command or wrong arity: {name!r} with {len(args)} arguments")
    return tuple(commands)


def hget_url(repository_url: str, ref: str) -> str:
    """Ours: where a data repository serves one MO instance: ``{repository URL}/dmboot/{ref}``."""
    return f"{repository_url.rstrip('/')}/dmboot/{quote(ref, safe='')}"


def account_miid(server_id: str) -> str:
    """Ours: the DMAcc MIID for a DM server - its SrvID when that is a valid node name.

    Otherwise ``acc-`` and 16 hex digits of its SHA-256. Bootstrapping again to the same
    server replaces the same instance.
    """
    if node_name_error(server_id) is None and len(server_id) <= 64:
        return server_id
    return "acc-" + hashlib.sha256(server_id.encode()).hexdigest()[:16]


#: Ours: Auth/Bootstrap/SecMode values (bin, one byte); the specification's value set is not known.
SECMODE_X509 = b"\x00"
#: Ours: Perm/<x>/MOID when the profile names no MOID (Perm is Required, OneOrMore).
DEFAULT_PERM = ("urn:oma:mo:oma-dm-devinfo:1.0",)


@dataclass(frozen=True)
class BootstrapServer:
    """The bootstrap server as DMAcc ``Auth/Bootstrap`` names it: its URI and TLS certificate (DER)."""

    uri: str
    certificate_der: bytes


def account_instance(content: BootstrapContent, *, ddf_base_url: str,
                     bootstrap: BootstrapServer | None = None) -> MoInstance:
    """The DMAcc 1.2 instance (DMAcc 1.2 table): SrvID, SrvURI, Name, Perm, Auth/Trsp, Auth/Bootstrap.

    ``Auth/Trsp/Data`` is the device's own certificate, DER; ``Auth/Trsp/Secret`` its private
    key (PKCS#8 DER) when the service generated it, else empty (ours: the device holds the
    key of Data). ``Auth/Bootstrap`` (when ``bootstrap`` is given) carries the bootstrap
    server's URI and certificate (ServerPubKey), SecMode X.509, and the client's bootstrap
    credential: ClientPubKey = the same certificate, ClientSecretKey = the same key (or empty).
    ``Auth/Noti`` is not sent: its Secret is Required and this service holds no package 0 secret.
    """
    account = content.account
    leaf = _leaf(content)
    secret = content.private_key_der or b""
    perm = account.permitted_moids or DEFAULT_PERM
    data: dict[str, Any] = {"SrvID": account.server_id, "SrvURI": account.server_uri,
                            "Name": account.name or account.server_id,
                            "Perm": {str(i): {"MOID": moid} for i, moid in enumerate(perm, 1)}}
    auth: dict[str, Any] = {"Trsp": {"Data": leaf, "Secret": secret}}
    if bootstrap is not None:
        auth["Bootstrap"] = {"ServerURI": bootstrap.uri, "SecMode": SECMODE_X509, "ClientPubKey": leaf,
                             "ServerPubKey": bootstrap.certificate_der, "ClientSecretKey": secret}
    data["Auth"] = auth
    return MoInstance.create(DMACC_1_2, data, ddf_url=ddf_url(DMACC_1_2, base_url=ddf_base_url),
                             miid=account_miid(account.server_id))


def trust_instance(content: BootstrapContent, *, ddf_base_url: str) -> MoInstance:
    """Our trust MO: the anchors by role, and the device's certificate chain with its expiry."""
    anchors: dict[str, Any] = {}
    for i, anchor in enumerate(content.trust_anchors, 1):
        if anchor.role not in TRUST_ROLES:
            raise PackageBuildError(f"trust anchor {anchor.name!r} has role {anchor.role!r}; "
                                    f"one of {', '.join(sorted(TRUST_ROLES))} is needed")
        node: dict[str, Any] = {"Role": anchor.role, "Cert": anchor.der, "Fingerprint": trust_fingerprint(anchor.der)}
        if anchor.name:
            node["Name"] = anchor.name
        anchors[str(i)] = node
    leaf = x509.load_der_x509_certificate(_leaf(content))
    data = {
        "Anchors": anchors,
        "Credential": {
            "Chain": {str(i): der for i, der in enumerate(content.certificate_chain, 1)},
            "NotAfter": leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    return MoInstance.create(TRUST_1_0, data, ddf_url=ddf_url(TRUST_1_0, base_url=ddf_base_url), miid=TRUST_MIID)


def _leaf(content: BootstrapContent) -> bytes:
    if not content.certificate_chain:
        raise PackageBuildError(f"no certificate chain for {content.dev_id}")
    return content.certificate_chain[0]


def bootstrap_instances(content: BootstrapContent, declared: Collection[str], registry: DdfRegistry, *,
                        ddf_base_url: str, bootstrap: BootstrapServer | None = None) -> tuple[MoInstance, ...]:
    """The MO instances for package 2, in the order they are to be applied.

    Only MOs whose MOID the device declared in its MOS list are included (DM-HLF-001):
    the trust MO first (it lets the device authenticate what follows), then the DMAcc
    account, then the profile's extra MOs. Each is validated against its DDF (DM-INT-004).

    Raises:
        PackageBuildError: An instance does not match its DDF, or no DDF is registered for it.
    """
    wanted: list[MoInstance] = []
    if TRUST_1_0 in declared:
        wanted.append(trust_instance(content, ddf_base_url=ddf_base_url))
    if DMACC_1_2 in declared:
        wanted.append(account_instance(content, ddf_base_url=ddf_base_url, bootstrap=bootstrap))
    for instance in wanted:  # these carry the device's own certificate: checked per device
        _validated(instance, registry)
    extras = [_checked_extra(extra.moid, json.dumps(extra.instance, sort_keys=True, default=str), registry)
              for extra in content.extra_mos if extra.moid in declared]
    return (*wanted, *extras)


def _validated(instance: MoInstance, registry: DdfRegistry) -> MoInstance:
    try:
        validate_instance(instance, registry)
    except MoValidationError as exc:
        raise PackageBuildError(f"{instance.client_uri} does not match its DDF: {exc}") from None
    return instance


@functools.lru_cache(maxsize=256)
def _checked_extra(moid: str, canonical: str, registry: DdfRegistry) -> MoInstance:
    """A profile's extra MO, built and validated against its DDF once per profile version.

    Keyed by the instance's canonical JSON (what a profile version fixes), so an edited
    profile is checked again; a refusal is not remembered. The value is a frozen MoInstance.
    """
    return _validated(_extra(moid, json.loads(canonical)), registry)


def _extra(moid: str, obj: Mapping[str, Any]) -> MoInstance:
    try:
        instance = MoInstance.from_json(dict(obj))
    except MoValidationError as exc:
        raise PackageBuildError(f"the profile's extra MO {moid} is not MO instance JSON: {exc}") from None
    if instance.moid != moid:
        raise PackageBuildError(f"the profile's extra MO is declared as {moid} but names {instance.moid}")
    return instance  # the CV is the client's to assign (MO serialization): none from us


# --- package 3 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """``{"sc": <status code>, "URI": [ClientURI, ...]}``: the result of commands on those URIs."""

    sc: int
    uris: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.sc < 300

    def to_json(self) -> dict[str, Any]:
        return {"sc": self.sc, "URI": list(self.uris)}


_ALERT_MEMBERS = {"AlertType": "alert_type", "SourceURI": "source_uri", "TargetURI": "target_uri",
                  "Mark": "mark", "DataType": "data_type", "Data": "data"}


@dataclass(frozen=True)
class Alert:
    """One alert: AlertType and the optional SourceURI, TargetURI, Mark, DataType, Data."""

    alert_type: str
    source_uri: str | None = None
    target_uri: str | None = None
    mark: str | None = None
    data_type: str | None = None
    data: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {member: getattr(self, attr) for member, attr in _ALERT_MEMBERS.items()
                if getattr(self, attr) is not None}


@dataclass(frozen=True)
class Response:
    """Package 3: the statuses of package 2's commands and the device's alerts."""

    statuses: tuple[Status, ...] = ()
    alerts: tuple[Alert, ...] = ()

    @property
    def bootstrap_complete(self) -> bool:
        """The device sent ``urn:oma:at:dm:2.0:BootstrapComplete``."""
        return any(a.alert_type == BOOTSTRAP_COMPLETE for a in self.alerts)

    @property
    def failures(self) -> tuple[Status, ...]:
        return tuple(s for s in self.statuses if not s.ok)

    def encode(self) -> bytes:
        return _dump({"Status": [s.to_json() for s in self.statuses], "Alert": [a.to_json() for a in self.alerts]})


def parse_response(body: bytes | str) -> Response:
    """Read package 3; unknown members are ignored.

    Raises:
        PackageError: What is wrong, with a JSON Pointer to it (``/Status/0/sc``).
    """
    doc = _load_object(body, "package 3")
    statuses = tuple(_status(s, f"/Status/{i}")
                     for i, s in enumerate(_array(doc.get("Status", []), "/Status", _MAX_STATUSES)))
    alerts = tuple(_alert(a, f"/Alert/{i}") for i, a in enumerate(_array(doc.get("Alert", []), "/Alert", 64)))
    return Response(statuses=statuses, alerts=alerts)


def _status(value: object, pointer: str) -> Status:
    if not isinstance(value, dict):
        raise PackageError(pointer, f"must be an object {{sc, URI}}, not {_kind(value)}")
    sc = value.get("sc")
    if not isinstance(sc, int) or isinstance(sc, bool) or not 100 <= sc <= 599:
        raise PackageError(f"{pointer}/sc", "must be a status code, an integer from 100 to 599")
    uris = value.get("URI", [])
    if isinstance(uris, str):  # ours: a lone URI is taken as a one-element list
        uris = [uris]
    texts = tuple(_text(u, f"{pointer}/URI/{j}") for j, u in enumerate(_array(uris, f"{pointer}/URI", 256)))
    return Status(sc=sc, uris=texts)


def _alert(value: object, pointer: str) -> Alert:
    if not isinstance(value, dict):
        raise PackageError(pointer, f"must be an object, not {_kind(value)}")
    if "AlertType" not in value:
        raise PackageError(f"{pointer}/AlertType", "required member missing")
    fields_: dict[str, str | None] = {}
    for member, attr in _ALERT_MEMBERS.items():
        item = value.get(member)
        if item is None:
            fields_[attr] = None
        elif member == "Data" and not isinstance(item, str):
            fields_[attr] = _dump(item).decode("utf-8")  # ours: non-text Data is kept as its JSON text
        else:
            fields_[attr] = _text(item, f"{pointer}/{member}")
    alert_type = fields_.pop("alert_type")
    assert alert_type is not None  # noqa: S101 - checked present above; _text refuses empty
    return Alert(alert_type=alert_type, **fields_)


def declared_json(mos: Sequence[DeclaredMo]) -> list[dict[str, Any]]:
    """The MOS list as stored with the device (DM-HLF-008)."""
    return [m.to_json() for m in mos]
