"""Admin accounts changed under the role rules, every change and refusal in the audit trail."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cryptography import x509
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bootstrap.auth import passwords, totp
from bootstrap.auth.principals import Principal
from bootstrap.errors import (
    Conflict,
    DmBootstrapError,
    InvalidRequest,
    PermissionDenied,
)
from bootstrap.services.admins._login import AdminLogins
from bootstrap.services.admins._model import (
    SECURITY_ADMIN,
    USERNAME,
    Actor,
    AdminInfo,
    T,
    _actor_name,
    _check_roles,
    _end_sessions,
    totp_path,
)
from bootstrap.services.audit import append_event
from bootstrap.store.models import AdminRow, utcnow
from pki.authority import fingerprint as cert_fingerprint


class AdminAccountService(AdminLogins):
    """Creates and changes admins under the role rules, and checks their logins."""

    def list_admins(self) -> list[AdminInfo]:
        """Every admin, by name."""
        with self._db.read_session() as session:
            rows = session.exec(select(AdminRow).order_by(col(AdminRow.username)))
            return [AdminInfo.of(r) for r in rows]

    def get(self, username: str) -> AdminInfo:
        """One admin.

        Raises:
            NotFound: no admin of that name.
        """
        with self._db.read_session() as session:
            return AdminInfo.of(self._row(session, username))

    def by_id(self, admin_id: int) -> AdminInfo | None:
        """The admin with database id ``admin_id``, if it exists."""
        with self._db.read_session() as session:
            row = session.get(AdminRow, admin_id)
            return AdminInfo.of(row) if row else None

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
        hashed = self._new_password_hash(password)

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
        hashed = self._new_password_hash(password)

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

    def _new_password_hash(self, password: str) -> str:
        """The scrypt hash of a new password, which must meet the password policy."""
        try:
            passwords.check_password_policy(password)
        except ValueError as exc:
            raise InvalidRequest(str(exc), field="password") from None
        return passwords.hash_password(password, self._cost)

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
