"""Group keys of enrollment profiles, as kept in the secret store.

A device of a group-key profile proves itself with HMAC-SHA256(group key, DevID)
(:mod:`bootstrap.auth.hmac_scheme`); the key itself lives in the secret store, and the
profile row holds only its reference (``<backend>:<path>#<version>``).
"""

from __future__ import annotations

from bootstrap.errors import AuthenticationFailed, SecretNotFound
from bootstrap.secrets.base import SecretStore
from bootstrap.store.models import EnrollmentProfileRow

__all__ = ["group_key_path", "read_group_key"]


def group_key_path(profile_name: str) -> str:
    """Where a profile's group key lives in the secret store (KV)."""
    return f"groups/{profile_name}"


def read_group_key(store: SecretStore, profile: EnrollmentProfileRow) -> bytes:
    """The profile's 32-byte group key, at the version its reference names.

    Raises:
        AuthenticationFailed: the profile has no group key.
    """
    if not profile.group_key_ref:
        raise AuthenticationFailed(f"profile {profile.name} has no group key", field="authorization")
    path, _, version = profile.group_key_ref.split(":", 1)[1].rpartition("#")
    try:
        data, _ref = store.get(path, int(version))
    except SecretNotFound:
        raise AuthenticationFailed(f"the group key of profile {profile.name} is missing from the secret store",
                                   field="authorization") from None
    return bytes.fromhex(data["key"])
