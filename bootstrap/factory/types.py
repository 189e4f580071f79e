"""What a factory station sends and gets back: batch specs, items, outcomes, registrations.

Bodies are pydantic models (:class:`BatchBody`, :class:`ItemBody`, :class:`RegistrationBody`),
the one definition the HTTP API, NDJSON streams, the CLI and the OpenAPI document share:
strict (types, unknown members, sizes), raising InvalidRequest naming the member
(``items.3.dev_id``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictStr, model_validator

from bootstrap.body import INTEGER, NO_NUL, Body, JsonInt, validate
from bootstrap.errors import InvalidRequest
from bootstrap.factory.keys import DEFAULT_KDF_ITERATIONS
from pki.identity import check_dev_id
from pki.keys import KeyType

__all__ = [
    "MAX_ATTRIBUTES",
    "MAX_REGISTRATIONS",
    "REGISTRATION_METHODS",
    "BatchBody",
    "BatchHeaderBody",
    "BatchSpec",
    "BatchSummary",
    "ItemError",
    "ItemOutcome",
    "ItemBody",
    "ItemRequest",
    "KeygenBody",
    "RegistrationBody",
    "RegistrationDevice",
    "RegistrationOutcome",
    "RegistrationSpec",
]

MAX_ATTRIBUTES = 32
_MAX_ATTRIBUTE_LENGTH = 256
_MAX_KEY_LENGTH = 128
_MAX_CSR_CHARS = 16 * 1024
REGISTRATION_METHODS = ("token", "group-key")
MAX_REGISTRATIONS = 10_000


def dev_id_of(value: object, where: str) -> str:
    """A checked DevID (InvalidRequest otherwise)."""
    try:
        return check_dev_id(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{where}.dev_id: {exc}", field=f"{where}.dev_id") from None


Name = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=NO_NUL)]
DevId = Annotated[StrictStr, Field(pattern=r"^[!-~]{1,128}$")]
Attribute = Annotated[StrictStr, Field(max_length=_MAX_ATTRIBUTE_LENGTH, pattern=NO_NUL)] | StrictBool | JsonInt


class BatchHeaderBody(Body):
    """A batch's settings: the JSON body's top level without ``items``, or the first NDJSON line."""

    profile: Name
    password: Annotated[StrictStr, Field(min_length=1, max_length=1024, pattern=NO_NUL)] | None = None
    key_format: Literal["pkcs8", "pkcs12"] | None = None
    kdf_iterations: Annotated[int, Field(ge=2_048, le=10_000_000), INTEGER] = DEFAULT_KDF_ITERATIONS


class KeygenBody(Body):
    """A key the service generates for the device."""

    key_type: Literal["p256", "p384", "ed25519", "rsa2048", "rsa3072", "rsa4096"] = "p256"


class ItemBody(Body):
    """One device of a batch: exactly one of ``csr`` (PEM) and ``keygen``; manufacturer attributes."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["csr"], "properties": {"csr": {"type": "string"}}},
        {"required": ["keygen"], "properties": {"keygen": {"type": "object"}}}]})

    dev_id: DevId
    csr: Annotated[StrictStr, Field(min_length=1, max_length=_MAX_CSR_CHARS, pattern=NO_NUL)] | None = None
    keygen: KeygenBody | None = None
    attributes: Annotated[dict[Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)], Attribute],
                          Field(max_length=MAX_ATTRIBUTES, json_schema_extra={"additionalProperties": False})] = {}

    @model_validator(mode="after")
    def _one_source(self) -> ItemBody:
        if (self.csr is None) == (self.keygen is None):
            raise ValueError("needs exactly one of csr (PEM) and keygen ({\"key_type\": \"p256\"})")
        return self


class BatchBody(BatchHeaderBody):
    """A batch as one JSON document (``application/json``)."""

    items: Annotated[list[ItemBody], Field(min_length=1)]


class RegistrationDevice(Body):
    """A device to pre-register, as an object."""

    dev_id: DevId


class RegistrationBody(Body):
    """Pre-registration: the profile, how devices will prove themselves, token lifetime, the DevIDs."""

    profile: Name
    method: Literal["token", "group-key"] = "token"
    token_ttl_days: Annotated[int, Field(ge=1, le=366), INTEGER] = 30
    devices: Annotated[list[DevId | RegistrationDevice], Field(min_length=1, max_length=MAX_REGISTRATIONS)]

    @property
    def dev_ids(self) -> list[str]:
        """The DevIDs, however each was given."""
        return [d if isinstance(d, str) else d.dev_id for d in self.devices]


@dataclass(frozen=True)
class BatchSpec:
    """A batch's settings: the enrollment profile, the station's key, and how keys travel back."""

    profile: str
    idempotency_key: str
    #: The batch password server-generated keys are encrypted with; never stored.
    password: str | None = field(default=None, repr=False)
    key_format: str = "pkcs8"
    kdf_iterations: int = DEFAULT_KDF_ITERATIONS

    @classmethod
    def from_json(cls, obj: object, idempotency_key: str | None) -> BatchSpec:
        """Read the batch header (the JSON body's top level, or the first NDJSON line)."""
        if isinstance(obj, dict) and "items" in obj:
            obj = {k: v for k, v in obj.items() if k != "items"}  # read by BatchBody / item by item
        return cls.of(validate(BatchHeaderBody, obj), idempotency_key)

    @classmethod
    def of(cls, header: BatchHeaderBody, idempotency_key: str | None) -> BatchSpec:
        """The spec of a validated header and the request's Idempotency-Key."""
        if not idempotency_key or len(idempotency_key) > _MAX_KEY_LENGTH or not idempotency_key.isprintable():
            raise InvalidRequest("an Idempotency-Key header of 1-128 printable characters is required: retries"
                                 " of a batch must carry the same key", field="Idempotency-Key")
        return cls(profile=header.profile, idempotency_key=idempotency_key, password=header.password,
                   key_format=header.key_format or "pkcs8", kdf_iterations=header.kdf_iterations)


@dataclass(frozen=True)
class ItemRequest:
    """One device of a batch: a CSR, or a key to generate; manufacturer attributes."""

    dev_id: str
    csr: str | None = field(default=None, repr=False)
    keygen: KeyType | None = None
    attributes: dict[str, str | int | bool] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: object, index: int) -> ItemRequest:
        """Read ``{"dev_id": .., "csr": PEM | "keygen": {"key_type": "p256"}, "attributes": {..}}``."""
        return cls.of(validate(ItemBody, obj, where=f"items.{index}"))

    @classmethod
    def of(cls, item: ItemBody) -> ItemRequest:
        """The request of a validated item."""
        return cls(dev_id=item.dev_id, csr=item.csr, keygen=KeyType(item.keygen.key_type) if item.keygen else None,
                   attributes=dict(item.attributes))

    @property
    def mode(self) -> str:
        return "keygen" if self.keygen is not None else "csr"


@dataclass(frozen=True)
class ItemError:
    """Why one device failed: a stable slug (``urn:dmboot:problem:<type>``) and a sentence."""

    type: str
    detail: str


@dataclass(frozen=True)
class ItemOutcome:
    """What one device got: ``issued`` (now), ``existing`` (the same result as before), or ``failed``."""

    dev_id: str
    status: str
    serial: str | None = None
    issuer: str | None = None
    certificate_pem: str | None = None
    #: The server-generated key, encrypted for the station (PEM PKCS#8 or PKCS#12 DER).
    key: bytes | None = field(default=None, repr=False)
    key_format: str | None = None
    #: Why a server-generated key is absent or repeated ("redelivered", "not-kept"...).
    key_note: str | None = None
    error: ItemError | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"dev_id": self.dev_id, "status": self.status}
        if self.serial is not None:
            doc.update(serial=self.serial, issuer=self.issuer, certificate=self.certificate_pem)
        if self.key is not None:
            text = self.key.decode() if self.key_format == "pkcs8" else base64.b64encode(self.key).decode()
            doc["key"] = {"format": self.key_format, "data": text}
        if self.key_note is not None:
            doc["key_note"] = self.key_note
        if self.error is not None:
            doc["error"] = {"type": f"urn:dmboot:problem:{self.error.type}", "detail": self.error.detail}
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ItemOutcome:
        """Read an outcome back (the client side)."""
        key = doc.get("key")
        key_bytes = None
        if key is not None:
            key_bytes = key["data"].encode() if key["format"] == "pkcs8" else base64.b64decode(key["data"])
        error = doc.get("error")
        return cls(dev_id=doc["dev_id"], status=doc["status"], serial=doc.get("serial"), issuer=doc.get("issuer"),
                   certificate_pem=doc.get("certificate"), key=key_bytes,
                   key_format=key["format"] if key is not None else None, key_note=doc.get("key_note"),
                   error=ItemError(str(error["type"]).rsplit(":", 1)[-1], error["detail"]) if error else None)


@dataclass
class BatchSummary:
    """Counts of one request (or a whole run) of a batch."""

    batch_id: int
    idempotency_key: str
    profile: str
    issued: int = 0
    existing: int = 0
    failed: int = 0

    def add(self, outcome: ItemOutcome) -> None:
        if outcome.status == "issued":
            self.issued += 1
        elif outcome.status == "existing":
            self.existing += 1
        else:
            self.failed += 1

    def to_json(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "idempotency_key": self.idempotency_key, "profile": self.profile,
                "issued": self.issued, "existing": self.existing, "failed": self.failed,
                "total": self.issued + self.existing + self.failed}


@dataclass(frozen=True)
class RegistrationSpec:
    """Pre-registration: the profile, how devices will prove themselves, token lifetime."""

    profile: str
    method: str = "token"
    token_ttl_days: int = 30

    @classmethod
    def from_json(cls, obj: object) -> RegistrationSpec:
        """Read the registration settings (``devices`` may be left out: the CLI gives them apart)."""
        document = {"devices": ["-"], **obj} if isinstance(obj, dict) else obj
        return cls.of(validate(RegistrationBody, document))

    @classmethod
    def of(cls, body: RegistrationBody) -> RegistrationSpec:
        """The settings of a validated registration body."""
        return cls(profile=body.profile, method=body.method, token_ttl_days=body.token_ttl_days)


@dataclass(frozen=True)
class RegistrationOutcome:
    """One pre-registered device and the secret to inject: a one-time token or its group-derived key."""

    dev_id: str
    status: str  # registered | existing | failed
    token: str | None = field(default=None, repr=False)
    device_key: str | None = field(default=None, repr=False)
    expires_at: str | None = None
    error: ItemError | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"dev_id": self.dev_id, "status": self.status}
        if self.token is not None:
            doc.update(token=self.token, expires_at=self.expires_at)
        if self.device_key is not None:
            doc["device_key"] = self.device_key
        if self.error is not None:
            doc["error"] = {"type": f"urn:dmboot:problem:{self.error.type}", "detail": self.error.detail}
        return doc
