"""TPM manufacturer CAs per enrollment profile: the roots (and intermediates) EK certificates chain to.

As manufacturer CAs are for IDevIDs, but per profile: a fleet trusts the TPM makers
its devices carry. Every change is an audit event.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import col, select

from bootstrap.errors import Conflict, NotFound
from bootstrap.services.audit import append_event
from bootstrap.services.config import _name, _one_ca_certificate, _profile
from bootstrap.store.db import Database
from bootstrap.store.models import EnrollmentProfileRow
from bootstrap.store.models.tpm import TpmManufacturerCaRow
from pki.authority import fingerprint

__all__ = ["TpmTrustService"]


class TpmTrustService:
    """Register, list, enable and disable TPM manufacturer CAs of an enrollment profile."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, profile: str, name: str, pem: str, *, actor: str) -> TpmManufacturerCaRow:
        """Trust the CA certificate ``pem`` for EK certificates of devices in ``profile``.

        Raises:
            InvalidRequest: not exactly one CA certificate; a bad name.
            NotFound: no such profile.
            Conflict: the name or certificate is registered for the profile already.
        """
        cert = _one_ca_certificate(pem, "pem")
        name = _name(name, "name")
        with self._db.session() as session:
            owner = _profile(session, profile)
            print_ = fingerprint(cert)
            if session.exec(select(TpmManufacturerCaRow).where(
                    TpmManufacturerCaRow.profile_id == owner.id,
                    (TpmManufacturerCaRow.name == name) | (TpmManufacturerCaRow.fingerprint == print_))).first():
                raise Conflict(f"TPM manufacturer CA {name!r} or this certificate is registered for profile"
                               f" {profile!r} already", field="name")
            row = TpmManufacturerCaRow(profile_id=owner.id or 0, name=name, fingerprint=print_,
                                       pem=cert.public_bytes(Encoding.PEM).decode())
            session.add(row)
            append_event(session, actor=actor, action="tpm-manufacturer-ca.add", outcome="success", target=name,
                         detail={"profile": profile, "fingerprint": print_, "subject": cert.subject.rfc4514_string()})
            session.flush()
            session.refresh(row)
            session.expunge(row)
        return row

    def list(self, profile: str | None = None) -> list[tuple[str, TpmManufacturerCaRow]]:
        """(profile name, CA) pairs, of one profile or all, by profile and name."""
        with self._db.session() as session:
            query = select(EnrollmentProfileRow.name, TpmManufacturerCaRow).join(
                EnrollmentProfileRow, col(EnrollmentProfileRow.id) == col(TpmManufacturerCaRow.profile_id))
            if profile is not None:
                query = query.where(EnrollmentProfileRow.name == _profile(session, profile).name)
            rows = [(str(p), ca) for p, ca in session.exec(query.order_by(col(EnrollmentProfileRow.name),
                                                                            col(TpmManufacturerCaRow.name)))]
            for _, ca in rows:
                session.expunge(ca)
        return rows

    def set_enabled(self, profile: str, name: str, enabled: bool, *, actor: str) -> TpmManufacturerCaRow:
        """Enable or disable a CA (disabled: EK certificates chaining only to it are refused).

        Raises:
            NotFound: no such profile or CA.
        """
        with self._db.session() as session:
            owner = _profile(session, profile)
            row = session.exec(select(TpmManufacturerCaRow).where(TpmManufacturerCaRow.profile_id == owner.id,
                                                                  TpmManufacturerCaRow.name == name)).first()
            if row is None:
                raise NotFound(f"no TPM manufacturer CA {name!r} in profile {profile!r}", field="name")
            row.enabled = enabled
            session.add(row)
            append_event(session, actor=actor, action="tpm-manufacturer-ca." + ("enable" if enabled else "disable"),
                         outcome="success", target=name, detail={"profile": profile, "fingerprint": row.fingerprint})
            session.flush()
            session.refresh(row)
            session.expunge(row)
        return row
