"""The DM 2.0 session reference: what ties package 3 to the package 2 it answers.

Ours (docs/dm2-exchange.md). Nothing is kept in a process or the database between
packages (DM-SYS-001): the server hands the device a signed, expiring reference, and
any replica can check it. In the specification's flow the reference is the last path
segment of the ``CONT`` ServerURI of package 2 (``/dm/bootstrap/<reference>``), where
the device posts package 3; in our inline flow it travels in the ``OMADM-Session``
response header of package 2 and comes back in the same header with package 3::

    s1.<payload>.<mac>
    payload = base64url(JSON {"dev": DevID, "ser": serial hex, "iat": unix s, "exp": unix s,
                              "n": number of HGETs (CONT only)})
    mac     = base64url(HMAC-SHA256(key, "dmboot-session-v1." + payload))

base64url without padding. The key is 32 random bytes kept in the secret store at KV
``session/key`` (member ``key``, base64), created once by whichever replica needs it
first (check-and-set 0: one writer wins, the others read the winner's key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bootstrap.errors import AuthenticationFailed
from bootstrap.secrets.base import SecretStore
from bootstrap.secrets.shared_keys import shared_key

__all__ = [
    "SESSION_HEADER",
    "SESSION_KEY_PATH",
    "SESSION_TTL",
    "SessionExpired",
    "SessionInvalid",
    "SessionRef",
    "SessionSigner",
]

#: Ours: the header that carries the reference (package 2 response -> package 3 request).
SESSION_HEADER = "OMADM-Session"
#: Where the signing key lives in the secret store's KV.
SESSION_KEY_PATH = "session/key"
#: Ours: how long a device has between package 2 and package 3.
SESSION_TTL = timedelta(minutes=10)

_PREFIX = "s1"
_CONTEXT = b"dmboot-session-v1."
_MAX_LENGTH = 1024
_SHAPE = re.compile(r"s1\.[A-Za-z0-9_-]{1,900}\.[A-Za-z0-9_-]{43}")


class SessionInvalid(AuthenticationFailed):
    """A session reference that is missing, malformed, or not signed by us."""


class SessionExpired(SessionInvalid):
    """A session reference past its expiry: the device has to start again with package 1."""


@dataclass(frozen=True)
class SessionRef:
    """What a session reference says: which device, which certificate, until when."""

    dev_id: str
    serial_hex: str
    issued_at: datetime
    expires_at: datetime
    #: How many HGETs package 2 carried (the specification's flow, ``CONT``); None for ours.
    hgets: int | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Signs and checks session references with the shared key from the secret store."""

    def __init__(self, store: SecretStore | None = None, *, key: bytes | None = None,
                 ttl: timedelta = SESSION_TTL) -> None:
        if store is None and key is None:
            raise TypeError("SessionSigner needs a secret store or a key")
        self._store = store
        self._key = key
        self._lock = threading.Lock()
        self.ttl = ttl

    def _signing_key(self) -> bytes:
        if self._key is None:
            with self._lock:
                if self._key is None:
                    assert self._store is not None  # noqa: S101 - __init__ guarantees one of the two
                    self._key = shared_key(self._store, SESSION_KEY_PATH)
        return self._key

    def issue(self, dev_id: str, serial_hex: str, *, hgets: int | None = None, now: datetime | None = None) -> str:
        """A reference for ``dev_id``'s certificate ``serial_hex``, valid for ``ttl``.

        ``hgets`` (claim ``n``): how many HGETs the package 2 carried, for the CONT URI.
        """
        now = now or datetime.now(UTC)
        claims: dict[str, object] = {"dev": dev_id, "ser": serial_hex, "iat": int(now.timestamp()),
                                     "exp": int((now + self.ttl).timestamp())}
        if hgets is not None:
            claims["n"] = hgets
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{_PREFIX}.{payload}.{self._mac(payload)}"

    def verify(self, reference: str | None, *, now: datetime | None = None) -> SessionRef:
        """Check the signature and expiry of ``reference``.

        Raises:
            SessionInvalid: Missing, malformed, or the signature does not verify.
            SessionExpired: Genuine but past its expiry.
        """
        if not reference:
            raise SessionInvalid(f"the {SESSION_HEADER} header is missing; send back the one package 2 "
                                 "came with", field=SESSION_HEADER)
        if len(reference) > _MAX_LENGTH or not _SHAPE.fullmatch(reference):
            raise SessionInvalid("the session reference is malformed", field=SESSION_HEADER)
        _, payload, mac = reference.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise SessionInvalid("the session reference is not one of ours (bad signature)", field=SESSION_HEADER)
        try:
            claims = json.loads(_unb64(payload))
            ref = SessionRef(
                dev_id=str(claims["dev"]), serial_hex=str(claims["ser"]),
                issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
                hgets=int(claims["n"]) if "n" in claims else None,
            )
        except (ValueError, KeyError, TypeError, binascii.Error):  # signed by us, so only after a bug
            raise SessionInvalid("the session reference is malformed", field=SESSION_HEADER) from None
        if (now or datetime.now(UTC)) >= ref.expires_at:
            raise SessionExpired(f"the session expired at {ref.expires_at:%Y-%m-%dT%H:%M:%SZ}; "
                                 "start again with package 1", field=SESSION_HEADER)
        return ref

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._signing_key(), _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest())
