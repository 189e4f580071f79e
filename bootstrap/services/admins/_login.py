"""Admin logins: password (scrypt), client certificate, TOTP; throttled per name and audited."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from sqlmodel import Session, select

from bootstrap.auth import passwords, totp
from bootstrap.auth.throttle import LoginThrottle
from bootstrap.errors import (
    AuthenticationFailed,
    NotFound,
    TooManyAttempts,
)
from bootstrap.secrets.base import SecretStore
from bootstrap.services.admins._model import AdminInfo, LoginResult, totp_path
from bootstrap.services.audit import append_event
from bootstrap.store.db import Database
from bootstrap.store.models import AdminRow, CertificateRow, utcnow
from pki.authority import fingerprint as cert_fingerprint


class AdminLogins:
    """Checks admins' logins; the base of :class:`~bootstrap.services.admins.AdminAccountService`."""

    def __init__(self, database: Database, store: SecretStore, *, issuer: str = "dm-bootstrap",
                 cost: passwords.ScryptCost = passwords.DEFAULT_COST) -> None:
        self._db = database
        self._store = store
        self._issuer = issuer
        self._cost = cost
        self.throttle = LoginThrottle(database)
        self._dummy: str | None = None

    @property
    def _dummy_hash(self) -> str:
        # Verifying against this when the name is unknown keeps the timing the same.
        if self._dummy is None:
            self._dummy = passwords.hash_password("dummy password, never valid", self._cost)
        return self._dummy

    def login(self, username: str, password: str, *, request_id: str | None = None) -> LoginResult:
        """Check a username and password (throttled per name; audited either way).

        Raises:
            TooManyAttempts: the name is locked after repeated failures.
            AuthenticationFailed: wrong name or password, or a disabled admin (one message for all).
        """
        key = f"admin:{username.lower()[:64]}"
        self.throttle.attempt(key)  # counted before the hash: parallel guesses cannot outrun the lock
        with self._db.session() as session:
            row = session.exec(select(AdminRow).where(AdminRow.username == username)).first()
        # Unknown names cost the same hash, under the same bound on concurrent hashes.
        try:
            matched = passwords.verify_password(password, row.password_hash if row else self._dummy_hash)
        except passwords.HashingBusy:
            raise TooManyAttempts("too many logins at once; try again in a moment", retry_after=1) from None
        if row is None or not matched or row.disabled:
            reason = "unknown user" if row is None else "disabled" if row.disabled and matched else "bad password"
            self._event("admin.login", "failure", username, f"admin:{username}", request_id,
                        {"method": "password", "reason": reason})
            raise AuthenticationFailed("wrong username or password")
        if passwords.needs_rehash(row.password_hash, self._cost):
            self._rehash(row.username, password)
        if not row.totp_enabled:
            self._logged_in(row.username, "password", request_id)
        return LoginResult(AdminInfo.of(row), needs_totp=row.totp_enabled)

    def login_certificate(self, certificate: x509.Certificate, *, request_id: str | None = None,
                          now: datetime | None = None) -> LoginResult:
        """The admin whose bound client certificate this is (TLS has verified the chain).

        Raises:
            AuthenticationFailed: no enabled admin has it, or it is expired or revoked by us.
        """
        digest = cert_fingerprint(certificate)
        moment = now or utcnow()
        with self._db.session() as session:
            row = session.exec(select(AdminRow).where(AdminRow.cert_fingerprint == digest)).first()
            issued = session.exec(select(CertificateRow).where(CertificateRow.fingerprint == digest)).first()
        valid = certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc
        if row is None or row.disabled or not valid or (issued is not None and issued.status != "valid"):
            reason = ("unbound" if row is None else "disabled" if row.disabled else "expired" if not valid
                      else "revoked")
            self._event("admin.login", "failure", row.username if row else None, "admin:?", request_id,
                        {"method": "certificate", "fingerprint": digest, "reason": reason})
            raise AuthenticationFailed("this client certificate does not log anyone in")
        if not row.totp_enabled:
            self._logged_in(row.username, "certificate", request_id)
        return LoginResult(AdminInfo.of(row), needs_totp=row.totp_enabled)

    def verify_totp(self, username: str, code: str, *, request_id: str | None = None,
                    at: float | None = None) -> AdminInfo:
        """Check the second factor after a password; a code is accepted once.

        Raises:
            TooManyAttempts: too many wrong codes.
            AuthenticationFailed: wrong or reused code.
        """
        key = f"admin:{username.lower()[:64]}"
        self.throttle.attempt(key)
        with self._db.session() as session:
            row = self._row(session, username, lock=True)
            secret = self._store.get(totp_path(username))[0].get("secret", "") if row.totp_enabled else ""
            step = totp.verify(secret, code, at=at, after_step=row.totp_last_step) if secret else None
            if step is not None and not row.disabled:
                row.totp_last_step = step
                session.add(row)
        if step is None or row.disabled:
            self._event("admin.login", "failure", username, f"admin:{username}", request_id,
                        {"method": "totp", "reason": "bad or reused code"})
            raise AuthenticationFailed("wrong or already used code")
        self._logged_in(username, "password+totp", request_id)
        return AdminInfo.of(row)

    def logout(self, username: str, *, request_id: str | None = None) -> None:
        """Record a logout in the audit trail."""
        self._event("admin.logout", "success", username, f"admin:{username}", request_id, {})

    def _logged_in(self, username: str, method: str, request_id: str | None) -> None:
        self.throttle.success(f"admin:{username.lower()[:64]}")
        with self._db.session() as session:
            row = self._row(session, username)
            row.last_login_at = utcnow()
            session.add(row)
            append_event(session, actor=f"admin:{username}", action="admin.login", outcome="success",
                         target=username, request_id=request_id, detail={"method": method})

    def _rehash(self, username: str, password: str) -> None:
        hashed = passwords.hash_password(password, self._cost)
        with self._db.session() as session:
            row = self._row(session, username)
            row.password_hash = hashed
            session.add(row)

    @staticmethod
    def _row(session: Session, username: str, *, lock: bool = False) -> AdminRow:
        query = select(AdminRow).where(AdminRow.username == username)
        row = session.exec(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFound(f"no admin named {username!r}", field="username")
        return row

    def _event(self, action: str, outcome: str, target: str | None, actor: str, request_id: str | None,
               detail: dict[str, object]) -> None:
        with self._db.session() as session:
            append_event(session, actor=actor, action=action, outcome=outcome, target=target,
                         request_id=request_id, detail=detail)
