"""The DM 2.0 bootstrap exchange as a use case: package 1 in, package 2 out; package 3 in, END out.

:class:`Dm2BootstrapService` sits on the enrollment service (which authenticates the
device, issues its certificate, audits the attempt and fills the
:class:`~bootstrap.dm.content.BootstrapContent`) and adds what is DM 2.0:

- the specification's flow (profiles with ``delivery = "hget"``, the default): package 2
  is one HGET per MO instance - the trust MO and the DMAcc from our own data endpoint
  (``/dm/objects/<capability>``), the profile's other MOs from its data repository when
  it names one - and a CONT to ``/dm/bootstrap/<signed reference>``; package 3 posted
  there reports one status per command; the device is then "delivered" and gets the
  last package 2, ``{"CMD": [["END"]]}``. It is "bootstrapped" when its DM server
  reports the BootstrapComplete alert of its first session (:meth:`bootstrap_complete`);
- ours, for profiles with ``delivery = "inline"``: PUTs with the data and END, the
  reference in the ``OMADM-Session`` header, and BootstrapComplete in package 3.

Without a CSR in package 1 (the specification's package 1 has none) the service
generates the key when the profile allows it (``server_keygen``); the key travels only
in the encrypted, single-use HGET object of the DMAcc (``Auth/Trsp/Secret``).

No state is kept in a process (DM-SYS-001): the session reference is signed, and
published MO data is in the database (``dm_object``, encrypted), readable by any replica.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlmodel import Session, select

from bootstrap.auth.attestation import Evidence
from bootstrap.auth.http_auth import DIGEST_KEY_PATH, NonceSigner
from bootstrap.dm.content import BootstrapContent
from bootstrap.dm.ddf import DdfRegistry
from bootstrap.dm.mo import DMACC_1_2, TRUST_1_0, MoInstance, dump_instances
from bootstrap.dm.package import (
    BOOTSTRAP_COMPLETE,
    BootstrapServer,
    Command,
    Cont,
    End,
    Hget,
    Initiation,
    PackageError,
    Put,
    Response,
    bootstrap_instances,
    declared_json,
    encode_request,
    hget_url,
)
from bootstrap.dm.session import SessionInvalid, SessionSigner
from bootstrap.errors import InvalidRequest
from bootstrap.secrets.base import SecretStore
from bootstrap.secrets.shared_keys import shared_key
from bootstrap.services.audit import append_event
from bootstrap.services.dm2_objects import OBJECT_TTL, ObjectStore, Published
from bootstrap.store.db import Database
from bootstrap.store.models import DeviceRow, EnrollmentTokenRow, utcnow
from pki.authority import IssuedCertificate

__all__ = ["BOOTSTRAP_PATH", "OBJECT_TTL", "OBJECTS_PATH", "Dm2BootstrapService", "EnrollmentPort", "Package2"]

#: Ours: the path of the DM 2.0 bootstrap endpoint (package 1; CONT URIs are below it).
BOOTSTRAP_PATH = "/dm/bootstrap"
#: Ours: our own data repository endpoint (HGET ServerURIs, and the source configured repositories fetch from).
OBJECTS_PATH = "/dm/objects"


class _Outcome(Protocol):
    @property
    def issued(self) -> IssuedCertificate: ...

    @property
    def content(self) -> BootstrapContent: ...

    @property
    def profile(self) -> Any: ...


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
    """The answer to package 1: the body, and (inline flow only) the session reference header."""

    body: bytes
    session: str | None
    dev_id: str
    serial_hex: str


def _generated_request(dev_id: str) -> tuple[bytes, bytes]:
    """A P-256 key made here and a CSR for ``dev_id`` signed by it: (CSR DER, PKCS#8 DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dev_id)]))
           .sign(key, hashes.SHA256()))
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    return csr.public_bytes(serialization.Encoding.DER), pkcs8


class Dm2BootstrapService:
    """Runs the DM 2.0 bootstrap exchange for one device at a time, on any replica."""

    def __init__(self, enrollment: EnrollmentPort, database: Database, sessions: SessionSigner,
                 ddfs: DdfRegistry, *, public_url: str, server_certificate: Callable[[], bytes] | None = None,
                 objects: ObjectStore | None = None, store: SecretStore | None = None) -> None:
        self._enrollment = enrollment
        self._db = database
        self._sessions = sessions
        self._ddfs = ddfs
        self._public_url = public_url.rstrip("/")
        self._server_certificate = server_certificate
        self._objects = objects or ObjectStore(database)
        self._store = store
        self._nonces: NonceSigner | None = None

    @property
    def ddfs(self) -> DdfRegistry:
        return self._ddfs

    @property
    def nonces(self) -> NonceSigner:
        """The HTTP Digest nonce signer (key at KV ``digest/key``, shared by every replica)."""
        if self._nonces is None:
            if self._store is None:
                raise TypeError("HTTP Digest needs the secret store")
            self._nonces = NonceSigner(shared_key(self._store, DIGEST_KEY_PATH))
        return self._nonces

    def digest_method(self, dev_id: str) -> str:
        """Which verifier a Digest password is for: ``token`` when an unused token is bound to
        ``dev_id`` (only DevID-bound tokens work with Digest), else ``group-key``."""
        with self._db.session() as session:
            pending = session.exec(select(EnrollmentTokenRow.id).where(
                EnrollmentTokenRow.dev_id == dev_id, EnrollmentTokenRow.used_at == None,  # noqa: E711 - SQL
                EnrollmentTokenRow.expires_at > utcnow())).first()
        return "token" if pending is not None else "group-key"

    @property
    def bootstrap_uri(self) -> str:
        """Where devices bootstrap (DMAcc ``Auth/Bootstrap/ServerURI``)."""
        return self._public_url + BOOTSTRAP_PATH

    def start(self, initiation: Initiation, evidence: Evidence, *, request_id: str | None = None) -> Package2:
        """Enroll the device of package 1 and build its package 2.

        Raises:
            AuthenticationFailed, PermissionDenied, InvalidRequest, PkiError: From the
                enrollment (each attempt is audited there).
            InvalidRequest: No CSR, and the profile does not generate keys.
            PackageBuildError: The content does not make a valid package (a configuration fault).
        """
        built: list[Package2] = []
        csr, generated = (initiation.csr, None) if initiation.csr is not None else _generated_request(initiation.dev_id)

        def render(session: Session, outcome: EnrollmentOutcome) -> None:
            # Runs inside the enrollment transaction: if the package cannot be built,
            # the certificate is not recorded and the token is not spent.
            content = outcome.content
            if generated is not None:
                if not getattr(outcome.profile, "server_keygen", False):
                    raise InvalidRequest(f"package 1 carries no CSR (ext-dmboot.CSR) and enrollment profile "
                                         f"{outcome.profile.name!r} does not generate device keys", field="CSR")
                content = replace(content, private_key_der=generated)
            bootstrap = BootstrapServer(self.bootstrap_uri, self._bootstrap_certificate(content))
            instances = bootstrap_instances(content, initiation.declared_moids, self._ddfs,
                                            ddf_base_url=self._public_url, bootstrap=bootstrap)
            serial = outcome.issued.serial_hex
            if content.delivery == "inline":
                built.append(Package2(encode_request([*(Put(i) for i in instances), End()]),
                                      self._sessions.issue(initiation.dev_id, serial), initiation.dev_id, serial))
                return
            commands = self._hgets(session, content, instances)
            reference = self._sessions.issue(initiation.dev_id, serial, hgets=len(commands))
            commands.append(Cont(f"{self.bootstrap_uri}/{reference}"))
            built.append(Package2(encode_request(commands), None, initiation.dev_id, serial))

        self._enrollment.enroll(
            initiation.dev_id, evidence, csr, declared_mos=declared_json(initiation.mos),
            features=dict(initiation.features), channel="dm2", request_id=request_id, finish=render,
        )
        return built[-1]  # the work runs again when its batch's commit fails: the last run is the one committed

    def _bootstrap_certificate(self, content: BootstrapContent) -> bytes:
        """ServerPubKey: our TLS certificate; without one (in-process use), the anchor the device trusts."""
        if self._server_certificate is not None:
            return self._server_certificate()
        return content.certificate_chain[-1]

    def _hgets(self, session: Session, content: BootstrapContent, instances: Sequence[MoInstance]) -> list[Command]:
        """One HGET per instance. The trust MO and the DMAcc (our credentials, perhaps a private key)
        come from our own endpoint, over the TLS session the device already trusts; other MOs from
        the profile's data repository, which the device authenticates with the trust MO."""
        self._objects.purge_expired(session)
        repository = content.data_repository_urls[0] if content.data_repository_urls else None
        commands: list[Command] = []
        for instance in instances:
            capability = self._objects.publish(session, content.dev_id, instance.client_uri, dump_instances([instance]))
            own = instance.moid in (TRUST_1_0, DMACC_1_2) or repository is None
            url = f"{self._public_url}{OBJECTS_PATH}/{capability}" if own else hget_url(repository or "", capability)
            commands.append(Hget(url))
        return commands

    def resume(self, response: Response, *, reference: str, dev_id: str | None,
               request_id: str | None = None) -> bytes:
        """Package 3 posted to the CONT URI: record what was delivered; return the last package 2 (END).

        Every HGET reported 2xx: the device is "delivered". A BootstrapComplete alert here
        (ours: the specification sends it to the DM server) also marks it bootstrapped.

        Raises:
            SessionInvalid, SessionExpired: The reference in the URI is forged, for another
                DevID, or expired.
            PackageError: Fewer statuses than package 2 had HGETs.
        """
        ref = self._sessions.verify(reference)
        if dev_id is not None and dev_id != ref.dev_id:
            raise SessionInvalid("the CONT reference belongs to another DevID", field="OMADM-DevID")
        wanted = ref.hgets or 0
        if len(response.statuses) < wanted:
            raise PackageError("/Status", f"package 2 had {wanted} HGET commands; {len(response.statuses)} "
                                          "statuses came back (one per command, in order)")
        failed = [s for s in response.statuses[:wanted] if not s.ok]
        with self._db.session() as session:
            self._objects.forget(session, ref.dev_id)
            device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == ref.dev_id)).first()
            current = device is not None and device.current_serial == ref.serial_hex and device.status == "enrolled"
            outcome = "failure" if failed or not current else "success"
            if outcome == "success" and device is not None:
                device.status = "delivered"
                device.updated_at = utcnow()
                session.add(device)
            detail: dict[str, Any] = {"serial": ref.serial_hex, "statuses": [s.sc for s in response.statuses][:32],
                                      "locations": [u for s in response.statuses for u in s.uris][:32]}
            append_event(session, actor=f"device:{ref.dev_id}"[:128], action="device.deliver", outcome=outcome,
                         target=ref.dev_id, request_id=request_id, detail=detail)
        if response.bootstrap_complete and outcome == "success":
            self._enrollment.complete(ref.dev_id, ref.serial_hex, request_id=request_id)
        return encode_request([End()])

    def finish(self, response: Response, *, session_ref: str | None, dev_id: str | None,
               request_id: str | None = None) -> DeviceRow:
        """Ours (inline flow): package 3 with BootstrapComplete and no failed status -> bootstrapped.

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
            self._objects.forget(session, ref.dev_id)
        return device

    def bootstrap_complete(self, dev_id: str, *, serial_hex: str | None = None,
                           request_id: str | None = None, actor: str | None = None) -> DeviceRow:
        """The device's DM server saw BootstrapComplete in package 1 of the device's first session.

        ``serial_hex`` (the certificate the device authenticated with) defaults to its current one.

        Raises:
            NotFound, PermissionDenied, Conflict: From the enrollment service.
        """
        with self._db.session() as session:
            device = session.exec(select(DeviceRow).where(DeviceRow.dev_id == dev_id)).first()
            if serial_hex is None:
                serial_hex = (device.current_serial if device is not None else None) or ""
            if actor is not None:  # who reported it; the enrollment service audits the state change
                append_event(session, actor=actor[:128], action="device.bootstrap-complete-report", outcome="success",
                             target=dev_id[:128], request_id=request_id, detail={"serial": serial_hex[:64]})
        return self._enrollment.complete(dev_id, serial_hex, request_id=request_id)

    def published(self, capability: str) -> Published:
        """Take the MO data published for HGET under ``capability`` (single use).

        Raises:
            NotFound: No such object, it expired, or it was fetched already.
        """
        return self._objects.take(capability)
