"""One chunk of a factory batch: the open batch, each device's progress, the rows one
transaction writes, and what each device gets back.

:class:`~bootstrap.factory.batches.BatchService` reads, signs and writes a chunk;
the pieces here hold no database session and call no secret store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bootstrap.factory.keys import KeyEncryptor, check_password
from bootstrap.factory.signer import BatchSigner, SignedItem
from bootstrap.factory.stations import Station
from bootstrap.factory.store import AuditRecord, ExistingDevice, certificate_row, device_row
from bootstrap.factory.types import BatchSpec, BatchSummary, ItemError, ItemOutcome, ItemRequest
from pki.identity import device_uri

__all__ = ["ChunkRows", "OpenBatch", "Pending", "as_existing", "chunk_rows", "device_error", "error_of", "failed",
           "issued"]


@dataclass
class OpenBatch:
    """A batch ready for ``BatchService.submit``: its rows and its signing context."""

    id: int
    spec: BatchSpec
    station: Station
    profile_id: int
    authority_id: int
    issuer: str
    signer: BatchSigner
    #: The profile's bootstrap content without DevID and chain (bootstrap.factory.content).
    template: dict[str, Any]
    kdf_salt: str
    kdf_iterations: int
    summary: BatchSummary
    _encryptor: KeyEncryptor | None = field(default=None, repr=False)

    def encryptor(self) -> KeyEncryptor:
        """The key encryptor (derived once per batch: PBKDF2 is slow by design)."""
        if self._encryptor is None:
            self._encryptor = KeyEncryptor(check_password(self.spec.password), self.kdf_salt, self.kdf_iterations,
                                           self.spec.key_format)
        return self._encryptor


@dataclass
class Pending:
    """A device of a chunk on its way: its request, then its signed certificate and encrypted key."""

    index: int
    item: ItemRequest
    signed: SignedItem | None = None
    key_blob: bytes | None = None


def issued(batch: OpenBatch, pend: Pending) -> ItemOutcome:
    """What a device signed in this request gets back."""
    s = pend.signed
    assert s is not None  # noqa: S101 - only signed items get here
    return ItemOutcome(dev_id=s.dev_id, status="issued", serial=s.serial_hex, issuer=batch.issuer,
                       certificate_pem=s.pem, key=pend.key_blob,
                       key_format=batch.spec.key_format if pend.key_blob is not None else None)


@dataclass
class ChunkRows:
    """What one chunk's transaction inserts: certificates, factory items, devices, audit events."""

    certificates: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    new_devices: list[dict[str, Any]] = field(default_factory=list)
    updated: list[dict[str, Any]] = field(default_factory=list)
    events: list[AuditRecord] = field(default_factory=list)


def chunk_rows(batch: OpenBatch, signed: list[Pending], failed: list[ItemOutcome],
           devices: dict[str, ExistingDevice], key_ref: str | None, expires: datetime | None,
           now: datetime) -> ChunkRows:
    """The rows for the signed devices of a chunk and the audit events of all its devices."""
    station = batch.station
    rows = ChunkRows()
    certificates, items, new_devices, updated, events = (rows.certificates, rows.items, rows.new_devices,
                                                         rows.updated, rows.events)
    cert_profile = batch.signer.profile.name
    for pend in signed:
        s = pend.signed
        assert s is not None  # noqa: S101 - filtered by the caller
        serial, fp, dev_id = s.serial_hex, s.fingerprint, s.dev_id
        subject = s.certificate.subject.rfc4514_string()
        certificates.append(certificate_row(
            serial_hex=serial, subject=subject, authority_id=batch.authority_id, profile=cert_profile,
            dev_id=dev_id, key_type=s.key_type.value, not_before=s.certificate.not_valid_before_utc,
            not_after=s.certificate.not_valid_after_utc, fingerprint=fp, pem=s.pem, actor=station.actor,
            request_id=station.request_id, now=now, uri=device_uri(dev_id)))
        items.append({"batch_id": batch.id, "profile": batch.spec.profile, "dev_id": dev_id,
                      "mode": pend.item.mode, "serial_hex": serial,
                      "key_ref": key_ref if pend.key_blob is not None else None,
                      "key_expires_at": expires if pend.key_blob is not None else None,
                      "attributes": pend.item.attributes, "created_at": now})
        if dev_id in devices:
            updated.append({"b_dev_id": dev_id, "b_serial": serial, "b_at": now})
        else:
            new_devices.append(device_row(dev_id=dev_id, profile_id=batch.profile_id, serial_hex=serial, now=now))
        events.append(AuditRecord(station.actor, "cert.issue", "success", serial, {
            "profile": cert_profile, "subject": subject, "fingerprint": fp, "dev_id": dev_id,
            "channel": "factory", "batch": batch.id, "mode": pend.item.mode}, station.request_id))
    for outcome in failed:
        error = outcome.error
        events.append(AuditRecord(station.actor, "cert.issue", "failure", outcome.dev_id, {
            "channel": "factory", "batch": batch.id, "error": error.type if error else None,
            "reason": error.detail[:500] if error else None}, station.request_id))
    return rows


_SLUGS: dict[str, str] = {
    "CsrEncodingError": "bad-csr", "CsrSignatureError": "bad-csr-signature", "CsrPolicyError": "csr-policy",
    "KeyPolicyError": "key-policy", "ProfileError": "bad-profile", "QuotaExceeded": "quota-exceeded",
    "PermissionDenied": "forbidden", "Conflict": "conflict", "NotFound": "not-found",
    "InvalidRequest": "invalid-request", "SignerUnavailable": "signer-unavailable", "SignerError": "signer-failed",
    "IssuanceError": "cannot-issue",
}


def error_of(exc: Exception) -> tuple[str, str]:
    """(slug, sentence) for an item's failure; slugs are those of the problem types (docs/api.md)."""
    slug = next((_SLUGS[c.__name__] for c in type(exc).__mro__ if c.__name__ in _SLUGS), "failed")
    return slug, str(getattr(exc, "message", None) or exc)


def failed(dev_id: str, slug: str, detail: str) -> ItemOutcome:
    """A device's failed outcome: the problem type's slug and a sentence."""
    return ItemOutcome(dev_id=dev_id, status="failed", error=ItemError(slug, detail))


def as_existing(outcome: ItemOutcome) -> ItemOutcome:
    """A device named twice in one request: the second gets the first's result, as existing."""
    return ItemOutcome(dev_id=outcome.dev_id, status="existing", serial=outcome.serial, issuer=outcome.issuer,
                       certificate_pem=outcome.certificate_pem, key=outcome.key, key_format=outcome.key_format,
                       key_note="repeated in the request" if outcome.key is not None else outcome.key_note)


def device_error(dev_id: str, device: ExistingDevice, profile_id: int) -> ItemOutcome | None:
    """Why a known device without a factory item cannot be issued for here, if it cannot."""
    if device.profile_id != profile_id:
        return failed(dev_id, "conflict", f"device {dev_id!r} is registered in another enrollment profile;"
                       " nothing was issued")
    if device.status == "blocked":
        return failed(dev_id, "forbidden", f"device {dev_id!r} is blocked; nothing was issued")
    if device.status != "registered":
        return failed(dev_id, "conflict", f"device {dev_id!r} is {device.status} already (it has a certificate"
                       " from enrollment); nothing was issued")
    return None
