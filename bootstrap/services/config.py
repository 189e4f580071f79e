"""Admin configuration: DM servers, data repositories, enrollment profiles, manufacturer CAs.

Every change is validated here (the API and the CLI share it), written with its
audit event in one transaction, and refused with an :class:`InvalidRequest`
naming the field. DM servers and data repositories get their TLS server
certificates from our CA, for the host of their URL.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import ColumnElement
from sqlmodel import Session, col, select

from bootstrap.dm.ddf import DdfRegistry, MoValidationError
from bootstrap.dm.mo import DMACC_1_2, TRUST_1_0, MoInstance, validate_instance
from bootstrap.errors import Conflict, InvalidRequest, NotFound
from bootstrap.services.audit import append_event
from bootstrap.services.dm1 import profile_options
from bootstrap.services.issuance import IssuanceService, Requester
from bootstrap.services.profile_spec import DELIVERY_MODES, ProfileSpec, ProfileView
from bootstrap.store import profile_links
from bootstrap.store.db import Database
from bootstrap.store.models import (
    DataRepositoryRow,
    DeviceRow,
    DmServerRow,
    EnrollmentProfileRow,
    EnrollmentTokenRow,
    ManufacturerCaRow,
    row_id,
    utcnow,
)
from pki.authority import IssuedCertificate, fingerprint
from pki.keys import KeyType
from pki.profiles import Names, get_profile

__all__ = ["DELIVERY_MODES", "ConfigService", "ProfileSpec", "ProfileView"]

#: A DM server or a data repository: registered the same way (a free key, a URL, an anchor).
_Endpoint = TypeVar("_Endpoint", DmServerRow, DataRepositoryRow)
_SERVER_ID = re.compile(r"^[\x21-\x7e]{1,128}\Z")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


class ConfigService:
    """Creates, lists and removes the admin-defined objects."""

    def __init__(self, database: Database, issuance: IssuanceService, ddfs: DdfRegistry) -> None:
        self._db = database
        self._issuance = issuance
        self._ddfs = ddfs

    # -- DM servers -----------------------------------------------------------------------

    def add_server(self, server_id: str, name: str, url: str, trust_anchor_pem: str | None = None, *,
                   actor: str) -> DmServerRow:
        """Register a DM server (DMAcc SrvID, SrvURI); its anchor defaults to our root CA.

        Raises:
            InvalidRequest: a bad SrvID, URL or anchor.
            Conflict: the SrvID exists.
        """
        if not isinstance(server_id, str) or not _SERVER_ID.match(server_id):
            raise InvalidRequest("server_id must be 1-128 printable ASCII characters without spaces",
                                 field="server_id")
        row = DmServerRow(server_id=server_id, name=_label(name or server_id, "name"),
                          url=_check_url(url, "url"), trust_anchor_pem=_check_anchor(trust_anchor_pem))
        return self._register(row, DmServerRow.server_id == server_id, server_id, what="DM server",
                              field_="server_id", action="dm-server.create", actor=actor)

    def list_servers(self) -> list[DmServerRow]:
        """Every DM server, by SrvID."""
        with self._db.read_session() as session:
            return list(session.exec(select(DmServerRow).order_by(col(DmServerRow.server_id))))

    def get_server(self, server_id: str) -> DmServerRow:
        """One DM server; NotFound if there is none."""
        with self._db.read_session() as session:
            return _server(session, server_id)

    def delete_server(self, server_id: str, *, actor: str) -> None:
        """Remove a DM server no profile or device uses.

        Raises:
            Conflict: a profile or device refers to it.
        """
        with self._db.session() as session:
            row = _server(session, server_id)
            users = profile_links.profiles_using_server(session, row_id(row.id))
            if users or session.exec(select(DeviceRow).where(DeviceRow.chosen_dm_server_id == row.id)).first():
                raise Conflict(f"DM server {server_id!r} is in use (profiles: {', '.join(users) or '-'};"
                               " or a device chose it)", field="server_id")
            session.delete(row)
            append_event(session, actor=actor, action="dm-server.delete", outcome="success", target=server_id)

    def _register(self, row: _Endpoint, taken: ColumnElement[bool] | bool, key: str, *, what: str, field_: str,
                  action: str, actor: str) -> _Endpoint:
        """Add a DM server or data repository whose key is free, audited with its URL and anchor."""
        with self._db.session() as session:
            if session.exec(select(type(row)).where(taken)).first():
                raise Conflict(f"a {what} {key!r} exists already", field=field_)
            session.add(row)
            append_event(session, actor=actor, action=action, outcome="success", target=key,
                         detail={"url": row.url, "anchor": _anchor_print(row.trust_anchor_pem)})
        return row

    # -- data repositories ----------------------------------------------------------------

    def add_repository(self, name: str, url: str, trust_anchor_pem: str | None = None, *,
                       actor: str) -> DataRepositoryRow:
        """Register a data repository (HGET source, DM-HLF-003).

        Raises:
            InvalidRequest: a bad name, URL or anchor.
            Conflict: the name exists.
        """
        row = DataRepositoryRow(name=_name(name, "name"), url=_check_url(url, "url"),
                                trust_anchor_pem=_check_anchor(trust_anchor_pem))
        return self._register(row, DataRepositoryRow.name == name, name, what="data repository", field_="name",
                              action="data-repository.create", actor=actor)

    def list_repositories(self) -> list[DataRepositoryRow]:
        """Every data repository, by name."""
        with self._db.read_session() as session:
            return list(session.exec(select(DataRepositoryRow).order_by(col(DataRepositoryRow.name))))

    def get_repository(self, name: str) -> DataRepositoryRow:
        """One data repository; NotFound if there is none."""
        with self._db.read_session() as session:
            return _repository(session, name)

    def delete_repository(self, name: str, *, actor: str) -> None:
        """Remove a data repository no profile uses."""
        with self._db.session() as session:
            row = _repository(session, name)
            users = profile_links.profiles_using_repository(session, row_id(row.id))
            if users:
                raise Conflict(f"data repository {name!r} is used by profiles {', '.join(users)}", field="name")
            session.delete(row)
            append_event(session, actor=actor, action="data-repository.delete", outcome="success", target=name)

    # -- server certificates --------------------------------------------------------------

    def issue_server_certificate(self, kind: str, ident: str, csr: bytes | str, *, actor: str,
                                 request_id: str | None = None) -> IssuedCertificate:
        """Issue the TLS certificate of a DM server (``kind`` "dm-server") or data repository
        ("data-repository") for the host of its URL; the CSR may ask for that host only.

        Raises:
            NotFound: no such server or repository.
            PkiError: the CSR is refused.
        """
        if kind == "dm-server":
            url = self.get_server(ident).url
        elif kind == "data-repository":
            url = self.get_repository(ident).url
        else:
            raise InvalidRequest(f"no server certificates for {kind!r}", field="kind")
        host = urlsplit(url).hostname or ""
        try:
            names = Names(common_name=host, ips=(ipaddress.ip_address(host),))
        except ValueError:
            names = Names(common_name=host, dns=(host,))
        return self._issuance.issue_from_csr(csr, kind, Requester(actor, request_id), expected=names)

    # -- enrollment profiles --------------------------------------------------------------

    def add_profile(self, spec: ProfileSpec, *, actor: str) -> ProfileView:
        """Create an enrollment profile after validating every part of it.

        Raises:
            InvalidRequest: naming the field; NotFound: an unknown server or repository.
            Conflict: the name exists.
        """
        with self._db.session() as session:
            if session.exec(select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == spec.name)).first():
                raise Conflict(f"an enrollment profile {spec.name!r} exists already", field="name")
            row = EnrollmentProfileRow(name=_name(spec.name, "name"))
            self._apply(session, row, spec)
            session.add(row)
            append_event(session, actor=actor, action="profile.create", outcome="success", target=spec.name,
                         detail={"attestation": row.attestation, "delivery": row.delivery})
            return self._view(session, row)

    def update_profile(self, spec: ProfileSpec, *, actor: str) -> ProfileView:
        """Replace an existing profile's settings (its group key stays).

        Raises:
            NotFound: no such profile; InvalidRequest as for :meth:`add_profile`.
        """
        with self._db.session() as session:
            row = _profile(session, spec.name)
            self._apply(session, row, spec)
            row.updated_at = utcnow()
            session.add(row)
            append_event(session, actor=actor, action="profile.update", outcome="success", target=spec.name,
                         detail={"attestation": row.attestation, "delivery": row.delivery})
            return self._view(session, row)

    def list_profiles(self) -> list[ProfileView]:
        """Every enrollment profile, by name."""
        with self._db.read_session() as session:
            rows = session.exec(select(EnrollmentProfileRow).order_by(col(EnrollmentProfileRow.name)))
            return [self._view(session, row) for row in rows]

    def get_profile(self, name: str) -> ProfileView:
        """One enrollment profile; NotFound if there is none."""
        with self._db.read_session() as session:
            return self._view(session, _profile(session, name))

    def delete_profile(self, name: str, *, actor: str) -> None:
        """Remove a profile no device or token uses (its group key stays in the secret store)."""
        with self._db.session() as session:
            row = _profile(session, name)
            if (session.exec(select(DeviceRow).where(DeviceRow.profile_id == row.id)).first()
                    or session.exec(select(EnrollmentTokenRow).where(EnrollmentTokenRow.profile_id == row.id)).first()):
                raise Conflict(f"profile {name!r} has devices or enrollment tokens", field="name")
            session.delete(row)
            append_event(session, actor=actor, action="profile.delete", outcome="success", target=name)

    def _apply(self, session: Session, row: EnrollmentProfileRow, spec: ProfileSpec) -> None:
        body = spec.checked()  # the shape, by the one model of a profile; what follows needs the database
        server_ids = [row_id(_server(session, s, field_="dm_servers").id) for s in _unique(body.dm_servers)]
        repository_ids = [row_id(_repository(session, r, field_="data_repositories").id)
                          for r in _unique(body.data_repositories)]
        allowed = get_profile("device").key_policy.allowed
        if refused := [k for k in body.key_types if KeyType(k) not in allowed]:
            raise InvalidRequest(f"key types {refused} are not allowed for device certificates", field="key_types")
        row.key_types = _unique(body.key_types)
        row.attestation = _unique(body.attestation)
        dmacc = body.dmacc.model_dump(exclude_none=True)
        if "Perm" in dmacc:
            dmacc["Perm"] = _unique(dmacc["Perm"])
        row.dmacc = {**dmacc, **profile_options(dmacc)}
        row.extra_mos = self._extra_mos(body.extra_mos)
        row.certificate_profile, row.delivery, row.server_keygen = body.certificate_profile, body.delivery, \
            body.server_keygen
        row.validity_days, row.supersede = body.validity_days, body.supersede
        row.supersede_grace_seconds, row.description, row.enabled = body.supersede_grace_seconds, \
            body.description, body.enabled
        session.add(row)
        session.flush()  # a new profile gets its id, which its links refer to
        profile_links.set_servers(session, row_id(row.id), server_ids)
        profile_links.set_repositories(session, row_id(row.id), repository_ids)

    def _extra_mos(self, mos: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        checked: list[dict[str, Any]] = []
        for index, obj in enumerate(mos):
            try:
                instance = MoInstance.from_json(dict(obj))
                if instance.moid in (DMACC_1_2, TRUST_1_0):
                    raise InvalidRequest(f"extra_mos/{index}: {instance.moid} is built by the service",
                                         field="extra_mos")
                validate_instance(instance, self._ddfs)
            except MoValidationError as exc:
                raise InvalidRequest(f"extra_mos/{index}: {exc.message}", field="extra_mos") from None
            checked.append(instance.to_stored_json())
        return checked

    @staticmethod
    def _view(session: Session, row: EnrollmentProfileRow) -> ProfileView:
        profile_id = row_id(row.id)
        return ProfileView(row, tuple(s.server_id for s in profile_links.servers(session, profile_id)),
                           tuple(r.name for r in profile_links.repositories(session, profile_id)))

    # -- manufacturer CAs -----------------------------------------------------------------

    def add_manufacturer_ca(self, name: str, pem: str, *, actor: str) -> ManufacturerCaRow:
        """Trust a manufacturer CA for IDevID attestation.

        Raises:
            InvalidRequest: not exactly one CA certificate.
            Conflict: the name or certificate is trusted already.
        """
        cert = _one_ca_certificate(pem, "pem")
        row = ManufacturerCaRow(name=_name(name, "name"), fingerprint=fingerprint(cert),
                                pem=cert.public_bytes(Encoding.PEM).decode())
        with self._db.session() as session:
            if session.exec(select(ManufacturerCaRow).where(
                    (ManufacturerCaRow.name == name) | (ManufacturerCaRow.fingerprint == row.fingerprint))).first():
                raise Conflict(f"manufacturer CA {name!r} or this certificate is trusted already", field="name")
            session.add(row)
            append_event(session, actor=actor, action="manufacturer-ca.add", outcome="success", target=name,
                         detail={"fingerprint": row.fingerprint, "subject": cert.subject.rfc4514_string()})
        return row

    def list_manufacturer_cas(self) -> list[ManufacturerCaRow]:
        """Every manufacturer CA, enabled or not, by name."""
        with self._db.read_session() as session:
            return list(session.exec(select(ManufacturerCaRow).order_by(col(ManufacturerCaRow.name))))

    def set_manufacturer_ca_enabled(self, name: str, enabled: bool, *, actor: str) -> ManufacturerCaRow:
        """Enable or disable a manufacturer CA (disabled: its IDevIDs are refused)."""
        with self._db.session() as session:
            row = session.exec(select(ManufacturerCaRow).where(ManufacturerCaRow.name == name)).first()
            if row is None:
                raise NotFound(f"no manufacturer CA {name!r}", field="name")
            row.enabled = enabled
            session.add(row)
            append_event(session, actor=actor, action="manufacturer-ca." + ("enable" if enabled else "disable"),
                         outcome="success", target=name)
        return row


# -- lookups and validation helpers --------------------------------------------------------


def _server(session: Session, server_id: str, *, field_: str = "server_id") -> DmServerRow:
    row = session.exec(select(DmServerRow).where(DmServerRow.server_id == server_id)).first()
    if row is None:
        raise NotFound(f"no DM server {server_id!r}", field=field_)
    return row


def _repository(session: Session, name: str, *, field_: str = "name") -> DataRepositoryRow:
    row = session.exec(select(DataRepositoryRow).where(DataRepositoryRow.name == name)).first()
    if row is None:
        raise NotFound(f"no data repository {name!r}", field=field_)
    return row


def _profile(session: Session, name: str) -> EnrollmentProfileRow:
    row = session.exec(select(EnrollmentProfileRow).where(EnrollmentProfileRow.name == name)).first()
    if row is None:
        raise NotFound(f"no enrollment profile {name!r}", field="profile")
    return row


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _name(value: object, field_: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidRequest(f"{field_} must be 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
                             field=field_)
    return value


def _label(value: object, field_: str, *, maximum: int = 256, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > maximum or (not empty and not value.strip()):
        raise InvalidRequest(f"{field_} must be text of at most {maximum} characters", field=field_)
    return value


def _check_url(url: object, field_: str) -> str:
    if not isinstance(url, str):
        raise InvalidRequest(f"{field_} must be a string", field=field_)
    try:
        parts = urlsplit(url)  # a bracketed host that is no IPv6 address ("https://[0]") is a ValueError
    except ValueError:
        parts = urlsplit("")
    if parts.scheme != "https" or not parts.hostname or parts.username or any(c.isspace() for c in url):
        raise InvalidRequest(f"{field_} must be an https URL with a host (TLS is mandatory), not {url!r}",
                             field=field_)
    if len(url) > 1024:
        raise InvalidRequest(f"{field_} is longer than 1024 characters", field=field_)
    return url


def _one_certificate(pem: object, field_: str) -> x509.Certificate:
    if not isinstance(pem, str):
        raise InvalidRequest(f"{field_} must be a PEM certificate", field=field_)
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise InvalidRequest(f"{field_} is not a PEM certificate: {exc}", field=field_) from None
    if len(certs) != 1:
        raise InvalidRequest(f"{field_} must hold exactly one certificate, not {len(certs)}", field=field_)
    return certs[0]


def _one_ca_certificate(pem: object, field_: str) -> x509.Certificate:
    cert = _one_certificate(pem, field_)
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise InvalidRequest("the certificate is not a CA certificate (cA=FALSE)", field=field_)
    except x509.ExtensionNotFound:
        raise InvalidRequest("the certificate has no basicConstraints: not a CA", field=field_) from None
    return cert


def _check_anchor(pem: str | None) -> str | None:
    if pem is None or pem == "":
        return None
    return _one_certificate(pem, "trust_anchor_pem").public_bytes(Encoding.PEM).decode()


def _anchor_print(pem: str | None) -> str:
    return fingerprint(x509.load_pem_x509_certificate(pem.encode())) if pem else "our root CA"
