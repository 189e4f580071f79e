"""Enrollment: a device proves its factory credential and leaves with a certificate and an account.

:meth:`EnrollmentService.enroll` is the one use case behind every transport (DM 2.0
package 1, the JSON enroll API). In ONE transaction it verifies the evidence
(bootstrap.auth.attestation), applies the device and profile rules, checks the
CSR against the profile's key types and the DevID, issues and records the
certificate, records what the device declared (DM-HLF-008) and builds the
:class:`~bootstrap.dm.content.BootstrapContent`. Any failure rolls all of it
back - a one-time token stays unused, nothing is issued - and is written to the
audit trail in a transaction of its own. Nothing is kept in process memory
between calls (DM-SYS-001).

Rules:

- the method must be one of the profile's ``attestation`` methods; a token or
  group key speaks for its own profile, which must be the device's;
- an unknown DevID is refused, except with group-key, which registers it in the
  group's profile; a ``blocked`` device or a disabled profile is refused;
- the CSR key type must be one of the profile's ``key_types``; its subject CN (if
  any) must be the DevID and its URIs at most the device URI - the certificate
  certifies CN=DevID and ``urn:dmboot:devid:<DevID>``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import delete
from sqlmodel import Session, select

from bootstrap.auth.attestation import Evidence
from bootstrap.auth.principals import hash_token
from bootstrap.dm.content import BootstrapContent
from bootstrap.errors import (
    Conflict,
    DmBootstrapError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from bootstrap.secrets.base import SecretStore
from bootstrap.services.audit import append_event
from bootstrap.services.authorities import AuthorityDirectory
from bootstrap.services.content import ProfileContent, profile_content
from bootstrap.services.issuance import IssuanceService
from bootstrap.services.pipeline import DeviceAuthorizer, SignOptions, device_actor, valid_dev_id
from bootstrap.services.pipeline.enrolled import record_enrolled
from bootstrap.services.pipeline.prefetch import Needs
from bootstrap.services.pipeline.refusals import audit_refusal
from bootstrap.store.db import Database
from bootstrap.store.models import (
    AuthorityRow,
    DeviceRow,
    EnrollmentProfileRow,
    UsedNonceRow,
    utcnow,
)
from pki.authority import IssuedCertificate
from pki.identity import check_dev_id

__all__ = ["CHANNELS", "EnrollmentOutcome", "EnrollmentService", "Evidence"]

log = logging.getLogger(__name__)

#: Transports, as the audit trail names them.
CHANNELS = ("json", "dm2", "dm1", "factory")
_MAX_DECLARED_MOS = 128
_MAX_MIIDS = 64
_MAX_FEATURES = 64
_MOID = re.compile(r"^urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[^\s/?#]+\Z", re.IGNORECASE)
_PURGE_ONE_IN = 32  # expired nonces are purged after about one group-key enrollment in 32
_CONTENT = "dmboot.enrollment.content"  # session.info: profile content read in this transaction


@dataclass(frozen=True)
class EnrollmentOutcome:
    """What an accepted enrollment produced."""

    device: DeviceRow
    profile: EnrollmentProfileRow
    issued: IssuedCertificate
    content: BootstrapContent


#: A transport's rendering step, run inside the enrollment transaction (see enroll()).
Finisher = Callable[[Session, "EnrollmentOutcome"], None]


class EnrollmentService:
    """Verifies device evidence, issues the operational certificate, builds the bootstrap content."""

    def __init__(self, database: Database, store: SecretStore, authorities: AuthorityDirectory,
                 issuance: IssuanceService) -> None:
        self._db = database
        self._authorities = authorities
        self._pipeline = issuance.pipeline
        self._authorizer = DeviceAuthorizer(store)

    def enroll(self, dev_id: str, evidence: Evidence, csr: bytes, *, declared_mos: list[dict[str, Any]] | None = None,
               features: dict[str, Any] | None = None, channel: str = "json",
               request_id: str | None = None, finish: Finisher | None = None) -> EnrollmentOutcome:
        """Enroll ``dev_id``: verify ``evidence``, issue for ``csr``, return the bootstrap content.

        ``declared_mos`` (package 1's MOS entries: ``{"MOID", "DDF"?, "MIID"?}``) and
        ``features`` are recorded on the device when given; with ``declared_mos``,
        only extra MOs the device declared are in the content (DM-HLF-001).

        ``finish(session, outcome)``, when given, runs inside the enrollment's
        transaction after the content is built: a transport renders its response
        there (package 2, HGET data), so if rendering fails the certificate is not
        recorded and the token not spent - nothing is left half-issued.

        Raises:
            InvalidRequest: a bad DevID, method, MOS list or features.
            AuthenticationFailed: the evidence proves nothing (unknown DevID, used token, bad HMAC...).
            PermissionDenied: blocked device, method not allowed, evidence for another profile or DevID.
            PkiError: the CSR is refused (key type, identity, signature).
        """
        try:
            return self._enroll(dev_id, evidence, csr, declared_mos, features, channel, request_id, finish)
        except Exception as exc:
            self.record_refusal(dev_id, evidence.method, exc, channel=channel, request_id=request_id)
            raise

    def _enroll(self, dev_id: str, evidence: Evidence, csr: bytes, declared_mos: list[dict[str, Any]] | None,
                features: dict[str, Any] | None, channel: str, request_id: str | None,
                finish: Finisher | None) -> EnrollmentOutcome:
        valid_dev_id(dev_id)
        self._authorizer.verifier(evidence.method)
        mos = _declared_mos(declared_mos) if declared_mos is not None else None
        feats = _features(features) if features is not None else None

        def authorize(session: Session, now: datetime) -> SignOptions:
            return self._authorizer.grant(session, dev_id, evidence, now).options()

        def after(session: Session, options: SignOptions, issued: IssuedCertificate | None) -> EnrollmentOutcome:
            device, profile = options.device, options.enrollment_profile
            if device is None or profile is None or issued is None:  # pragma: no cover - a device grant has them
                raise InvalidRequest("not a device enrollment")
            record_enrolled(session, device, issued.serial_hex, mos=mos, features=feats)
            content = self._content(session, device, profile, issued, mos)
            append_event(session, actor=options.actor, action="device.enroll", outcome="success", target=dev_id,
                         request_id=request_id,
                         detail={"channel": channel, "profile": profile.name, "serial": issued.serial_hex,
                                 **options.detail})
            session.flush()
            outcome = EnrollmentOutcome(device, profile, issued, content)
            if finish is not None:
                finish(session, outcome)
            return outcome

        needs = Needs(dev_id, hash_token(evidence.token) if evidence.method == "token" and evidence.token else None)
        done = self._pipeline.issue(authorize, csr, request_id=request_id, after=after, needs=needs)
        if evidence.method == "group-key" and secrets.randbelow(_PURGE_ONE_IN) == 0:
            self.purge_expired_nonces()
        return done.result

    def _content(self, session: Session, device: DeviceRow, profile: EnrollmentProfileRow,
                 issued: IssuedCertificate, mos: list[dict[str, Any]] | None) -> BootstrapContent:
        issuing, _authority = self._authorities.active(session)
        # Remembered for the transaction: the requests of one group commit share their
        # profile's servers and repositories (read once per batch, not per request).
        cache: dict[tuple[int | None, int | None, int], ProfileContent] = session.info.setdefault(_CONTENT, {})
        key = (profile.id, device.chosen_dm_server_id, issuing.id)
        parts = cache.get(key)
        if parts is None:
            parts = cache[key] = profile_content(session, profile, root=self._authorities.root(session),
                                                 issuing=issuing, chosen_server_id=device.chosen_dm_server_id)
        chain = tuple(c.public_bytes(Encoding.DER) for c in (issued.certificate, *issued.chain))
        declared = {m["MOID"] for m in mos} if mos is not None else None
        return parts.for_device(device.dev_id, chain, declared=declared, chosen_packages=device.pending_packages)

    def record_refusal(self, dev_id: object, method: str, exc: Exception, *, channel: str = "json",
                       request_id: str | None = None) -> None:
        """Audit a refused enrollment attempt in a transaction of its own.

        :meth:`enroll` calls it for every failure; transports call it for requests
        refused before they reach :meth:`enroll` (wrong media type, malformed body).
        """
        name = _audit_name(dev_id)
        audit_refusal(self._db, exc, actor=device_actor(name), action="device.enroll", target=name,
                      request_id=request_id, detail={"method": str(method)[:32], "channel": channel})

    # -- after enrollment -----------------------------------------------------------------

    def complete(self, dev_id: str, serial_hex: str, *, request_id: str | None = None) -> DeviceRow:
        """BootstrapComplete: the device applied the content of certificate ``serial_hex``.

        Raises:
            NotFound: unknown device; PermissionDenied: blocked;
            Conflict: ``serial_hex`` is not the device's current certificate.
        """
        serial = serial_hex.lower().removeprefix("0x").replace(":", "").lstrip("0")
        try:
            with self._db.session() as session:
                device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == dev_id)).first()
                if device is None:
                    raise NotFound(f"no device {dev_id!r}", field="dev_id")
                if device.status == "blocked":
                    raise PermissionDenied(f"device {dev_id!r} is blocked", field="dev_id")
                if device.current_serial != serial:
                    raise Conflict(f"certificate {serial} is not device {dev_id!r}'s current certificate",
                                   field="serial")
                if device.status != "bootstrapped":
                    device.status = "bootstrapped"
                    device.bootstrapped_at = device.updated_at = utcnow()
                    device.pending_packages = []  # delivered: the choice was for this bootstrap (B.2)
                    session.add(device)
                    append_event(session, actor=device_actor(dev_id), action="device.bootstrap-complete",
                                 outcome="success", target=dev_id, request_id=request_id, detail={"serial": serial})
                return device
        except DmBootstrapError as exc:
            with self._db.session() as session:
                name = _audit_name(dev_id)
                append_event(session, actor=device_actor(name), action="device.bootstrap-complete", outcome="failure",
                             target=name, request_id=request_id,
                             detail={"serial": serial[:64], "error": type(exc).__name__, "reason": exc.message})
            raise

    def device_info(self, dev_id: str) -> DeviceRow:
        """The device as recorded (status, declared MOs and features, current serial).

        Raises:
            NotFound: unknown device.
        """
        with self._db.session() as session:
            device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == dev_id)).first()
        if device is None:
            raise NotFound(f"no device {dev_id!r}", field="dev_id")
        return device

    def certificate_method(self, certificate: x509.Certificate) -> str:
        """``current-cert`` for a certificate one of our issuing CAs names as issuer, else ``idevid``.

        Transports call this to name the method of a TLS client certificate.
        """
        with self._db.session() as session:
            ours = [x509.load_pem_x509_certificate(r.pem.encode()).subject
                    for r in session.exec(select(AuthorityRow).where(AuthorityRow.kind == "issuing"))]
        return "current-cert" if certificate.issuer in ours else "idevid"

    def purge_expired_nonces(self) -> int:
        """Delete used nonces whose timestamps can no longer be accepted; return how many."""
        try:
            with self._db.session() as session:
                table = UsedNonceRow.__table__  # type: ignore[attr-defined]
                return int(session.exec(delete(table).where(table.c.expires_at < utcnow())).rowcount)
        except Exception:  # housekeeping only: another replica may be purging the same rows
            log.debug("nonce purge skipped", exc_info=True)
            return 0


def _audit_name(dev_id: object) -> str:
    if isinstance(dev_id, str):
        try:
            return check_dev_id(dev_id)
        except ValueError:
            pass
    return repr(dev_id)[:100]


def _declared_mos(mos: Sequence[Any]) -> list[dict[str, Any]]:
    if not isinstance(mos, list) or len(mos) > _MAX_DECLARED_MOS:
        raise InvalidRequest(f"mos must be a list of at most {_MAX_DECLARED_MOS} entries", field="mos")
    cleaned: list[dict[str, Any]] = []
    for index, entry in enumerate(mos):
        if not isinstance(entry, dict) or not isinstance(entry.get("MOID"), str) or not _MOID.match(entry["MOID"]):
            raise InvalidRequest(f"mos/{index} needs a MOID (urn:...)", field=f"mos/{index}/MOID")
        miids = entry.get("MIID", [])
        if not isinstance(miids, list) or len(miids) > _MAX_MIIDS or not all(isinstance(m, str) for m in miids):
            raise InvalidRequest(f"mos/{index}/MIID must be a list of at most {_MAX_MIIDS} strings",
                                 field=f"mos/{index}/MIID")
        ddf = entry.get("DDF")
        if ddf is not None and (not isinstance(ddf, str) or len(ddf) > 1024):
            raise InvalidRequest(f"mos/{index}/DDF must be a URL", field=f"mos/{index}/DDF")
        unknown = sorted(set(entry) - {"MOID", "MIID", "DDF"})
        if unknown:
            raise InvalidRequest(f"mos/{index} has unknown members {', '.join(unknown)}", field=f"mos/{index}")
        cleaned.append({**({"DDF": ddf} if ddf is not None else {}), "MOID": entry["MOID"], "MIID": list(miids)})
    return cleaned


def _features(features: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(features, dict) or len(features) > _MAX_FEATURES:
        raise InvalidRequest(f"features must be an object of at most {_MAX_FEATURES} members", field="features")
    for name, value in features.items():
        values = value if isinstance(value, list) else [value]
        if len(name) > 64 or len(values) > _MAX_FEATURES or not all(
                isinstance(v, str | int | float | bool) and (not isinstance(v, str) or len(v) <= 256) for v in values):
            raise InvalidRequest(f"features/{name[:64]} must be a scalar or a list of scalars", field="features")
    return dict(features)

