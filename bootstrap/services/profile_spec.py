"""Enrollment profiles as an admin writes them: the JSON body (one pydantic model) and the spec.

:class:`ProfileBody` is the one definition of a profile's JSON: the API validates
request bodies with it, the CLI reads profile files with it, and the OpenAPI
document takes its schema from it. It checks the shape (types, unknown members,
enumerations, ranges); :class:`~bootstrap.services.config.ConfigService` checks
what needs the database or a DDF (servers exist, MO instances are valid).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictStr

from bootstrap.body import INTEGER, MOID, NAME, NO_NUL, NODE, PRINTABLE, Body, validate
from bootstrap.store.models import EnrollmentProfileRow
from pki.errors import KeyPolicyError
from pki.keys import KeyType

__all__ = ["DELIVERY_MODES", "MAX_VALIDITY_DAYS", "ProfileBody", "ProfileReplaceBody", "ProfileSpec", "ProfileView"]

#: How a profile delivers MO data: HGET from a data repository (DM-HLF-003; the specification's
#: flow, the default) or - ours - inline PUT (DM-HLF-004) with the OMADM-Session header.
DELIVERY_MODES = ("hget", "inline")
MAX_VALIDITY_DAYS = 3650


class NotiBody(Body):
    """DMAcc notification settings (never a secret)."""

    Type: Annotated[StrictStr, Field(pattern=NO_NUL)]
    Data: Annotated[StrictStr, Field(pattern=NO_NUL)] | None = None


class DmaccBody(Body):
    """DMAcc 1.2 settings of a profile; SrvID and SrvURI come from the DM server."""

    Name: Annotated[StrictStr, Field(max_length=256, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")] | None = None
    Perm: Annotated[list[Annotated[StrictStr, Field(pattern=MOID)]], Field(min_length=1)] | None = None
    Noti: NotiBody | None = None
    dm1_auth: Literal["DIGEST", "HMAC"] | None = None
    dm1_sec: Literal["NETWORKID", "USERPIN", "USERPIN_NETWORKID"] | None = None
    dm1_account: Annotated[StrictStr, Field(pattern=NODE)] | None = None


Name = Annotated[StrictStr, Field(pattern=NAME)]
KeyTypeName = Literal["p256", "p384", "ed25519", "rsa2048", "rsa3072", "rsa4096"]
Method = Literal["token", "group-key", "idevid", "current-cert", "tpm"]


class ProfileBody(Body):
    """An enrollment profile (docs/api.md, "profile")."""

    name: Name
    description: Annotated[StrictStr, Field(max_length=1024, pattern=NO_NUL)] = ""
    dm_servers: Annotated[list[Annotated[StrictStr, Field(pattern=PRINTABLE)]], Field(min_length=1)]
    data_repositories: list[Name] = []
    dmacc: DmaccBody = DmaccBody()
    certificate_profile: Literal["device"] = "device"
    key_types: Annotated[list[KeyTypeName], Field(min_length=1)] = ["p256", "p384", "ed25519"]
    attestation: Annotated[list[Method], Field(min_length=1)] = ["token"]
    extra_mos: list[dict[str, Any]] = []
    delivery: Literal["hget", "inline"] = "hget"
    server_keygen: StrictBool = False
    validity_days: Annotated[int, Field(ge=1, le=MAX_VALIDITY_DAYS), INTEGER] = 365
    enabled: StrictBool = True
    supersede: Literal["first-use", "immediate", "keep"] = "first-use"
    supersede_grace_seconds: Annotated[int, Field(ge=0, le=30 * 86400), INTEGER] = 3600

    def to_spec(self) -> ProfileSpec:
        """The spec the configuration service applies."""
        return ProfileSpec(
            name=self.name, dm_servers=tuple(self.dm_servers), data_repositories=tuple(self.data_repositories),
            dmacc=self.dmacc.model_dump(exclude_none=True), certificate_profile=self.certificate_profile,
            key_types=tuple(self.key_types), attestation=tuple(self.attestation), extra_mos=tuple(self.extra_mos),
            delivery=self.delivery, server_keygen=self.server_keygen, validity_days=self.validity_days,
            description=self.description, enabled=self.enabled, supersede=self.supersede,
            supersede_grace_seconds=self.supersede_grace_seconds)


class ProfileReplaceBody(ProfileBody):
    """A profile's new settings (``PUT /profiles/{name}``): the name may be left out; it cannot change."""

    name: Name | None = None  # type: ignore[assignment]


def _key_type(value: object) -> object:
    try:
        return KeyType.parse(value).value if isinstance(value, str) else value
    except KeyPolicyError:
        return value  # the model names it


@dataclass(frozen=True)
class ProfileSpec:
    """An enrollment profile as an admin writes it: servers and repositories by name."""

    name: str
    dm_servers: tuple[str, ...]
    data_repositories: tuple[str, ...] = ()
    #: DMAcc 1.2 settings: {"Name": str, "Perm": [MOID, ...], "Noti": {"Type": str, "Data": str}}.
    dmacc: Mapping[str, Any] = field(default_factory=dict)
    certificate_profile: str = "device"
    key_types: tuple[str, ...] = ("p256", "p384", "ed25519")
    attestation: tuple[str, ...] = ("token",)
    #: DM 2.0 MO instance JSON objects, each validated against its DDF.
    extra_mos: tuple[Mapping[str, Any], ...] = ()
    delivery: str = "hget"
    #: Generate the device key when package 1 carries no CSR (DMAcc Auth/Trsp/Secret).
    server_keygen: bool = False
    validity_days: int = 365
    description: str = ""
    enabled: bool = True
    #: Re-enrollment: "first-use", "immediate" or "keep" (bootstrap.services.pipeline.supersede).
    supersede: str = "first-use"
    supersede_grace_seconds: int = 3600

    @classmethod
    def from_json(cls, obj: object) -> ProfileSpec:
        """Read a spec from decoded JSON with :class:`ProfileBody`.

        Raises:
            InvalidRequest: naming the member.
        """
        return validate(ProfileBody, obj).to_spec()

    def checked(self) -> ProfileBody:
        """This spec checked by :class:`ProfileBody` (key type aliases such as ``P-256`` read first).

        Raises:
            InvalidRequest: naming the member.
        """
        document: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for key in ("dm_servers", "data_repositories", "attestation", "extra_mos"):
            document[key] = [dict(v) if isinstance(v, Mapping) else v for v in document[key]]
        document["key_types"] = [_key_type(k) for k in self.key_types]
        document["dmacc"] = dict(self.dmacc)
        return validate(ProfileBody, document)


@dataclass(frozen=True)
class ProfileView:
    """A profile with its servers and repositories by name, as the API and CLI show it."""

    row: EnrollmentProfileRow
    dm_servers: tuple[str, ...]
    data_repositories: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The profile as the API and ``--json`` show it."""
        row = self.row
        return {"name": row.name, "description": row.description, "dm_servers": list(self.dm_servers),
                "data_repositories": list(self.data_repositories), "dmacc": row.dmacc,
                "certificate_profile": row.certificate_profile, "key_types": row.key_types,
                "attestation": row.attestation, "extra_mos": row.extra_mos, "delivery": row.delivery,
                "server_keygen": row.server_keygen, "validity_days": row.validity_days, "supersede": row.supersede,
                "supersede_grace_seconds": row.supersede_grace_seconds, "group_key": row.group_key_ref is not None,
                "enabled": row.enabled, "created_at": row.created_at.isoformat(),
                "updated_at": row.updated_at.isoformat()}
