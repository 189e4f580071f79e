"""The DM 2.0 bootstrap exchange as a use case: package 1 in, package 2 out; package 3 in, done.

:class:`Dm2BootstrapService` sits on the enrollment service (which authenticates the
device, issues its certificate, audits the attempt and fills the
:class:`~bootstrap.dm.content.BootstrapContent`) and adds what is DM 2.0: the MO
instances the device declared, validated against their DDFs; inline PUTs or - for
profiles with ``delivery = "hget"`` - MO data published for data repositories; the
signed session reference; and package 3's BootstrapComplete.

No state is kept in a process (DM-SYS-001): the session reference is signed, and
published MO data is in the database (``dm_object``), readable by any replica.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete
from sqlmodel import Session, select

from bootstrap.auth.attestation import Evidence
from bootstrap.dm.content import BootstrapContent
from bootstrap.dm.ddf import DdfRegistry
from bootstrap.dm.mo import TRUST_1_0, MoInstance, dump_instances
from bootstrap.dm.package import (
    BOOTSTRAP_COMPLETE,
    Command,
    End,
    Hget,
    Initiation,
    PackageBuildError,
    PackageError,
    Put,
    Response,
    bootstrap_instances,
    declared_json,
    encode_request,
    hget_url,
)
from bootstrap.dm.session import SessionInvalid, SessionSigner
from bootstrap.errors import NotFound
from bootstrap.store.db import Database
from bootstrap.store.models import DeviceRow, DmObjectRow, utcnow
from pki.authority import IssuedCertificate

__all__ = ["BOOTSTRAP_PATH", "OBJECT_TTL", "Dm2BootstrapService", "EnrollmentPort", "Package2"]

#: Ours: the path of the DM 2.0 bootstrap endpoint (packages 1 and 3).
BOOTSTRAP_PATH = "/dm/bootstrap"
#: Ours: how long MO data published for HGET stays available (a device fetches it right away).
OBJECT_TTL = timedelta(hours=1)


class _Outcome(Protocol):
    @property
    def issued(self) -> IssuedCertificate: ...

    @property
    def content(self) -> BootstrapContent: ...


EnrollmentOutcome = _Outcome


class EnrollmentPort(Protocol):
    """What this service needs of the enrollment service (``bootstrap.services.enrollment``)."""

    def enroll(self, dev_id: str, evidence: Evidence, csr: bytes, *,
               declared_mos: list[dict[str, Any]] | None = None, features: dict[str, Any] | None = None,
               channel: str = "json", request_id: str | None = None,
               finish: Callable[[Session, Any], None] | None = None) -> _Outcome: ...

    def complete(self, dev_id: str, serial_hex: str, *, request_id: str | None = None) -> DeviceRow: ...


@dataclass(frozen=True)
class Package2:
    """The answer to package 1: the body and the session reference for package 3."""

    body: bytes
    session: str
    dev_id: str
    serial_hex: str


class Dm2BootstrapService:
    """Runs the DM 2.0 bootstrap exchange for one device at a time, on any replica."""

    def __init__(self, enrollment: EnrollmentPort, database: Database, sessions: SessionSigner,
                 ddfs: DdfRegistry, *, public_url: str, object_ttl: timedelta = OBJECT_TTL) -> None:
        self._enrollment = enrollment
        self._db = database
        self._sessions = sessions
        self._ddfs = ddfs
        self._public_url = public_url.rstrip("/")
        self._object_ttl = object_ttl

    @property
    def ddfs(self) -> DdfRegistry:
        return self._ddfs

    @property
    def bootstrap_uri(self) -> str:
        """Where devices bootstrap (DMAcc ``Auth/Bootstrap/ServerURI``)."""
        return self._public_url + BOOTSTRAP_PATH

    def start(self, initiation: Initiation, evidence: Evidence, *, request_id: str | None = None) -> Package2:
        """Enroll the device of package 1 and build its package 2.

        Raises:
            AuthenticationFailed, PermissionDenied, InvalidRequest, PkiError: From the
                enrollment (each attempt is audited there).
            PackageBuildError: The content does not make a valid package (a configuration fault).
        """
        built: list[Package2] = []

        def render(session: Session, outcome: EnrollmentOutcome) -> None:
            # Runs inside the enrollment transaction: if the package cannot be built,
            # the certificate is not recorded and the token is not spent.
            content = outcome.content
            instances = bootstrap_instances(content, initiation.declared_moids, self._ddfs,
                                            ddf_base_url=self._public_url, bootstrap_uri=self.bootstrap_uri)
            commands = self._commands(session, content, instances)
            serial = outcome.issued.serial_hex
            built.append(Package2(body=encode_request(commands),
                                  session=self._sessions.issue(initiation.dev_id, serial),
                                  dev_id=initiation.dev_id, serial_hex=serial))

        self._enrollment.enroll(
            initiation.dev_id, evidence, initiation.csr, declared_mos=declared_json(initiation.mos),
            features=dict(initiation.features), channel="dm2", request_id=request_id, finish=render,
        )
        return built[0]

    def _commands(self, session: Session, content: BootstrapContent, instances: Sequence[MoInstance]) -> list[Command]:
        if content.delivery != "hget":
            return [*(Put(i) for i in instances), End()]
        if not content.data_repository_urls:
            raise PackageBuildError("the profile delivers by HGET but names no data repository")
        # The trust MO always travels inline: it is what lets the device authenticate the repository.
        inline = [i for i in instances if i.moid == TRUST_1_0]
        fetched = [i for i in instances if i.moid != TRUST_1_0]
        refs = self._publish(session, content.dev_id, fetched)
        repository = content.data_repository_urls[0]
        return [*(Put(i) for i in inline),
                *(Hget(hget_url(repository, ref), i.client_uri) for ref, i in zip(refs, fetched, strict=True)),
                End()]

    def _publish(self, session: Session, dev_id: str, instances: Sequence[MoInstance]) -> list[str]:
        if not instances:
            return []
        now = utcnow()
        refs = [secrets.token_urlsafe(18) for _ in instances]
        session.execute(delete(DmObjectRow).where(DmObjectRow.expires_at <= now))  # type: ignore[arg-type]
        for ref, instance in zip(refs, instances, strict=True):
            session.add(DmObjectRow(ref=ref, dev_id=dev_id, client_uri=instance.client_uri,
                                    cv=instance.cv or "", body=dump_instances([instance]).decode("utf-8"),
                                    expires_at=now + self._object_ttl))
        return refs

    def finish(self, response: Response, *, session_ref: str | None, dev_id: str | None,
               request_id: str | None = None) -> DeviceRow:
        """Take package 3: with BootstrapComplete and no failed status, the device is bootstrapped.

        Raises:
            SessionInvalid: The session reference is missing, forged, or for another device.
            SessionExpired: It expired; the device starts again with package 1.
            PackageError: No BootstrapComplete alert, or a command failed.
        """
        ref = self._sessions.verify(session_ref)
        if dev_id is not None and dev_id != ref.dev_id:
            raise SessionInvalid("the session reference belongs to another DevID", field="OMADM-DevID")
        failed = response.failures
        if failed:
            detail = ", ".join(f"{s.sc} {' '.join(s.uris)}".strip() for s in failed)
            raise PackageError("/Status", f"commands failed on the device ({detail}); it is not bootstrapped")
        if not response.bootstrap_complete:
            raise PackageError("/Alert", f"no {BOOTSTRAP_COMPLETE} alert; the device is not bootstrapped")
        device = self._enrollment.complete(ref.dev_id, ref.serial_hex, request_id=request_id)
        with self._db.session() as session:
            session.execute(delete(DmObjectRow).where(DmObjectRow.dev_id == ref.dev_id))  # type: ignore[arg-type]
        return device

    def published(self, ref: str, *, now: datetime | None = None) -> DmObjectRow:
        """MO data published for HGET under ``ref``.

        Raises:
            NotFound: No such reference, or it expired.
        """
        with self._db.session() as session:
            row = session.exec(select(DmObjectRow).where(DmObjectRow.ref == ref)).first()
        if row is None or row.expires_at <= (now or utcnow()):
            raise NotFound("no MO data under that reference (unknown, expired, or already applied)", field="ref")
        return row
