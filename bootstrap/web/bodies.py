"""Request bodies of the admin, access, lifecycle and enroll API, each defined once as a pydantic model.

The handler validates its body with the model (bootstrap.web.common.read_model) and
the OpenAPI document takes the operation's requestBody schema from the same model
(``model_json_schema``), so the two cannot drift. Models check the shape (types,
required members, unknown members, lengths, enumerations, ranges); what needs the
database or a decoder (does the profile exist, does the CSR decode, is the URL's
host allowed) stays in the services. Enrollment profiles and factory bodies are
defined beside their services (bootstrap.services.profile_spec,
bootstrap.factory.types), which the CLI shares.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictStr

from bootstrap.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from bootstrap.body import FINGERPRINT, INTEGER, MOID, NAME, NO_NUL, PRINTABLE, URL, Body, JsonInt

__all__ = ["QUOTA_MAX", "TOKEN_TTL_SECONDS_MAX", "TTL_DAYS_MAX", "AdminBody", "AdminUpdateBody", "ApiTokenBody",
           "BootstrapCompleteBody", "CsrBody", "DeclaredMoBody", "DeclaredMos", "DeviceBody", "DeviceKeysBody",
           "DeviceUpdateBody", "Dm1Body", "EmptyBody", "EnrollBody", "EnrollmentTokenBody", "Features", "MakerBody",
           "MakerUpdateBody", "RepositoryBody", "RevokeBody", "ServerBody"]

#: API tokens live at most 100 years; a factory line's quota fits a 32-bit column.
TTL_DAYS_MAX = 36_500
QUOTA_MAX = 2**31 - 1
#: A one-time enrollment token lives at most 366 days (bootstrap.services.devices).
TOKEN_TTL_SECONDS_MAX = 366 * 24 * 3600


Name = Annotated[StrictStr, Field(pattern=NAME)]
DevId = Annotated[StrictStr, Field(pattern=PRINTABLE)]
Url = Annotated[StrictStr, Field(pattern=URL, max_length=1024)]
# PEM texts: whether one decodes, the service says (400 bad-csr, invalid-request naming the member).
CertPem = Annotated[StrictStr, Field(min_length=1, max_length=64 * 1024, json_schema_extra={"format": "x509-pem"})]
CsrPem = Annotated[StrictStr, Field(min_length=1, max_length=16 * 1024, json_schema_extra={"format": "pkcs10-pem"})]
Role = Literal["security-admin", "provisioning-admin", "factory-line", "auditor"]
#: RFC 5280 5.3.1 reasons an operator may give (pki.revocation: no certificateHold, no removeFromCRL).
Reason = Literal["unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
                 "cessationOfOperation", "privilegeWithdrawn", "aACompromise"]


class EmptyBody(Body):
    """No members: send ``{}`` or nothing."""


class ServerBody(Body):
    """A DM server to register (DMAcc SrvID and SrvURI; the anchor defaults to our root CA)."""

    server_id: Annotated[StrictStr, Field(pattern=PRINTABLE, description="DMAcc SrvID")]
    name: Annotated[StrictStr, Field(max_length=256, pattern=r"^([^\x00]*[^\s\x00][^\x00]*)?$")] = ""
    url: Url
    trust_anchor_pem: CertPem | None = None


class RepositoryBody(Body):
    """A data repository to register (the HGET source of MO data)."""

    name: Name
    url: Url
    trust_anchor_pem: CertPem | None = None


class CsrBody(Body):
    """A PKCS#10 request in PEM."""

    csr: CsrPem


class DeviceKeysBody(Body):
    """The DevIDs whose group-derived keys to export."""

    dev_ids: Annotated[list[DevId], Field(min_length=1, max_length=10_000)]


class DeviceBody(Body):
    """A device to register."""

    dev_id: DevId
    profile: Name
    idevid_fingerprint: Annotated[StrictStr, Field(pattern=FINGERPRINT)] | None = None
    dm_server: Annotated[StrictStr, Field(pattern=PRINTABLE)] | None = None


class DeviceUpdateBody(Body):
    """What to change of a device: block or re-admit it, choose its DM server, set its IDevID."""

    status: Literal["blocked", "registered"] | None = None
    dm_server: Annotated[StrictStr, Field(pattern=PRINTABLE)] | None = None
    idevid_fingerprint: Annotated[StrictStr, Field(pattern=FINGERPRINT)] | None = None


class EnrollmentTokenBody(Body):
    """A one-time enrollment token: for a profile, a device, or both (default lifetime 7 days)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["profile"], "properties": {"profile": {"type": "string"}}},
        {"required": ["dev_id"], "properties": {"dev_id": {"type": "string"}}}]})

    profile: Name | None = None
    dev_id: DevId | None = None
    ttl_seconds: Annotated[int, Field(ge=1, le=TOKEN_TTL_SECONDS_MAX), INTEGER] | None = None


class MakerBody(Body):
    """A manufacturer CA certificate to trust for IDevID attestation."""

    name: Name
    pem: CertPem


class MakerUpdateBody(Body):
    """Enable or disable a manufacturer CA."""

    enabled: StrictBool


class RevokeBody(Body):
    """Why a certificate is revoked (RFC 5280 5.3.1 name)."""

    reason: Reason = "unspecified"


class BootstrapCompleteBody(Body):
    """The certificate the device used in its first session (hex serial); default its current one."""

    serial: Annotated[StrictStr, Field(pattern=r"^[0-9A-Fa-f:]{1,64}$")] | None = None


Roles = Annotated[list[Role], Field(min_length=1, json_schema_extra={"uniqueItems": True})]


class AdminBody(Body):
    """A human admin to create."""

    username: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    password: Annotated[StrictStr, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH,
                                                         pattern=NO_NUL)]
    roles: Roles


class AdminUpdateBody(Body):
    """An admin's new roles, or disabled/re-enabled; at least one of the two."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["roles"], "properties": {"roles": {"type": "array"}}},
        {"required": ["disabled"], "properties": {"disabled": {"type": "boolean"}}}]})

    roles: Roles | None = None
    disabled: StrictBool | None = None


class ApiTokenBody(Body):
    """An API token to create; a factory-line token names the profiles it provisions."""

    model_config = ConfigDict(json_schema_extra={
        "if": {"required": ["roles"], "properties": {"roles": {"contains": {"const": "factory-line"}}}},
        "then": {"required": ["allowed_profiles"], "properties": {"allowed_profiles": {"minItems": 1}}}})

    name: Annotated[StrictStr, Field(pattern=NAME)]
    roles: Roles
    ttl_days: Annotated[int, Field(ge=1, le=TTL_DAYS_MAX), INTEGER] | None = None
    allowed_profiles: list[Name] = []
    device_quota: Annotated[int, Field(ge=0, le=QUOTA_MAX), INTEGER] | None = None


#: urn:<NID>:<NSS>, the NSS printable ASCII without / ? # (RFC 8141 as MOIDs use it).
Scalar = Annotated[StrictStr, Field(max_length=256, pattern=NO_NUL)] | StrictBool | JsonInt | float


class DeclaredMoBody(Body):
    """An MO the device supports (DM-HLF-001): its MOID, instance ids, and where its DDF is."""

    MOID: Annotated[StrictStr, Field(pattern=MOID)]
    MIID: Annotated[list[Annotated[StrictStr, Field(max_length=256, pattern=NO_NUL)]], Field(max_length=64)] = []
    DDF: Annotated[StrictStr, Field(max_length=1024, pattern=NO_NUL)] | None = None


FeatureName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


#: The management objects a device declares (``mos``) and its features, in every enroll body.
DeclaredMos = Annotated[list[DeclaredMoBody], Field(max_length=128)]
Features = Annotated[dict[FeatureName, Scalar | Annotated[list[Scalar], Field(max_length=64)]],
                     Field(max_length=64, json_schema_extra={"additionalProperties": False})]


class EnrollBody(Body):
    """One device's enrollment: its DevID, its CSR, the token (or other evidence), what it declares."""

    dev_id: DevId
    csr: CsrPem
    token: Annotated[StrictStr, Field(min_length=1, max_length=512, pattern=NO_NUL)] | None = None
    mos: DeclaredMos | None = None
    features: Features | None = None


class Dm1Body(Body):
    """A DM 1.x device's bootstrap request (``POST /dm1/bootstrap``, docs/dm1x.md)."""

    dev_id: DevId
    csr: CsrPem | None = None
    token: Annotated[StrictStr, Field(min_length=1, max_length=512, pattern=NO_NUL)] | None = None
    imsi: Annotated[StrictStr, Field(pattern=NO_NUL)] | None = None
    sec: Annotated[StrictStr, Field(pattern=NO_NUL)] | None = None
