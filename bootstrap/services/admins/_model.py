"""Admins as the rest of the service sees them, and the small rules shared by logins and changes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlmodel import Session, select

from bootstrap.auth.permissions import ROLES
from bootstrap.auth.principals import Principal
from bootstrap.errors import (
    InvalidRequest,
)
from bootstrap.store.models import AdminRow, ConsoleSessionRow

SECURITY_ADMIN = "security-admin"
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
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


def _end_sessions(session: Session, row: AdminRow) -> None:
    for live in session.exec(select(ConsoleSessionRow).where(ConsoleSessionRow.admin_id == row.id)):
        session.delete(live)
