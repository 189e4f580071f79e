"""EST (RFC 7030) use cases: CA certificates, CSR attributes, enroll, re-enroll, server-side keys.

Labels (RFC 7030 3.2.2) name an enrollment profile or a certificate profile
(``device``, ``dm-server``, ``data-repository``); no label means ``device``.

Who may enroll (``simpleenroll``, ``serverkeygen``) - the device authorizer of
the issuance pipeline (:mod:`bootstrap.services.pipeline.authorizers`):

* HTTP Basic with a one-time enrollment token as the password (username: the
  DevID, or empty to take the CSR's CN) - RFC 7030 3.2.3;
* a manufacturer certificate (IDevID) over mutual TLS, issued by an enabled
  manufacturer CA - RFC 7030 3.3.2;
* our own valid certificate for the device over mutual TLS.

The device must be registered, not blocked, in an enabled profile that allows
the method; the label, if it names a profile, must be the device's. The CSR's
key type must be one the profile allows; the certificate certifies CN=DevID and
the device URI.

``simplereenroll`` needs the current certificate over mutual TLS (RFC 7030
4.2.2): recorded by us, valid, unrevoked, its device not blocked. The request's
subject must be the current subject and its SANs at most the current SANs; the
new certificate certifies exactly the current identity under the same profile,
and supersedes the device's earlier certificates (bootstrap.services.pipeline.supersede).

When the CSR carries a challengePassword and the connection is TLS 1.2, it must
be the base64 tls-unique of that connection (RFC 7030 3.5); TLS 1.3 has no
tls-unique, so the value is not checked there.

Everything for one request - token consumption, issuance, device update, audit -
runs through the issuance pipeline in one savepoint of a shared transaction; a
refusal rolls it back (the token stays unused, nothing is issued) and is audited
in a transaction of its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlmodel import Session, select

from bootstrap.auth.attestation import Evidence, recorded_certificate
from bootstrap.auth.principals import hash_token
from bootstrap.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from bootstrap.secrets.base import SecretStore
from bootstrap.services.audit import append_event
from bootstrap.services.authorities import AuthorityDirectory
from bootstrap.services.issuance import IssuanceService
from bootstrap.services.pipeline import DeviceAuthorizer, SignOptions, check_certificate_current, device_actor
from bootstrap.services.pipeline.enrolled import record_enrolled
from bootstrap.services.pipeline.prefetch import Needs
from bootstrap.services.pipeline.refusals import audit_refusal
from bootstrap.services.pipeline.supersede import grace_of
from bootstrap.services.revocation import is_device_blocked
from bootstrap.store.db import Database
from bootstrap.store.models import AuthorityRow, DeviceRow, EnrollmentProfileRow
from pki.authority import IssuedCertificate
from pki.csr import CsrInfo, parse_csr
from pki.errors import CsrPolicyError
from pki.est import channel_binding_matches, csr_attributes
from pki.identity import dev_id_from_uri
from pki.keys import KeyType, PrivateKey, generate_private_key
from pki.profiles import Names, get_profile

__all__ = ["EST_CERTIFICATE_PROFILES", "EstClient", "EstLabel", "EstService"]

log = logging.getLogger(__name__)

#: Certificate profiles a label may name directly.
EST_CERTIFICATE_PROFILES = ("device", "dm-server", "data-repository")
_DEFAULT_PROFILE = "device"
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
T = TypeVar("T")


@dataclass(frozen=True)
class EstLabel:
    """What a label (or its absence) stands for."""

    name: str | None
    certificate_profile: str
    enrollment_profile: EnrollmentProfileRow | None = None

    @property
    def key_types(self) -> tuple[KeyType, ...]:
        if self.enrollment_profile is not None:
            return tuple(KeyType.parse(k) for k in self.enrollment_profile.key_types)
        return tuple(get_profile(self.certificate_profile).key_policy.allowed)


@dataclass(frozen=True)
class EstClient:
    """What the transport learned about the caller."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    certificate: x509.Certificate | None = None
    #: tls-unique of the connection (RFC 5929), only on TLS 1.2.
    tls_unique: bytes | None = field(default=None, repr=False)


class EstService:
    """The EST operations, transport-free."""

    def __init__(self, database: Database, store: SecretStore, authorities: AuthorityDirectory,
                 issuance: IssuanceService) -> None:
        self._db = database
        self._authorities = authorities
        self._pipeline = issuance.pipeline
        self._authorizer = DeviceAuthorizer(store)

    # -- read-only operations -------------------------------------------------------------

    def label(self, name: str | None) -> EstLabel:
        """Resolve a label (None: the default label).

        Raises:
            NotFound: neither an enrollment profile nor an EST certificate profile.
        """
        if name is None:
            return EstLabel(None, _DEFAULT_PROFILE)
        if _LABEL.match(name):
            with self._db.read_session() as session:
                row = session.exec(select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == name)).first()
            if row is not None:
                return EstLabel(name, row.certificate_profile, row)
            if name in EST_CERTIFICATE_PROFILES:
                return EstLabel(name, name)
        raise NotFound(f"no EST label {name!r}: use an enrollment profile name or one of"
                       f" {', '.join(EST_CERTIFICATE_PROFILES)}", field="label")

    def ca_certificates(self) -> list[x509.Certificate]:
        """The active issuing CA and the root (RFC 7030 4.1.3)."""
        with self._db.session() as session:
            rows = [self._authorities.active_row(session), self._authorities.root_row(session)]
        return [x509.load_pem_x509_certificate(row.pem.encode()) for row in rows]

    def csr_attributes(self, label: EstLabel) -> bytes:
        """DER CsrAttrs for ``label`` (RFC 7030 4.5.2)."""
        return csr_attributes(label.key_types)

    # -- enrollment ---------------------------------------------------------------------

    def enroll(self, label: EstLabel, csr: bytes, client: EstClient, *,
               request_id: str | None = None) -> IssuedCertificate:
        """``/simpleenroll``: authenticate, check, issue, record - one transaction.

        Raises:
            AuthenticationFailed: no or bad credentials (HTTP 401).
            PermissionDenied: a blocked device, a disabled profile, a method or label not allowed.
            InvalidRequest: a challengePassword that is not this connection's tls-unique.
            PkiError: the CSR is refused.
        """
        return self._guarded("est.enroll", label, client, request_id,
                             lambda: self._issue(label, self._parse(csr, client), client, request_id, False))

    def reenroll(self, label: EstLabel, csr: bytes, client: EstClient, *,
                 request_id: str | None = None) -> IssuedCertificate:
        """``/simplereenroll``: a new certificate for the identity of the current one (RFC 7030 4.2.2)."""
        return self._guarded("est.reenroll", label, client, request_id,
                             lambda: self._issue(label, self._parse(csr, client), client, request_id, True))

    def server_keygen(self, label: EstLabel, csr: bytes, client: EstClient, *,
                      request_id: str | None = None) -> tuple[IssuedCertificate, PrivateKey]:
        """``/serverkeygen`` (RFC 7030 4.4): a new key pair made here, certified, returned once, never stored.

        The request supplies the subject, names and key type; its own key is ignored.
        """
        def run() -> tuple[IssuedCertificate, PrivateKey]:
            info = self._parse(csr, client)
            key = generate_private_key(info.key_type)
            issued = self._issue(label, _rekeyed(info, key), client, request_id, False)
            return issued, key

        return self._guarded("est.serverkeygen", label, client, request_id, run)

    def _guarded(self, action: str, label: EstLabel, client: EstClient, request_id: str | None,
                    work: Callable[[], T]) -> T:
        try:
            return work()
        except Exception as exc:
            self._refused(action, label, client, request_id, exc)
            raise

    @staticmethod
    def _parse(csr: bytes, client: EstClient) -> CsrInfo:
        info = parse_csr(csr)
        if info.challenge_password is not None and client.tls_unique is not None \
                and not channel_binding_matches(info.challenge_password, client.tls_unique):
            raise InvalidRequest("the CSR's challengePassword is not the tls-unique value of this TLS connection"
                                 " (RFC 7030 3.5): build the request on the connection that sends it",
                                 field="challengePassword")
        return info

    def _issue(self, label: EstLabel, info: CsrInfo, client: EstClient, request_id: str | None,
               reenroll: bool) -> IssuedCertificate:
        def authorize(session: Session, now: datetime) -> SignOptions:
            return (self._current(session, label, info, client, now) if reenroll
                    else self._attest(session, label, info, client, now))

        def after(session: Session, options: SignOptions, issued: IssuedCertificate | None) -> IssuedCertificate:
            if issued is None:  # pragma: no cover - EST always sends a CSR
                raise InvalidRequest("no certificate request", field="csr")
            if options.device is not None:
                device = options.device
                record_enrolled(session, device, issued.serial_hex,
                                status="enrolled" if device.status == "registered" else device.status)
            append_event(session, actor=options.actor, action="est.reenroll" if reenroll else "est.enroll",
                         outcome="success", target=options.dev_id or issued.serial_hex, request_id=request_id,
                         detail={"label": label.name, "serial": issued.serial_hex,
                                 "profile": options.certificate_profile, **options.detail})
            return issued

        needs = None
        if not reenroll and client.password is not None and (client.username or info.common_name):
            needs = Needs(client.username or info.common_name, hash_token(client.password))
        return self._pipeline.issue(authorize, info, request_id=request_id, after=after, needs=needs).result

    # -- simpleenroll: attestation ----------------------------------------------------------

    def _attest(self, session: Session, label: EstLabel, info: CsrInfo, client: EstClient,
                now: datetime) -> SignOptions:
        if client.password is not None:
            evidence = Evidence("token", token=client.password)
            dev_id = client.username or info.common_name
        elif client.certificate is not None:
            method = "current-cert" if _issuing_ca(session, client.certificate, now) else "idevid"
            evidence = Evidence(method, client_certificate=client.certificate)
            dev_id = (_certified_dev_id(client.certificate) if method == "current-cert"
                      else info.common_name or _subject_dev_id(client.certificate))
        else:
            raise AuthenticationFailed("EST enrollment needs a client certificate (manufacturer or current)"
                                       " or HTTP Basic with an enrollment token as the password")
        if not dev_id:
            raise InvalidRequest("name the DevID: as the Basic username or the CSR's subject CN", field="dev_id")
        grant = self._authorizer.grant(session, dev_id, evidence, now, register=False)
        profile = grant.profile
        if label.enrollment_profile is not None and label.enrollment_profile.id != profile.id:
            raise PermissionDenied(f"device {dev_id!r} belongs to enrollment profile {profile.name!r},"
                                   f" not {label.name!r}", field="label")
        if label.enrollment_profile is None and label.name is not None \
                and label.certificate_profile != profile.certificate_profile:
            raise PermissionDenied(f"device {dev_id!r} gets {profile.certificate_profile} certificates,"
                                   f" not {label.certificate_profile}", field="label")
        return grant.options(actor=device_actor(dev_id), detail={"enrollment_profile": profile.name})

    # -- simplereenroll: the current certificate ----------------------------------------------

    def _current(self, session: Session, label: EstLabel, info: CsrInfo, client: EstClient,
                 now: datetime) -> SignOptions:
        cert = client.certificate
        if cert is None:
            raise AuthenticationFailed("simplereenroll needs the current certificate as the TLS client certificate"
                                       " (RFC 7030 4.2.2)")
        if _issuing_ca(session, cert, now) is None:
            raise AuthenticationFailed("the client certificate is not issued by one of our CAs", field="certificate")
        serial, row = recorded_certificate(session, cert, field="certificate")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise AuthenticationFailed(f"certificate {serial} is expired or not yet valid", field="certificate")
        if row.profile not in EST_CERTIFICATE_PROFILES:
            raise PermissionDenied(f"{row.profile} certificates are not renewed over EST", field="certificate")
        if label.name is not None and label.certificate_profile != row.profile:
            raise PermissionDenied(f"label {label.name!r} issues {label.certificate_profile} certificates;"
                                   f" the current certificate is {row.profile}", field="label")
        check_certificate_current(session, serial, now)
        device = None
        profile = None
        if row.device_id is not None:
            if is_device_blocked(session, row.device_id):
                raise PermissionDenied(f"device {row.device_id!r} is blocked (revoked); an admin must re-admit it",
                                       field="dev_id")
            device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == row.device_id)).first()
            if device is not None:
                profile = session.get(EnrollmentProfileRow, device.profile_id)
        names = _same_identity(info, cert)
        actor = f"device:{row.device_id}" if row.device_id else f"est:{label.name or 'default'}"
        return SignOptions(
            actor=actor[:128], certificate_profile=row.profile, names=names,
            validity=timedelta(days=profile.validity_days) if profile is not None else None,
            dev_id=row.device_id, device=device, enrollment_profile=profile,
            detail={"method": "current-cert", "previous_serial": serial},
            supersede_grace=grace_of(profile) if profile is not None else None)

    # -- audit ------------------------------------------------------------------------------

    def _refused(self, action: str, label: EstLabel, client: EstClient, request_id: str | None,
                 exc: Exception) -> None:
        who = (client.username or "") if client.password is not None else (
            client.certificate.subject.rfc4514_string() if client.certificate is not None else "anonymous")
        audit_refusal(self._db, exc, actor=f"est:{who}", action=action, request_id=request_id,
                      detail={"label": label.name, "auth": "basic" if client.password is not None
                              else "certificate" if client.certificate is not None else "none"})


def _issuing_ca(session: Session, cert: x509.Certificate, now: datetime) -> AuthorityRow | None:
    """The issuing CA of ours that signed ``cert``, if one did."""
    for row in session.exec(select(AuthorityRow).where(AuthorityRow.kind == "issuing")):
        ca = x509.load_pem_x509_certificate(row.pem.encode())
        if cert.issuer != ca.subject or not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return row
    return None


def _sans(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[object, ...], tuple[str, ...]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), (), ()
    return (tuple(san.get_values_for_type(x509.DNSName)), tuple(san.get_values_for_type(x509.IPAddress)),
            tuple(san.get_values_for_type(x509.UniformResourceIdentifier)))


def _certified_dev_id(cert: x509.Certificate) -> str | None:
    for uri in _sans(cert)[2]:
        if (dev_id := dev_id_from_uri(uri)) is not None:
            return dev_id
    return _first(cert.subject, NameOID.COMMON_NAME)


def _subject_dev_id(cert: x509.Certificate) -> str | None:
    """An IDevID's DevID: subject serialNumber (IEEE 802.1AR), else CN."""
    return _first(cert.subject, NameOID.SERIAL_NUMBER) or _first(cert.subject, NameOID.COMMON_NAME)


def _first(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def _same_identity(info: CsrInfo, cert: x509.Certificate) -> Names:
    """The current certificate's names, if the request asks for that identity (RFC 7030 4.2.2)."""
    if info.csr.subject != cert.subject:
        raise CsrPolicyError(f"re-enrollment keeps the subject: the request asks for"
                             f" {info.csr.subject.rfc4514_string()!r}, the certificate is"
                             f" {cert.subject.rfc4514_string()!r}", field="csr")
    dns, ips, uris = _sans(cert)
    extra = (set(info.dns) - set(dns)) | (set(info.ips) - set(ips)) | (set(info.uris) - set(uris))
    if extra:
        raise CsrPolicyError(f"re-enrollment keeps the names: the request adds {sorted(map(str, extra))}",
                             field="csr")
    return Names(common_name=_first(cert.subject, NameOID.COMMON_NAME) or "",
                 organization=_first(cert.subject, NameOID.ORGANIZATION_NAME),
                 dns=dns, ips=tuple(ips), uris=uris)  # type: ignore[arg-type]


def _rekeyed(info: CsrInfo, key: PrivateKey) -> CsrInfo:
    """The request's subject and names, signed by ``key`` (serverkeygen ignores the client's key)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(info.csr.subject)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in info.dns]
    names += [x509.IPAddress(ip) for ip in info.ips]
    names += [x509.UniformResourceIdentifier(u) for u in info.uris]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return parse_csr(builder.sign(key, algorithm).public_bytes(Encoding.DER))

