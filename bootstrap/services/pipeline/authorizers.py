"""Authorizers: each way of proving identity turns evidence into sign options.

==========================  ============================================================
authorizer                  evidence
==========================  ============================================================
:class:`DeviceAuthorizer`   a device's one-time token, group HMAC, IDevID over mTLS or
                            current certificate (the verifiers of
                            :mod:`bootstrap.auth.attestation`), for DM 2.0, the JSON
                            enroll API, EST (Basic with a token, mTLS) and DM 1.x; and
                            TPM 2.0 attestation (:class:`bootstrap.auth.tpm.TpmVerifier`:
                            its certificates carry the TPM-resident-key policy)
``admin_options``           an admin (CLI ``cert issue``, the admin API): the CSR's own
                            names, checked against the certificate profile
EST ``simplereenroll``      the current certificate (bootstrap.services.est)
factory station             an API token or station certificate holding
                            ``factory:provision`` (bootstrap.factory.batches,
                            the pipeline's bulk entry)
==========================  ============================================================

The device rules live here once: the DevID must be well formed; an unknown DevID
is refused except with group-key, which registers it in the group's profile; a
blocked device is refused; the evidence must be for the device's enrollment
profile, which must be enabled and allow the method (``applicable_profile``); a
superseded certificate no longer attests. The certificate certifies CN=DevID and
the device URI, with the profile's key types and validity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bootstrap.auth.attestation import (
    METHODS,
    TOKEN_CLAIM,
    Attestation,
    Evidence,
    Verifier,
    applicable_profile,
    verifiers,
)
from bootstrap.auth.tpm import TpmVerifier
from bootstrap.errors import AuthenticationFailed, Conflict, InvalidRequest, PermissionDenied
from bootstrap.secrets.base import SecretStore
from bootstrap.services.audit import append_event
from bootstrap.services.pipeline.deferred import defer_update, pending_updates
from bootstrap.services.pipeline.options import SignOptions
from bootstrap.services.pipeline.prefetch import take_device
from bootstrap.services.pipeline.supersede import grace_of, mark_first_use
from bootstrap.store.models import CertificateRow, DeviceRow, EnrollmentProfileRow
from pki.identity import check_dev_id, device_uri
from pki.keys import KeyPolicy
from pki.profiles import Names, get_profile
from pki.tpm import TPM_RESIDENT_KEY_POLICY

__all__ = ["DeviceAuthorizer", "DeviceGrant", "admin_options", "check_certificate_current", "device_actor",
           "valid_dev_id"]


def device_actor(dev_id: str) -> str:
    """How the audit trail names a device."""
    return f"device:{dev_id}"[:128]


def valid_dev_id(dev_id: object) -> str:
    """``dev_id``, if it is a well-formed DevID.

    Raises:
        InvalidRequest: naming ``dev_id``.
    """
    try:
        return check_dev_id(dev_id)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(str(exc), field="dev_id") from None


@dataclass(frozen=True)
class DeviceGrant:
    """Who the evidence proved, and the enrollment profile that governs it."""

    dev_id: str
    device: DeviceRow
    profile: EnrollmentProfileRow
    attestation: Attestation

    def options(self, *, actor: str | None = None, certificate_profile: str | None = None,
                detail: dict[str, object] | None = None) -> SignOptions:
        """The sign options of a device certificate under the grant's profile."""
        profile = self.profile
        cert_profile = get_profile(certificate_profile or profile.certificate_profile)
        names = Names(common_name=self.dev_id, uris=(device_uri(self.dev_id),)) \
            if "uri" in cert_profile.san_kinds else None
        consumed = tuple(f"{k}:{v}" for k, v in self.attestation.detail.items() if k in ("token_id", "nonce_digest"))
        return SignOptions(
            actor=actor or device_actor(self.dev_id), certificate_profile=cert_profile.name, names=names,
            validity=timedelta(days=profile.validity_days), key_policy=KeyPolicy.of(profile.key_types),
            dev_id=self.dev_id, device=self.device, enrollment_profile=profile, consumes=consumed,
            detail={"method": self.attestation.method, **(detail or {}), **self.attestation.detail},
            supersede_grace=grace_of(profile),
            policies=(TPM_RESIDENT_KEY_POLICY,) if self.attestation.method == "tpm" else ())


class DeviceAuthorizer:
    """A device's evidence, checked by the verifier of its method and the device rules."""

    def __init__(self, store: SecretStore) -> None:
        self._verifiers: dict[str, Verifier] = verifiers(store)
        self._verifiers["tpm"] = TpmVerifier(store)

    def verifier(self, method: str) -> Verifier:
        """The verifier of ``method``.

        Raises:
            InvalidRequest: not an attestation method.
        """
        verifier = self._verifiers.get(method)
        if verifier is None:
            raise InvalidRequest(f"attestation method must be one of {', '.join(METHODS)}", field="method")
        return verifier

    def grant(self, session: Session, dev_id: str, evidence: Evidence, now: datetime, *,
              register: bool = True) -> DeviceGrant:
        """Verify ``evidence`` for ``dev_id`` inside the request's savepoint (a token is claimed here).

        ``register``: an unknown DevID with group-key evidence is registered in the group's profile.

        Raises:
            InvalidRequest: a bad DevID or method.
            AuthenticationFailed: the evidence proves nothing, or the DevID is unknown.
            PermissionDenied: a blocked device; evidence for another profile; a method the profile refuses.
        """
        valid_dev_id(dev_id)
        verifier = self.verifier(evidence.method)
        read, device = take_device(session, dev_id)
        if not read:
            device = session.exec(_DEVICE, params={"dev_id": dev_id}).first()
        if device is None and not (register and evidence.method == "group-key"):
            raise AuthenticationFailed(f"DevID {dev_id!r} is not registered", field="dev_id")
        if device is not None and device.status == "blocked":
            raise PermissionDenied(f"device {dev_id!r} is blocked (revoked); an admin must re-admit it",
                                   field="dev_id")
        attestation = verifier.verify(session, dev_id, device, evidence, now)
        _defer_writes(session, attestation)
        if attestation.method == "current-cert" and "serial" in attestation.detail:
            check_certificate_current(session, str(attestation.detail["serial"]), now)
        profile = applicable_profile(session, device, attestation)
        if device is None:
            device = _register(session, dev_id, profile)
        return DeviceGrant(dev_id, device, profile, attestation)


_DEVICE = select(DeviceRow).where(DeviceRow.dev_id == bindparam("dev_id")).with_for_update()


def _defer_writes(session: Session, attestation: Attestation) -> None:
    """Queue the evidence's writes (a token's claim) for the commit; refuse a token this batch claimed.

    The claim runs when the transaction commits, with the batch's other claims in one
    statement; a request that fails drops it with the rest of what it queued. Two requests of one
    group commit presenting the same token both pass the locking read (the lock is
    their shared transaction's): the second is refused here, as it would be after the
    first's commit.
    """
    for statement, params in attestation.writes:
        if statement is TOKEN_CLAIM and any(p["token_id"] == params["token_id"]
                                            for p in pending_updates(session, TOKEN_CLAIM)):
            raise AuthenticationFailed(f"enrollment token {params['token_id']} was used already", field="token")
        defer_update(session, statement, params)


def check_certificate_current(session: Session, serial_hex: str, now: datetime) -> None:
    """A certificate attests only while no re-enrollment superseded it; its first use is recorded.

    Raises:
        AuthenticationFailed: the certificate was superseded.
    """
    successor = session.exec(select(CertificateRow.superseded_by).where(CertificateRow.serial_hex == serial_hex)
                             ).first()
    if successor:
        raise AuthenticationFailed(f"certificate {serial_hex} was superseded by {successor}; use the newer one",
                                   field="client_certificate")
    mark_first_use(session, serial_hex, now)


def admin_options(actor: str, certificate_profile: str, *, names: Names | None = None,
                  validity: timedelta | None = None) -> SignOptions:
    """An admin's request (CLI, admin API): the CSR's names, checked against the profile, or ``names``."""
    return SignOptions(actor=actor, certificate_profile=certificate_profile, names=names, validity=validity)


def _register(session: Session, dev_id: str, profile: EnrollmentProfileRow) -> DeviceRow:
    device = DeviceRow(dev_id=dev_id, profile_id=profile.id or 0)
    try:
        with session.begin_nested():
            session.add(device)
    except IntegrityError:
        raise Conflict(f"device {dev_id!r} is being enrolled by another request; retry", field="dev_id") from None
    append_event(session, actor=device_actor(dev_id), action="device.register", outcome="success", target=dev_id,
                 detail={"profile": profile.name, "by": "group-key"})
    return device
