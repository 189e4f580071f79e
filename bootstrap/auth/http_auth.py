"""HTTP Basic (RFC 7617) and Digest (RFC 7616) for DM 2.0 devices on ``/dm/bootstrap``.

DM 2.0 (Security): the server MUST support HTTP Basic, HTTP Digest and X.509 client
certificates. The user name is the device's DevID; the password is one of the
device's factory credentials (ours, docs/security.md):

- a one-time enrollment token, as issued (``dmt_...``);
- the group-derived device key, HMAC-SHA256(group key, DevID), as 64 **lowercase hex**
  characters (the text the factory export gives).

This module parses the header and checks Digest arithmetic and nonces; it knows no
database. It yields an :class:`HttpCredential` that the token and group-key verifiers
(bootstrap.auth.attestation) test against the passwords they can recompute.

Digest (ours where RFC 7616 leaves a choice): realm :data:`REALM`, ``qop=auth`` only,
``algorithm=SHA-256`` only (MD5 is not offered: every client that needs DM 2.0 can
do SHA-256, and MD5 adds nothing but weakness), no ``userhash``, no ``-sess``. The
nonce is stateless, so any replica checks it::

    nonce = <unix seconds> "." base64url(HMAC-SHA256(key, "dmboot-digest-v1|" realm "|" seconds))[:32]

with the key at KV ``digest/key`` in the secret store. A nonce is good for
:data:`NONCE_SECONDS`; a stale one is answered with a new challenge (``stale=true``).
Replay within that window is stopped by the verifiers, which record each
(DevID, nonce, cnonce, nc) once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field

from bootstrap.errors import AuthenticationFailed

__all__ = [
    "DIGEST_KEY_PATH",
    "NONCE_SECONDS",
    "REALM",
    "BasicCredential",
    "DigestCredential",
    "HttpCredential",
    "NonceSigner",
    "challenges",
    "digest_response",
    "parse_authorization",
]

REALM = "dm-bootstrap"
#: Where the nonce key lives in the secret store's KV.
DIGEST_KEY_PATH = "digest/key"
#: How long a Digest nonce is accepted.
NONCE_SECONDS = 300
_CONTEXT = "dmboot-digest-v1"
_NONCE = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{32})")
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_MAX_HEADER = 4096


@dataclass(frozen=True)
class BasicCredential:
    """``Authorization: Basic``: the DevID and the password."""

    username: str
    password: str = field(repr=False)

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(self.password.encode(), password.encode())


@dataclass(frozen=True)
class DigestCredential:
    """``Authorization: Digest``, checked for shape and nonce; the password check is :meth:`matches`."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    cnonce: str
    nc: str
    method: str

    def matches(self, password: str) -> bool:
        expected = digest_response(self.username, self.realm, password, self.method, self.uri, self.nonce,
                                   self.nc, self.cnonce)
        return hmac.compare_digest(expected, self.response.lower())

    @property
    def replay_id(self) -> str:
        """What is recorded once per request: SHA-256 of the nonce, cnonce and nc (hex)."""
        return hashlib.sha256(f"digest|{self.nonce}|{self.cnonce}|{self.nc}".encode()).hexdigest()


HttpCredential = BasicCredential | DigestCredential


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_response(username: str, realm: str, password: str, method: str, uri: str, nonce: str, nc: str,
                    cnonce: str) -> str:
    """RFC 7616 3.4.1, SHA-256, qop=auth: KD(H(A1), nonce:nc:cnonce:qop:H(A2))."""
    ha1 = _sha256(f"{username}:{realm}:{password}")
    ha2 = _sha256(f"{method}:{uri}")
    return _sha256(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


class NonceSigner:
    """Makes and checks stateless Digest nonces with a key shared by every replica."""

    def __init__(self, key: bytes, *, lifetime: int = NONCE_SECONDS) -> None:
        self._key = key
        self._lifetime = lifetime

    def _mac(self, seconds: str) -> str:
        digest = hmac.new(self._key, f"{_CONTEXT}|{REALM}|{seconds}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii")[:32]

    def issue(self, now: float | None = None) -> str:
        seconds = str(int(time.time() if now is None else now))
        return f"{seconds}.{self._mac(seconds)}"

    def fresh(self, nonce: str, now: float | None = None) -> bool:
        """Whether ``nonce`` is ours; raise AuthenticationFailed if it is not, False if it is too old."""
        match = _NONCE.fullmatch(nonce)
        if match is None or not hmac.compare_digest(match.group(2), self._mac(match.group(1))):
            raise AuthenticationFailed("the Digest nonce is not one of ours", field="Authorization")
        age = (time.time() if now is None else now) - int(match.group(1))
        return -60 <= age <= self._lifetime


def challenges(nonces: NonceSigner, *, stale: bool = False) -> list[str]:
    """The ``WWW-Authenticate`` values of a 401 on /dm/bootstrap: Digest first, then Basic."""
    digest = (f'Digest realm="{REALM}", qop="auth", algorithm=SHA-256, nonce="{nonces.issue()}"'
              + (", stale=true" if stale else ""))
    return [digest, f'Basic realm="{REALM}", charset="UTF-8"']


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _PARAM.match(text, position)
        if match is None or match.end() == position:
            raise AuthenticationFailed("the Digest parameters are malformed", field="Authorization")
        name = match.group(1).lower()
        if name in params:
            raise AuthenticationFailed(f"Digest parameter {name} appears twice", field="Authorization")
        params[name] = _unquote(match.group(2))
        position = match.end()
    return params


def _basic(value: str, user: str | None) -> BasicCredential:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise AuthenticationFailed("the Basic credentials are not base64 of UTF-8 user:password",
                                   field="Authorization") from None
    if user and decoded.startswith(user + ":"):
        # Ours: DevIDs such as IMEI:... contain a colon, which RFC 7617 2 forbids in a user-id; the
        # DevID is known from OMADM-DevID, so the password is what follows it.
        return BasicCredential(user, decoded[len(user) + 1:])
    username, sep, password = decoded.partition(":")
    if not sep or not username or not password:
        raise AuthenticationFailed("the Basic credentials must be DevID:password", field="Authorization")
    return BasicCredential(username, password)


def _digest(value: str, method: str, nonces: NonceSigner) -> DigestCredential:
    params = _params(value)
    missing = [p for p in ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce") if p not in params]
    if missing:
        raise AuthenticationFailed(f"the Digest credentials lack {', '.join(missing)}", field="Authorization")
    if params.get("algorithm", "SHA-256").upper() != "SHA-256":
        raise AuthenticationFailed("Digest algorithm must be SHA-256", field="Authorization")
    if params["qop"] != "auth" or params.get("userhash", "false").lower() != "false":
        raise AuthenticationFailed("Digest needs qop=auth and no userhash", field="Authorization")
    if params["realm"] != REALM:
        raise AuthenticationFailed(f"the Digest realm is {REALM!r}", field="Authorization")
    if not re.fullmatch(r"[0-9a-fA-F]{8}", params["nc"]) or not re.fullmatch(r"[0-9a-fA-F]{64}", params["response"]):
        raise AuthenticationFailed("Digest nc or response is malformed", field="Authorization")
    if not nonces.fresh(params["nonce"]):
        raise StaleNonce("the Digest nonce is stale; answer the new challenge", field="Authorization")
    return DigestCredential(username=params["username"], realm=params["realm"], nonce=params["nonce"],
                            uri=params["uri"], response=params["response"], cnonce=params["cnonce"],
                            nc=params["nc"], method=method)


class StaleNonce(AuthenticationFailed):
    """A genuine Digest nonce past its lifetime: the client retries with the new one."""


def parse_authorization(header: str, *, method: str, nonces: NonceSigner,
                        user: str | None = None) -> HttpCredential | None:
    """A Basic or Digest credential from ``header``; None for any other scheme.

    ``user``: the expected user name (the DevID), which may contain colons (Basic).

    Raises:
        AuthenticationFailed: The header is Basic or Digest but malformed, or a Digest
            nonce is not ours (:class:`StaleNonce` when it is ours but old).
    """
    if len(header) > _MAX_HEADER:
        raise AuthenticationFailed("the Authorization header is too long", field="Authorization")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "basic":
        return _basic(value, user)
    if scheme.lower() == "digest":
        return _digest(value, method, nonces)
    return None
