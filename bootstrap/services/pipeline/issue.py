"""The one issuance path: claim -> CSR policy -> sign -> record certificate + audit.

Every channel (DM 2.0, the JSON enroll API, EST, DM 1.x, ``cert issue`` and the
admin API) calls :meth:`Pipeline.issue`; the factory's batches are its bulk
entry (they sign with :func:`sign` and record with :func:`certificate_values`,
500 devices per transaction). A channel is a codec around it: it parses the
request, binds an authorizer (:mod:`bootstrap.services.pipeline.authorizers`) to
the request's evidence, and renders the answer.

The request's work - the authorizer's claim (a token, a nonce), the CSR checks,
the signature, the certificate row, its audit event and whatever the channel
adds (device update, package 2) - runs in a transaction shared with concurrent
requests (:mod:`bootstrap.services.pipeline.group_commit`); its writes are
queued to that transaction's commit, where the batch's rows of each kind go in
one statement. The certificate is returned only after that transaction committed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import Table
from sqlmodel import Session

from bootstrap import metrics
from bootstrap.services.audit import append_event
from bootstrap.services.authorities import AuthorityDirectory
from bootstrap.services.pipeline.deferred import defer_insert, pending
from bootstrap.services.pipeline.group_commit import GroupCommitter
from bootstrap.services.pipeline.options import Authorize, SignOptions
from bootstrap.services.pipeline.prefetch import Needs, prefetch
from bootstrap.services.pipeline.supersede import SWEEP_EVERY, mark_superseded
from bootstrap.store.models import CertificateRow, utcnow
from pki.authority import CertificateAuthority, IssuedCertificate
from pki.csr import CsrInfo, check_request, parse_csr
from pki.errors import PkiError, ProfileError
from pki.identity import dev_id_from_uri
from pki.keys import PublicKey
from pki.profiles import LEAF_PROFILES, CertificateProfile, Names, get_profile, with_policies

__all__ = ["Issued", "Pipeline", "certificate_row", "certificate_values", "leaf_profile", "sign"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_CERTIFICATES: Table = CertificateRow.__table__  # type: ignore[attr-defined]
#: The channel's own work inside the request's savepoint, after the certificate is recorded.
After = Callable[[Session, SignOptions, "IssuedCertificate | None"], T]


@dataclass(frozen=True)
class Issued(Generic[T]):
    """What one request produced, committed."""

    options: SignOptions
    certificate: IssuedCertificate | None
    result: T


class Pipeline:
    """Authorize, check, sign and record - for every channel, in shared transactions."""

    def __init__(self, committer: GroupCommitter, authorities: AuthorityDirectory) -> None:
        self._committer = committer
        committer.prepare = prefetch
        self._authorities = authorities
        #: Revokes superseded certificates whose grace is over (set by the runtime); run lazily.
        self.sweeper: Callable[[], object] | None = None
        self._next_sweep = 0.0
        self._sweep_lock = threading.Lock()

    @property
    def committer(self) -> GroupCommitter:
        return self._committer

    def issue(self, authorize: Authorize, csr: bytes | str | CsrInfo | None, *, request_id: str | None = None,
              after: After[T] | None = None, now: datetime | None = None, needs: Needs | None = None) -> Issued[T]:
        """Run one request through the pipeline; return once it is committed.

        ``needs``: the device and token the authorizer will read, read for the whole
        batch in one statement each (:mod:`bootstrap.services.pipeline.prefetch`).

        ``csr`` bytes are parsed (and their signature verified) before the request
        joins a transaction; a parse error is raised only after the authorizer ran,
        so a request with bad evidence is refused for its evidence first. None:
        the request is authorized and recorded without a certificate (DM 1.x
        without a CSR).

        Raises:
            AuthenticationFailed, PermissionDenied, InvalidRequest: from the authorizer.
            PkiError: the request or profile is refused. Nothing is consumed.
        """
        parsed: CsrInfo | PkiError | None
        with self._committer.announce():
            try:
                parsed = parse_csr(csr) if isinstance(csr, bytes | str) else csr
            except PkiError as exc:
                parsed = exc

            def work(session: Session) -> Issued[T]:
                moment = now or utcnow()
                options = authorize(session, moment)
                issued = None
                if parsed is not None:
                    if isinstance(parsed, PkiError):
                        raise parsed
                    issued = self._sign_and_record(session, parsed, options, request_id, moment)
                result = after(session, options, issued) if after is not None else None
                return Issued(options, issued, result)  # type: ignore[arg-type]

        done = self._committer.run(work, hint=needs)
        self._maybe_sweep()
        return done

    def _maybe_sweep(self) -> None:
        """Sweep superseded certificates, at most every SWEEP_EVERY seconds per process."""
        if self.sweeper is None or time.monotonic() < self._next_sweep or not self._sweep_lock.acquire(False):
            return
        try:
            self._next_sweep = time.monotonic() + SWEEP_EVERY
            self.sweeper()
        except Exception:  # housekeeping: the next sweep tries again
            log.warning("superseded-certificate sweep failed", exc_info=True)
        finally:
            self._sweep_lock.release()

    def _sign_and_record(self, session: Session, info: CsrInfo, options: SignOptions, request_id: str | None,
                         now: datetime) -> IssuedCertificate:
        profile = with_policies(leaf_profile(options.certificate_profile), options.policies)
        if options.key_policy is not None:
            options.key_policy.check(info.public_key)
        ca, authority = self._authorities.active(session)
        names = check_request(info, profile, options.names)
        issued = sign(authority, info.public_key, names, profile, options.validity, now)
        values = certificate_values(issued, authority_id=ca.id, key_type=info.key_type.value,
                                    actor=options.actor, request_id=request_id, now=now, names=names)
        # Inserted at the commit with the batch's other certificates, in one statement.
        defer_insert(session, _CERTIFICATES, values)
        append_event(session, actor=options.actor, action="cert.issue", outcome="success", target=issued.serial_hex,
                     request_id=request_id,
                     detail={"profile": issued.profile, "subject": values["subject"],
                             "fingerprint": issued.fingerprint})
        if options.supersede_grace is not None and options.dev_id is not None:
            mark_superseded(session, options.dev_id, issued.profile, issued.serial_hex, now, options.supersede_grace,
                            queued=pending(session, _CERTIFICATES))
        return issued


def leaf_profile(name: str) -> CertificateProfile:
    """The certificate profile ``name``, if it is one for leaf certificates.

    Raises:
        ProfileError: unknown, or a CA profile.
    """
    profile = get_profile(name)
    if profile.name not in LEAF_PROFILES:
        raise ProfileError(f"profile {profile.name} is for CA certificates; use one of"
                           f" {', '.join(sorted(LEAF_PROFILES))}", field="profile")
    return profile


def sign(authority: CertificateAuthority, public_key: PublicKey, names: Names, profile: CertificateProfile,
         validity: timedelta | None, now: datetime) -> IssuedCertificate:
    """Sign a leaf: the one place certificates of every channel are made (factory batches too)."""
    started = time.perf_counter()
    issued = authority.issue(public_key, names, profile, validity=validity, now=now)
    metrics.observe_issuance(profile.name, time.perf_counter() - started)
    return issued


def certificate_values(issued: IssuedCertificate, *, authority_id: int, key_type: str, actor: str,
                       request_id: str | None, now: datetime, names: Names | None = None) -> dict[str, Any]:
    """The ``certificate`` row of an issued certificate (see :func:`certificate_row`).

    ``names``: what it was signed with (its SAN is exactly their DNS names, IPs and
    URIs, in that order), so the extension need not be read back; else read from it.
    """
    cert = issued.certificate
    sans = _san_strings(cert) if names is None else (
        [f"dns:{n}" for n in names.dns] + [f"ip:{n}" for n in names.ips] + [f"uri:{n}" for n in names.uris])
    device_id = next((d for d in (dev_id_from_uri(n[4:]) for n in sans if n.startswith("uri:")) if d), None)
    return certificate_row(serial_hex=issued.serial_hex, authority_id=authority_id, profile=issued.profile,
                           subject=cert.subject.rfc4514_string(), common_name=_common_name(cert),
                           sans=json.dumps(sans), device_id=device_id, key_type=key_type,
                           not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                           fingerprint=issued.fingerprint, pem=issued.pem, actor=actor, request_id=request_id,
                           now=now)


def certificate_row(*, serial_hex: str, authority_id: int, profile: str, subject: str, common_name: str, sans: str,
                    device_id: str | None, key_type: str, not_before: datetime, not_after: datetime,
                    fingerprint: str, pem: str, actor: str, request_id: str | None, now: datetime) -> dict[str, Any]:
    """The ``certificate`` row every channel records (the factory's bulk insert too)."""
    return {"serial_hex": serial_hex, "authority_id": authority_id, "profile": profile, "subject": subject,
            "common_name": common_name, "sans": sans, "device_id": device_id, "key_type": key_type,
            "not_before": not_before, "not_after": not_after, "status": "valid", "revoked_at": None,
            "revocation_reason": None, "fingerprint": fingerprint, "pem": pem, "requested_by": actor,
            "request_id": request_id, "created_at": now, "superseded_by": None, "supersede_at": None,
            "first_used_at": None}


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _san_strings(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return (
        [f"dns:{n}" for n in san.get_values_for_type(x509.DNSName)]
        + [f"ip:{n}" for n in san.get_values_for_type(x509.IPAddress)]
        + [f"uri:{n}" for n in san.get_values_for_type(x509.UniformResourceIdentifier)]
    )
