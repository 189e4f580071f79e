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

from bootstrap.services.admins._accounts import AdminAccountService
from bootstrap.services.admins._model import SECURITY_ADMIN, Actor, AdminInfo, LoginResult, totp_path

__all__ = ["SECURITY_ADMIN", "AdminAccountService", "AdminInfo", "Actor", "LoginResult", "totp_path"]
