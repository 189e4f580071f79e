"""Human admins: accounts, roles, passwords, TOTP and client certificates.

Role rules (DM-AZ-001, enforced here, whoever calls):

- changing anyone's roles, or creating and disabling admins, needs ``roles:manage``;
  the CLI on the server is the operator of last resort and passes a plain actor
  string instead of a principal (that is how the first admin is created);
- nobody adds a role to themselves;
- the last enabled security-admin cannot lose that role or be disabled;
- every change, and every refused attempt, is in the audit trail.

Passwords are scrypt hashes (:mod:`bootstrap.auth.passwords`); TOTP secrets live
in the secret store at ``admins/<username>/totp``, never in the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bootstrap.auth import passwords, totp
from bootstrap.auth.permissions import ROLES
from bootstrap.auth.principals import Principal
from bootstrap.auth.throttle import LoginThrottle
from bootstrap.errors import (
    AuthenticationFailed,
    Conflict,
    DmBootstrapError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    TooManyAttempts,
)
from bootstrap.secrets.base import SecretStore
from bootstrap.services.audit import append_event
from bootstrap.store.db import Database
from bootstrap.store.models import AdminRow, CertificateRow, ConsoleSessionRow, utcnow
from pki.authority import fingerprint as cert_fingerprint

__all__ = ["SECURITY_ADMIN", "AdminInfo", "AdminAccountService", "Actor", "LoginResult", "totp_path"]

SECURITY_ADMIN = "security-admin"
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: Who changes something: an authenticated principal, or the CLI operator on the server (a string).
Actor = Principal | str
T = TypeVar("T")


def totp_path(username: str) -> str:
    """Where the TOTP secret of ``username`` lives in the secret store (KV)."""
    return f"admins/{username}/totp"


@dataclass(frozen=True)
class AdminInfo:
    """An admin as the rest of the service sees it: no password hash, no secrets."""

    id: int
    username: str
    roles: tuple[str, ...]
    totp_enabled: bool
    disabled: bool
    cert_fingerprint: str | None
    created_by: str
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, row: AdminRow) -> AdminInfo:
        return cls(id=row.id or 0, username=row.username, roles=tuple(sorted(row.roles)),
                   totp_enabled=row.totp_enabled, disabled=row.disabled, cert_fingerprint=row.cert_fingerprint,
                   created_by=row.created_by, created_at=row.created_at, last_login_at=row.last_login_at)

    @property
    def principal(self) -> Principal:
        """The principal this admin acts as."""
        return Principal.with_roles(self.username, "admin", frozenset(self.roles))

    def as_json(self) -> dict[str, object]:
        return {"username": self.username, "roles": list(self.roles), "totp_enabled": self.totp_enabled,
                "disabled": self.disabled, "cert_fingerprint": self.cert_fingerprint,
                "created_by": self.created_by, "created_at": self.created_at.isoformat(),
                "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None}


@dataclass(frozen=True)
class LoginResult:
    """A password (or certificate) accepted; ``needs_totp`` says whether a code is still due."""

    admin: AdminInfo
    needs_totp: bool


def _actor_name(actor: Actor) -> str:
    return actor.actor if isinstance(actor, Principal) else actor


def _check_roles(roles: Iterable[str]) -> list[str]:
    wanted = sorted(set(roles))
    unknown = [r for r in wanted if r not in ROLES]
    if unknown or not wanted:
        raise InvalidRequest(f"unknown or missing roles {unknown}; known: {', '.join(sorted(ROLES))}",
                             field="roles")
    return wanted


class AdminAccountService:
    """Creates and changes admins under the role rules, and checks their logins."""

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

    # -- reading ---------------------------------------------------------------------

    def list_admins(self) -> list[AdminInfo]:
        """Every admin, by name."""
        with self._db.session() as session:
            rows = session.exec(select(AdminRow).order_by(col(AdminRow.username)))
            return [AdminInfo.of(r) for r in rows]

    def get(self, username: str) -> AdminInfo:
        """One admin.

        Raises:
            NotFound: no admin of that name.
        """
        with self._db.session() as session:
            return AdminInfo.of(self._row(session, username))

    def by_id(self, admin_id: int) -> AdminInfo | None:
        """The admin with database id ``admin_id``, if it exists."""
        with self._db.session() as session:
            row = session.get(AdminRow, admin_id)
            return AdminInfo.of(row) if row else None

    # -- changing --------------------------------------------------------------------

    def create(self, username: str, password: str, roles: Iterable[str], *, actor: Actor,
               request_id: str | None = None) -> AdminInfo:
        """A new admin with ``roles``.

        Raises:
            InvalidRequest: bad name, roles or password.
            PermissionDenied: ``actor`` lacks ``roles:manage``.
            Conflict: the name is taken.
        """
        if not USERNAME.match(username):
            raise InvalidRequest("usernames are 1-64 of a-z 0-9 . _ -, starting with a letter or digit",
                                 field="username")
        wanted = _check_roles(roles)
        try:
            passwords.check_password_policy(password)
        except ValueError as exc:
            raise InvalidRequest(str(exc), field="password") from None
        hashed = passwords.hash_password(password, self._cost)

        def change(session: Session) -> AdminInfo:
            self._require_manage(actor)
            if session.exec(select(AdminRow).where(AdminRow.username == username)).first():
                raise Conflict(f"an admin named {username!r} exists already", field="username")
            row = AdminRow(username=username, password_hash=hashed, roles=wanted, created_by=_actor_name(actor))
            session.add(row)
            session.flush()
            return AdminInfo.of(row)

        return self._audited("admin.create", username, actor, request_id, {"roles": wanted}, change)

    def set_roles(self, username: str, roles: Iterable[str], *, actor: Actor,
                  request_id: str | None = None) -> AdminInfo:
        """Replace the roles of ``username`` (the role rules in the module docstring apply)."""
        wanted = _check_roles(roles)

        def change(session: Session) -> AdminInfo:
            row = self._row(session, username, lock=True)
            self._change_roles(session, row, wanted, actor)
            return AdminInfo.of(row)

        return self._audited("admin.roles.set", username, actor, request_id, {"roles": wanted}, change)

    def grant(self, username: str, role: str, *, actor: Actor, request_id: str | None = None) -> AdminInfo:
        """Add ``role`` to ``username``."""
        _check_roles([role])

        def change(session: Session) -> AdminInfo:
            row = self._row(session, username, lock=True)
            self._change_roles(session, row, sorted({*row.roles, role}), actor)
            return AdminInfo.of(row)

        return self._audited("admin.role.grant", username, actor, request_id, {"role": role}, change)

    def revoke_role(self, username: str, role: str, *, actor: Actor, request_id: str | None = None) -> AdminInfo:
        """Remove ``role`` from ``username`` (an admin may be left with no role: it can then do nothing)."""

        def change(session: Session) -> AdminInfo:
            row = self._row(session, username, lock=True)
            if role not in row.roles:
                raise InvalidRequest(f"{username} does not have the role {role!r}", field="role")
            self._change_roles(session, row, sorted(set(row.roles) - {role}), actor, allow_empty=True)
            return AdminInfo.of(row)

        return self._audited("admin.role.revoke", username, actor, request_id, {"role": role}, change)

    def set_disabled(self, username: str, disabled: bool, *, actor: Actor,
                     request_id: str | None = None) -> AdminInfo:
        """Disable (or enable again) ``username``; disabling ends the admin's console sessions."""

        def change(session: Session) -> AdminInfo:
            self._require_manage(actor)
            row = self._row(session, username, lock=True)
            if disabled and not row.disabled:
                self._guard_last_security_admin(session, row, set(row.roles), disabled=True)
                _end_sessions(session, row)
            row.disabled = disabled
            row.updated_at = utcnow()
            session.add(row)
            return AdminInfo.of(row)

        action = "admin.disable" if disabled else "admin.enable"
        return self._audited(action, username, actor, request_id, {}, change)

    def set_password(self, username: str, password: str, *, actor: Actor, request_id: str | None = None) -> None:
        """Set a new password: admins change their own; ``roles:manage`` changes anyone's."""
        try:
            passwords.check_password_policy(password)
        except ValueError as exc:
            raise InvalidRequest(str(exc), field="password") from None
        hashed = passwords.hash_password(password, self._cost)

        def change(session: Session) -> None:
            if not (isinstance(actor, Principal) and actor.kind == "admin" and actor.name == username):
                self._require_manage(actor)
            row = self._row(session, username, lock=True)
            row.password_hash = hashed
            row.updated_at = utcnow()
            session.add(row)
            _end_sessions(session, row)

        self._audited("admin.password.set", username, actor, request_id, {}, change)

    def enable_totp(self, username: str, *, actor: Actor, request_id: str | None = None) -> tuple[str, str]:
        """Give ``username`` a new TOTP secret; returns (secret, otpauth URI), shown once.

        From then on, console logins of that admin need a code.
        """
        secret = totp.new_secret()

        def change(session: Session) -> tuple[str, str]:
            if not (isinstance(actor, Principal) and actor.kind == "admin" and actor.name == username):
                self._require_manage(actor)
            row = self._row(session, username, lock=True)
            self._store.put(totp_path(username), {"secret": secret})
            row.totp_enabled, row.totp_last_step, row.updated_at = True, None, utcnow()
            session.add(row)
            return secret, totp.provisioning_uri(secret, username, self._issuer)

        return self._audited("admin.totp.enable", username, actor, request_id, {}, change)

    def disable_totp(self, username: str, *, actor: Actor, request_id: str | None = None) -> None:
        """Stop asking ``username`` for TOTP codes and overwrite the stored secret."""

        def change(session: Session) -> None:
            self._require_manage(actor)
            row = self._row(session, username, lock=True)
            self._store.put(totp_path(username), {"secret": ""})
            row.totp_enabled, row.totp_last_step, row.updated_at = False, None, utcnow()
            session.add(row)

        self._audited("admin.totp.disable", username, actor, request_id, {}, change)

    def bind_certificate(self, username: str, pem: bytes | None, *, actor: Actor,
                         request_id: str | None = None) -> str | None:
        """Let ``username`` log in with this client certificate (None unbinds); returns its fingerprint."""
        digest = None
        if pem is not None:
            try:
                digest = cert_fingerprint(x509.load_pem_x509_certificate(pem))
            except ValueError:
                raise InvalidRequest("not a PEM certificate", field="certificate") from None

        def change(session: Session) -> str | None:
            self._require_manage(actor)
            row = self._row(session, username, lock=True)
            row.cert_fingerprint, row.updated_at = digest, utcnow()
            session.add(row)
            session.flush()
            return digest

        action = "admin.cert.bind" if digest else "admin.cert.unbind"
        try:
            return self._audited(action, username, actor, request_id, {"fingerprint": digest}, change)
        except IntegrityError:
            raise Conflict("that certificate is bound to another admin already", field="certificate") from None

    # -- logging in ------------------------------------------------------------------

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

    # -- internals -------------------------------------------------------------------

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

    @staticmethod
    def _require_manage(actor: Actor) -> None:
        if isinstance(actor, Principal) and not actor.can("roles:manage"):
            raise PermissionDenied(f"{actor.actor} lacks the permission 'roles:manage'")

    def _change_roles(self, session: Session, row: AdminRow, wanted: list[str], actor: Actor, *,
                      allow_empty: bool = False) -> None:
        self._require_manage(actor)
        if not wanted and not allow_empty:
            raise InvalidRequest("an admin needs at least one role", field="roles")
        added = set(wanted) - set(row.roles)
        if added and isinstance(actor, Principal) and actor.kind == "admin" and actor.name == row.username:
            raise PermissionDenied(f"nobody can grant themselves a role ({', '.join(sorted(added))})")
        self._guard_last_security_admin(session, row, set(wanted), disabled=row.disabled)
        row.roles = wanted
        row.updated_at = utcnow()
        session.add(row)

    @staticmethod
    def _guard_last_security_admin(session: Session, row: AdminRow, roles_after: set[str], *,
                                   disabled: bool) -> None:
        was = SECURITY_ADMIN in row.roles and not row.disabled
        stays = SECURITY_ADMIN in roles_after and not disabled
        if not was or stays:
            return
        # Lock every admin row: two admins demoting each other at once must not both succeed.
        others = session.exec(select(AdminRow).where(AdminRow.id != row.id).with_for_update()).all()
        if not any(SECURITY_ADMIN in o.roles and not o.disabled for o in others):
            raise Conflict(f"{row.username} is the last security-admin; make another admin security-admin first",
                           field="roles")

    def _audited(self, action: str, target: str, actor: Actor, request_id: str | None,
                 detail: dict[str, object], change: Callable[[Session], T]) -> T:
        """Run ``change`` and its success event in one transaction; a refusal is recorded too."""
        try:
            with self._db.session() as session:
                result = change(session)
                append_event(session, actor=_actor_name(actor), action=action, outcome="success", target=target,
                             request_id=request_id, detail=detail)
            return result
        except DmBootstrapError as exc:
            self._event(action, "failure", target, _actor_name(actor), request_id,
                        {**detail, "error": type(exc).__name__, "reason": exc.message})
            raise

    def _event(self, action: str, outcome: str, target: str | None, actor: str, request_id: str | None,
               detail: dict[str, object]) -> None:
        with self._db.session() as session:
            append_event(session, actor=actor, action=action, outcome=outcome, target=target,
                         request_id=request_id, detail=detail)


def _end_sessions(session: Session, row: AdminRow) -> None:
    for live in session.exec(select(ConsoleSessionRow).where(ConsoleSessionRow.admin_id == row.id)):
        session.delete(live)

