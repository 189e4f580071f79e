"""Who is calling: principals, the hash of an API token, and the permission check routes use.

API tokens look like ``dmb_<43 url-safe characters>`` (256 bits); only their
SHA-256 is stored. A request carries one as ``Authorization: Bearer <token>``.
Issuing, checking and revoking tokens is :mod:`bootstrap.services.tokens`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from bootstrap.auth.permissions import permissions_of
from bootstrap.errors import AuthenticationFailed, PermissionDenied

__all__ = ["TOKEN_PREFIX", "Principal", "hash_token", "require"]

TOKEN_PREFIX = "dmb_"  # noqa: S105 - a public prefix, not a secret


def hash_token(token: str) -> str:
    """SHA-256 hex of a bearer token (tokens have 256 bits: no salt or stretching needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    kind: str  # token | admin | station | device
    roles: frozenset[str] = frozenset()
    allowed_profiles: tuple[str, ...] = ()
    device_quota: int | None = None
    permissions: frozenset[str] = field(default=frozenset())

    @classmethod
    def with_roles(cls, name: str, kind: str, roles: frozenset[str], **extra: object) -> Principal:
        return cls(name=name, kind=kind, roles=roles, permissions=permissions_of(roles), **extra)  # type: ignore[arg-type]

    @property
    def actor(self) -> str:
        """How the audit trail names this principal."""
        return f"{self.kind}:{self.name}"

    def can(self, permission: str) -> bool:
        return permission in self.permissions


def require(principal: Principal | None, permission: str) -> Principal:
    """Return ``principal`` if it holds ``permission``; else raise (401 without one, 403 with)."""
    if principal is None:
        raise AuthenticationFailed("this endpoint needs credentials: Authorization: Bearer <API token>")
    if not principal.can(permission):
        raise PermissionDenied(f"{principal.actor} lacks the permission {permission!r}")
    return principal
