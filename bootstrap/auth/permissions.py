"""Roles and the permissions they grant: the one table every route consults.

DM-AZ-001: the right to manage access control (``roles:manage``) is separate
from every data permission and held only by security admins.
"""

from __future__ import annotations

__all__ = ["PERMISSIONS", "ROLES", "permissions_of"]

#: permission -> what it allows
PERMISSIONS: dict[str, str] = {
    "roles:manage": "create principals and API tokens, grant and revoke roles",
    "ca:read": "read CA certificates and settings",
    "ca:manage": "rotate CAs, manage trust anchors and manufacturer CAs",
    "config:read": "read DM servers, data repositories, enrollment profiles",
    "config:write": "create and change DM servers, data repositories, enrollment profiles",
    "devices:read": "read devices and their certificates",
    "devices:write": "register, block and re-admit devices; create enrollment tokens",
    "certs:read": "read issued certificates",
    "certs:issue": "issue certificates from CSRs",
    "certs:revoke": "revoke certificates",
    "factory:provision": "register devices and obtain credentials in batches (own profiles, quota)",
    "audit:read": "read and export the audit trail",
    "dm1:credentials": "read devices' DM 1.x session credentials (DM 1.x servers; every read is audited)",
    "devices:bootstrap-complete": "report a device's BootstrapComplete alert (DM 2.0 servers)",
}

#: role -> permissions
ROLES: dict[str, frozenset[str]] = {
    "security-admin": frozenset({"roles:manage", "ca:read", "ca:manage", "config:read", "devices:read",
                                 "certs:read", "certs:revoke", "audit:read"}),
    "provisioning-admin": frozenset({"ca:read", "config:read", "config:write", "devices:read", "devices:write",
                                     "certs:read", "certs:issue", "certs:revoke"}),
    "factory-line": frozenset({"ca:read", "factory:provision"}),
    "auditor": frozenset({"ca:read", "config:read", "devices:read", "certs:read", "audit:read"}),
    "dm-server": frozenset({"dm1:credentials", "devices:bootstrap-complete"}),
}


def permissions_of(roles: frozenset[str] | set[str] | list[str]) -> frozenset[str]:
    """Every permission the given roles grant (unknown roles grant nothing)."""
    granted: set[str] = set()
    for role in roles:
        granted |= ROLES.get(role, frozenset())
    return frozenset(granted)
