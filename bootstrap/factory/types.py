"""What a factory station sends and gets back: batch specs, items, outcomes, registrations.

Parsing is strict (types, unknown members, sizes) and raises InvalidRequest naming
the member, so the HTTP API, NDJSON streams and the CLI share one reading.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bootstrap.errors import InvalidRequest
from bootstrap.factory.keys import DEFAULT_KDF_ITERATIONS, KEY_FORMATS
from pki.identity import check_dev_id
from pki.keys import KeyType

__all__ = [
    "MAX_ATTRIBUTES",
    "REGISTRATION_METHODS",
    "BatchSpec",
    "BatchSummary",
    "ItemError",
    "ItemOutcome",
    "ItemRequest",
    "RegistrationOutcome",
    "RegistrationSpec",
]

MAX_ATTRIBUTES = 32
_MAX_ATTRIBUTE_LENGTH = 256
_MAX_KEY_LENGTH = 128
_MAX_CSR_CHARS = 16 * 1024
REGISTRATION_METHODS = ("token", "group-key")


def _obj(value: object, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be a JSON object", field=where)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidRequest(f"{where} has unknown members {unknown}; allowed: {sorted(allowed)}", field=where)
    return value


def _str(obj: Mapping[str, Any], key: str, where: str, *, required: bool = False,
         limit: int = _MAX_KEY_LENGTH) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"{where}.{key} is required", field=f"{where}.{key}")
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidRequest(f"{where}.{key} must be a string of 1 to {limit} characters", field=f"{where}.{key}")
    return value


def dev_id_of(value: object, where: str) -> str:
    """A checked DevID (InvalidRequest otherwise)."""
    try:
        return check_dev_id(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{where}.dev_id: {exc}", field=f"{where}.dev_id") from None


def _attributes(value: object, where: str) -> dict[str, str | int | bool]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ATTRIBUTES:
        raise InvalidRequest(f"{where}.attributes must be an object of at most {MAX_ATTRIBUTES} members",
                             field=f"{where}.attributes")
    result: dict[str, str | int | bool] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise InvalidRequest(f"{where}.attributes: names are 1-64 characters", field=f"{where}.attributes")
        if isinstance(item, str) and len(item) <= _MAX_ATTRIBUTE_LENGTH or isinstance(item, int | bool):
            result[key] = item
        else:
            raise InvalidRequest(f"{where}.attributes.{key} must be a string (at most {_MAX_ATTRIBUTE_LENGTH}"
                                 " characters), a number or a boolean", field=f"{where}.attributes")
    return result


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
        where = "batch"
        doc = _obj(obj, where, {"profile", "password", "key_format", "kdf_iterations", "items"})
        if not idempotency_key or len(idempotency_key) > _MAX_KEY_LENGTH or not idempotency_key.isprintable():
            raise InvalidRequest("an Idempotency-Key header of 1-128 printable characters is required: retries"
                                 " of a batch must carry the same key", field="Idempotency-Key")
        key_format = _str(doc, "key_format", where) or "pkcs8"
        if key_format not in KEY_FORMATS:
            raise InvalidRequest(f"batch.key_format must be one of {', '.join(KEY_FORMATS)}", field="key_format")
        iterations = doc.get("kdf_iterations", DEFAULT_KDF_ITERATIONS)
        if not isinstance(iterations, int) or isinstance(iterations, bool) or not 2_048 <= iterations <= 10_000_000:
            raise InvalidRequest("batch.kdf_iterations must be an integer from 2,048 to 10,000,000",
                                 field="kdf_iterations")
        return cls(profile=str(_str(doc, "profile", where, required=True, limit=64)),
                   idempotency_key=idempotency_key, password=_str(doc, "password", where, limit=1024),
                   key_format=key_format, kdf_iterations=iterations)


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
        where = f"items[{index}]"
        doc = _obj(obj, where, {"dev_id", "csr", "keygen", "attributes"})
        dev_id = dev_id_of(doc.get("dev_id"), where)
        csr = _str(doc, "csr", where, limit=_MAX_CSR_CHARS)
        keygen = doc.get("keygen")
        if (csr is None) == (keygen is None):
            raise InvalidRequest(f"{where} needs exactly one of csr (PEM) and keygen ({{\"key_type\": \"p256\"}})",
                                 field=f"{where}.csr")
        key_type = None
        if keygen is not None:
            spec = _obj(keygen, f"{where}.keygen", {"key_type"})
            key_type = KeyType.parse(str(spec.get("key_type", "p256")))
        return cls(dev_id=dev_id, csr=csr, keygen=key_type, attributes=_attributes(doc.get("attributes"), where))

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
        doc = _obj(obj, "registration", {"profile", "method", "token_ttl_days", "devices"})
        method = _str(doc, "method", "registration") or "token"
        if method not in REGISTRATION_METHODS:
            raise InvalidRequest(f"registration.method must be one of {', '.join(REGISTRATION_METHODS)}",
                                 field="method")
        ttl = doc.get("token_ttl_days", 30)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 366:
            raise InvalidRequest("registration.token_ttl_days must be an integer from 1 to 366",
                                 field="token_ttl_days")
        return cls(profile=str(_str(doc, "profile", "registration", required=True, limit=64)), method=method,
                   token_ttl_days=ttl)


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
