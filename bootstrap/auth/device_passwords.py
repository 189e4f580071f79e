"""The passwords a device may present with HTTP Basic or Digest, recomputed by the server.

Digest needs the password itself (H(A1) = SHA-256(DevID:realm:password)); the database
keeps nothing password-equivalent in the clear, so each password is *recomputed* from a
key in the secret store:

- group-key devices: the device key HMAC-SHA256(group key, DevID), lowercase hex
  (bootstrap.auth.hmac_scheme). A registered device is tried against its own profile;
  an unknown DevID against every enabled profile that has a group key and allows
  ``group-key``.
- enrollment tokens: a token made since issue 11 is **derivable**,
  ``dmt_`` + base64url(HMAC-SHA256(token key, "dmboot-token-v1|" + token id))[:32], with the
  token key at KV ``tokens/key``. Only tokens **bound to a DevID** work with Digest (the
  server finds the candidates by DevID); Basic works with every token (it sends the token).
  Older random tokens stay valid for Basic and DMBoot-Token only.

Used by the verifiers in bootstrap.auth.attestation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bootstrap.auth import hmac_scheme
from bootstrap.auth.group_keys import read_group_key
from bootstrap.auth.http_auth import NONCE_SECONDS, DigestCredential, HttpCredential
from bootstrap.auth.principals import hash_token
from bootstrap.errors import AuthenticationFailed, SecretNotFound
from bootstrap.secrets.base import SecretStore
from bootstrap.secrets.shared_keys import shared_key
from bootstrap.store.models import DeviceRow, EnrollmentProfileRow, EnrollmentTokenRow, UsedNonceRow

__all__ = ["TOKEN_KEY_PATH", "derive_token", "digest_token", "group_key_profile", "token_key"]

#: Where the enrollment-token derivation key lives in the secret store's KV.
TOKEN_KEY_PATH = "tokens/key"  # noqa: S105 - a KV path, not a secret
TOKEN_PREFIX = "dmt_"  # noqa: S105 - a prefix, not a secret


def token_key(store: SecretStore) -> bytes:
    """The shared token derivation key (created on first use)."""
    return shared_key(store, TOKEN_KEY_PATH)


def derive_token(key: bytes, token_id: int) -> str:
    """The enrollment token of row ``token_id``."""
    mac = hmac.new(key, f"dmboot-token-v1|{token_id}".encode(), hashlib.sha256).digest()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(mac).decode("ascii")[:32]


def digest_token(session: Session, store: SecretStore, dev_id: str, credential: DigestCredential,
                 now: datetime) -> str:
    """The unused, unexpired, derivable token bound to ``dev_id`` that ``credential`` was made with.

    Raises:
        AuthenticationFailed: None matches.
    """
    query = select(EnrollmentTokenRow).where(EnrollmentTokenRow.dev_id == dev_id,
                                             EnrollmentTokenRow.used_at == None,  # noqa: E711 - SQL IS NULL
                                             EnrollmentTokenRow.expires_at > now)
    key = token_key(store)
    for row in session.exec(query):
        token = derive_token(key, row.id or 0)
        if hmac.compare_digest(hash_token(token), row.token_hash) and credential.matches(token):
            return token
    raise AuthenticationFailed("the Digest response matches no enrollment token bound to this DevID "
                               "(Digest works with DevID-bound tokens only)", field="Authorization")


def group_key_profile(session: Session, store: SecretStore, dev_id: str, device: DeviceRow | None,
                      credential: HttpCredential, now: datetime) -> EnrollmentProfileRow:
    """The profile whose group-derived key for ``dev_id`` is the password of ``credential``.

    Raises:
        AuthenticationFailed: No profile's key matches, or a Digest request was replayed.
    """
    if device is not None:
        candidates = [p for p in [session.get(EnrollmentProfileRow, device.profile_id)] if p is not None]
    else:
        candidates = [p for p in session.exec(select(EnrollmentProfileRow).where(
            EnrollmentProfileRow.enabled == True,  # noqa: E712 - SQL
            EnrollmentProfileRow.group_key_ref != None))  # noqa: E711 - SQL IS NOT NULL
            if "group-key" in p.attestation]
    for profile in candidates:
        if not profile.group_key_ref:
            continue
        try:
            key = hmac_scheme.derive_device_key(read_group_key(store, profile), dev_id)
        except (AuthenticationFailed, SecretNotFound):
            continue
        if credential.matches(key.hex()):
            if isinstance(credential, DigestCredential):
                _record_once(session, dev_id, credential, now)
            return profile
    raise AuthenticationFailed("the password is not the group-derived key of this DevID", field="Authorization")


def _record_once(session: Session, dev_id: str, credential: DigestCredential, now: datetime) -> None:
    digest = hmac_scheme.nonce_digest(dev_id, credential.replay_id)
    try:
        with session.begin_nested():
            session.add(UsedNonceRow(digest=digest, expires_at=now + timedelta(seconds=2 * NONCE_SECONDS)))
    except IntegrityError:
        raise AuthenticationFailed("replayed request: this Digest nonce, cnonce and nc were used already",
                                   field="Authorization") from None
