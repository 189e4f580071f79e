"""The DM 1.x bootstrap use case: issue through the pipeline, keep per-device credentials, rotate them."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import Session, select

from bootstrap.auth.attestation import Evidence
from bootstrap.dm import cp
from bootstrap.dm.content import DmAccount
from bootstrap.dm.ddf import DdfRegistry, MoValidationError
from bootstrap.dm.dm1_security import (
    SEC_MODES,
    Dm1Credentials,
    SecMode,
    bootstrap_mac,
    content_type_with_mac,
    generate_dm1_credentials,
    imsi_key,
)
from bootstrap.dm.dmacc10 import build_dmacc10
from bootstrap.dm.syncml import XML_MEDIA_TYPE, SyncHeader, bootstrap_commands, tnds_xml, to_wbxml, to_xml
from bootstrap.errors import (
    ConfigurationError,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    SecretConflict,
    SecretNotFound,
)
from bootstrap.secrets.base import SecretRef, SecretStore
from bootstrap.services.audit import append_event
from bootstrap.services.dm1._account import (
    _PIN,
    DMACC_1_0,
    Dm1AccountError,
    Dm1CredentialsView,
    Dm1Message,
    Dm1Options,
    Dm1Package,
    credentials_path,
    dm1_account,
)
from bootstrap.services.enrollment import EnrollmentService
from bootstrap.services.issuance import IssuanceService
from bootstrap.services.pipeline import DeviceAuthorizer, SignOptions, valid_dev_id
from bootstrap.services.pipeline.enrolled import record_enrolled
from bootstrap.services.pipeline.refusals import audit_refusal
from bootstrap.store import profile_links
from bootstrap.store.db import Database
from bootstrap.store.models import DeviceRow, DmServerRow, EnrollmentProfileRow, row_id
from pki.authority import IssuedCertificate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Stored:
    credentials: Dm1Credentials
    pin: str = field(repr=False)
    ref: SecretRef
    event: str | None  # "create" | "rotate" when this call wrote them


# --------------------------------------------------------------------------- the service


class Dm1Service:
    """DM 1.x bootstraps, for devices over HTTP and for factory output, and the credential API."""

    def __init__(self, database: Database, store: SecretStore, issuance: IssuanceService, ddfs: DdfRegistry,
                 enrollment: EnrollmentService) -> None:
        self._db = database
        self._store = store
        self._pipeline = issuance.pipeline
        self._ddfs = ddfs
        self._enrollment = enrollment
        self._authorizer = DeviceAuthorizer(store)

    # -- devices ----------------------------------------------------------------------

    def bootstrap(self, dev_id: str, evidence: Evidence, *, csr: bytes | None = None, imsi: str | None = None,
                  sec: str | None = None, request_id: str | None = None) -> Dm1Package:
        """Attest ``dev_id`` and build its DM 1.x bootstrap; issue a certificate only for a CSR.

        Args:
            dev_id: The device's DevID.
            evidence: As the transport extracted it (token, DMBoot-HMAC, TLS certificate).
            csr: A PKCS#10 request (PEM or DER), or None for a digest/HMAC-only device.
            imsi: The subscriber's IMSI, needed when the SEC mode is NETWORKID or USERPIN_NETWORKID.
            sec: The SEC mode, overriding the profile's ``dm1_sec``.
            request_id: For the audit trail.

        Raises:
            InvalidRequest: a bad DevID, method, SEC mode or IMSI, or an IMSI the mode needs is missing.
            AuthenticationFailed, PermissionDenied: the evidence, device or profile rules refuse it.
            PkiError: the CSR is refused.
            Dm1AccountError: the account does not validate against the DMAcc 1.0 DDF (configuration).
        """
        try:
            return self._bootstrap(dev_id, evidence, csr, imsi, sec, request_id)
        except Exception as exc:
            self._enrollment.record_refusal(dev_id, evidence.method, exc, channel="dm1", request_id=request_id)
            raise

    def _bootstrap(self, dev_id: str, evidence: Evidence, csr: bytes | None, imsi: str | None, sec: str | None,
                   request_id: str | None) -> Dm1Package:
        valid_dev_id(dev_id)
        self._authorizer.verifier(evidence.method)

        def authorize(session: Session, now: datetime) -> SignOptions:
            return self._authorizer.grant(session, dev_id, evidence, now).options()

        def after(session: Session, options: SignOptions, issued: IssuedCertificate | None) -> Dm1Package:
            device, profile = options.device, options.enrollment_profile
            if device is None or profile is None:  # pragma: no cover - a device grant has them
                raise InvalidRequest("not a device bootstrap")
            package = self._package(session, device, profile, issued, imsi=imsi, pin=None, sec=sec,
                                    actor=options.actor, request_id=request_id)
            record_enrolled(session, device, issued.serial_hex if issued is not None else None)
            append_event(session, actor=options.actor, action="device.enroll", outcome="success", target=dev_id,
                         request_id=request_id,
                         detail={"channel": "dm1", "profile": profile.name, "serial": package.serial_hex,
                                 "sec": package.sec, "dm1_credentials": package.credentials_ref, **options.detail})
            return package

        # Without a CSR the evidence is still checked and consumed, and nothing is signed.
        return self._pipeline.issue(authorize, csr or None, request_id=request_id, after=after).result

    # -- factory ----------------------------------------------------------------------

    def package_for(self, dev_id: str, *, imsi: str | None = None, pin: str | None = None, sec: str | None = None,
                    actor: str) -> Dm1Package:
        """The DM 1.x bootstrap of a registered device, for the factory to write (no attestation).

        ``pin`` seeds the device's PIN when its credentials are created; a different
        PIN stored already is a Conflict. The device's status does not change.

        Raises:
            NotFound: the device is not registered. PermissionDenied: it is blocked.
            InvalidRequest, Conflict, Dm1AccountError: as for :meth:`bootstrap`.
        """
        valid_dev_id(dev_id)
        if pin is not None and not _PIN.fullmatch(pin):
            raise InvalidRequest("pin: must be 4 to 16 digits", field="pin")
        with self._db.session() as session:
            device = _device(session, dev_id)
            if device is None:
                raise NotFound(f"device {dev_id!r} is not registered", field="dev_id")
            if device.status == "blocked":
                raise PermissionDenied(f"device {dev_id!r} is blocked", field="dev_id")
            profile = _profile_row(session, device.profile_id)
            package = self._package(session, device, profile, None, imsi=imsi, pin=pin, sec=sec, actor=actor,
                                    request_id=None)
            append_event(session, actor=actor, action="dm1.package.write", outcome="success", target=dev_id,
                         detail={"profile": profile.name, "sec": package.sec,
                                 "dm1_credentials": package.credentials_ref})
        return package

    # -- DM servers ---------------------------------------------------------------------

    def credentials(self, dev_id: str, *, actor: str, request_id: str | None = None) -> Dm1CredentialsView:
        """A device's current DM 1.x credentials, for its DM server; every read is audited.

        Raises:
            NotFound: the device is unknown or has no DM 1.x credentials yet.
        """
        try:
            with self._db.session() as session:
                device = _device(session, dev_id)
                if device is None:
                    raise NotFound(f"no device {dev_id!r}", field="dev_id")
                options = Dm1Options.of(_profile_row(session, device.profile_id).dmacc)
                try:
                    data, ref = self._store.get(credentials_path(dev_id))
                except SecretNotFound:
                    raise NotFound(f"device {dev_id!r} has no DM 1.x credentials yet; they are made at its first"
                                   " DM 1.x bootstrap or by `dmboot dm1 write-packages`", field="dev_id") from None
                creds = _credentials_of(data)
                append_event(session, actor=actor, action="dm1.credentials.read", outcome="success", target=dev_id,
                             request_id=request_id, detail={"ref": ref.to_uri(), "server_id": creds.server_name})
            return Dm1CredentialsView(dev_id, creds.server_name, options.auth, creds, ref)
        except (NotFound, InvalidRequest) as exc:
            self._audit_failure("dm1.credentials.read", dev_id, actor, exc, request_id)
            raise

    def rotate(self, dev_id: str, *, actor: str) -> SecretRef:
        """Replace a device's DM 1.x credentials (same PIN); its next bootstrap carries the new ones.

        Raises:
            NotFound: unknown device, or no credentials to rotate.
            Conflict: another rotation won the race; retry.
        """
        with self._db.session() as session:
            device = _device(session, dev_id)
            if device is None:
                raise NotFound(f"no device {dev_id!r}", field="dev_id")
            path = credentials_path(dev_id)
            try:
                data, ref = self._store.get(path)
            except SecretNotFound:
                raise NotFound(f"device {dev_id!r} has no DM 1.x credentials to rotate", field="dev_id") from None
            fresh = generate_dm1_credentials(dev_id, data["server_name"])
            try:
                new = self._store.put(path, _record(fresh, data["pin"]), cas=ref.version)
            except SecretConflict:
                raise Conflict(f"the DM 1.x credentials of {dev_id!r} changed meanwhile; retry") from None
            append_event(session, actor=actor, action="dm1.credentials.rotate", outcome="success", target=dev_id,
                         detail={"ref": new.to_uri()})
        return new

    # -- building -----------------------------------------------------------------------

    def _package(self, session: Session, device: DeviceRow, profile: EnrollmentProfileRow,
                 issued: IssuedCertificate | None, *, imsi: str | None, pin: str | None, sec: str | None,
                 actor: str, request_id: str | None) -> Dm1Package:
        options = Dm1Options.of(profile.dmacc)
        mode = _sec_mode(sec or options.sec)
        if mode != "USERPIN":
            _check_imsi(imsi, mode, profile.name)
        server = _server(session, device, profile)
        account = DmAccount(server_id=server.server_id, server_uri=server.url,
                            name=str(profile.dmacc.get("Name", server.name)))
        stored = self._stored(device.dev_id, server.server_id, pin)
        if stored.event is not None:
            append_event(session, actor=actor, action=f"dm1.credentials.{stored.event}", outcome="success",
                         target=device.dev_id, request_id=request_id,
                         detail={"ref": stored.ref.to_uri(), "server_id": server.server_id})
        dmacc = dm1_account(account, options, stored.credentials)
        built = build_dmacc10(dmacc)
        self._validate(built.tree, profile.name)
        commands = bootstrap_commands(built.nodes)
        header = SyncHeader(target=device.dev_id, source=server.server_id)
        wbxml, xml = to_wbxml(header, commands), to_xml(header, commands)
        mac_pin = stored.pin if mode != "NETWORKID" else None
        mac = bootstrap_mac(mode, wbxml, imsi=imsi, pin=mac_pin)
        xml_mac = bootstrap_mac(mode, xml, imsi=imsi, pin=mac_pin)
        chain = tuple(c.public_bytes(Encoding.DER) for c in (issued.certificate, *issued.chain)) if issued else ()
        provisioning = cp.to_wbxml(cp.w7_document(dmacc))
        return Dm1Package(
            dev_id=device.dev_id, profile=profile.name, account=dmacc, sec=mode, mac=mac,
            wbxml=Dm1Message(wbxml, content_type_with_mac(mode, wbxml, imsi=imsi, pin=mac_pin)),
            xml=Dm1Message(xml, f"{XML_MEDIA_TYPE}; SEC={mode}; MAC={xml_mac}"),
            tnds=tnds_xml(built.nodes),
            cp=Dm1Message(provisioning, cp.content_type(mode, provisioning, imsi=imsi, pin=mac_pin)),
            credentials_ref=stored.ref.to_uri(), pin=mac_pin,
            certificate_chain=chain, serial_hex=issued.serial_hex if issued else None)

    def _validate(self, tree: Mapping[str, Any], profile: str) -> None:
        ddf = self._ddfs.find(DMACC_1_0)
        if ddf is None:
            raise ConfigurationError(f"no DDF is registered for {DMACC_1_0}; DM 1.x bootstraps need one",
                                     field="MOID")
        try:
            ddf.validate(tree)
        except MoValidationError as exc:
            raise Dm1AccountError(f"the DMAcc 1.0 account of profile {profile!r} does not validate against"
                                  f" {ddf.source}: {exc.message}", exc.problems) from None

    def _stored(self, dev_id: str, server_id: str, pin: str | None) -> _Stored:
        """The device's credentials for ``server_id``: read, else created (cas=0), else rotated."""
        path = credentials_path(dev_id)
        for _ in range(2):
            data: dict[str, str] = {}
            ref: SecretRef | None = None
            try:
                data, ref = self._store.get(path)
            except SecretNotFound:
                pass
            if ref is not None and pin is not None and data.get("pin") != pin:
                raise Conflict(f"device {dev_id!r} has another DM 1.x PIN already", field="pin")
            if ref is not None and data.get("server_name") == server_id:
                return _Stored(_credentials_of(data), data["pin"], ref, None)
            fresh = generate_dm1_credentials(dev_id, server_id)
            keep_pin = data.get("pin") or pin or _new_pin()
            try:
                new = self._store.put(path, _record(fresh, keep_pin), cas=ref.version if ref else 0)
            except SecretConflict:
                continue  # another replica wrote first: take theirs
            return _Stored(fresh, keep_pin, new, "rotate" if ref else "create")
        raise Conflict(f"the DM 1.x credentials of {dev_id!r} are being written by another request; retry")

    def _audit_failure(self, action: str, dev_id: str, actor: str, exc: Exception, request_id: str | None) -> None:
        audit_refusal(self._db, exc, actor=actor, action=action, target=str(dev_id)[:128], request_id=request_id)


# --------------------------------------------------------------------------- helpers


def _sec_mode(sec: str) -> SecMode:
    if sec not in SEC_MODES:
        raise InvalidRequest(f"sec must be one of {', '.join(SEC_MODES)}", field="sec")
    return sec


def _check_imsi(imsi: str | None, mode: SecMode, profile: str) -> None:
    if not imsi:
        raise InvalidRequest(f"SEC={mode} (profile {profile!r}) keys the bootstrap MAC with the IMSI: send the"
                             " device's imsi", field="imsi")
    try:
        imsi_key(imsi)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="imsi") from None


def _new_pin() -> str:
    return f"{secrets.randbelow(10**8):08d}"


def _record(creds: Dm1Credentials, pin: str) -> dict[str, str]:
    return {"client_name": creds.client_name, "client_secret": creds.client_secret,
            "client_nonce": creds.client_nonce, "server_name": creds.server_name,
            "server_secret": creds.server_secret, "server_nonce": creds.server_nonce, "pin": pin}


def _credentials_of(data: Mapping[str, str]) -> Dm1Credentials:
    return Dm1Credentials(**{k: data[k] for k in ("client_name", "client_secret", "client_nonce", "server_name",
                                                  "server_secret", "server_nonce")})


def _device(session: Session, dev_id: str) -> DeviceRow | None:
    return session.exec(select(DeviceRow).where(DeviceRow.dev_id == dev_id)).first()


def _profile_row(session: Session, profile_id: int | None) -> EnrollmentProfileRow:
    profile = session.get(EnrollmentProfileRow, profile_id) if profile_id is not None else None
    if profile is None:  # pragma: no cover - foreign keys keep this from happening
        raise NotFound("the device's enrollment profile does not exist", field="profile")
    return profile


def _server(session: Session, device: DeviceRow, profile: EnrollmentProfileRow) -> DmServerRow:
    listed = profile_links.server_ids(session, row_id(profile.id))
    server_id = device.chosen_dm_server_id or (listed[0] if listed else None)
    server = session.get(DmServerRow, server_id) if server_id is not None else None
    if server is None:
        raise ConfigurationError(f"enrollment profile {profile.name!r} names no DM server", field="profile")
    return server
