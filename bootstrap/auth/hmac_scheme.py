"""DMBoot-HMAC: how a device proves its group-derived key. Ours, defined here only.

OMA DM names no scheme for a key derived from a group secret, so dm-bootstrap
defines one (docs/api.md, "The DMBoot-HMAC scheme"). Every rule is in this
module; the verifier (:mod:`bootstrap.auth.attestation`), the factory export and
test clients all use it.

Device key (32 bytes, injected at the factory, exported as lowercase hex)::

    device_key = HMAC-SHA256(group_key, UTF-8(DevID))

Request header::

    Authorization: DMBoot-HMAC group="<profile>", devid="<DevID>", ts="<unix seconds>",
                   nonce="<16-128 of A-Z a-z 0-9 - _>", mac="<64 lowercase hex>"

``mac`` is HMAC-SHA256(device_key, canonical) where canonical is these six lines
joined by ``\\n`` (no trailing newline), UTF-8::

    DMBoot-HMAC-v1
    <group>
    <DevID>
    <ts>
    <nonce>
    <lowercase hex SHA-256 of the exact request body>

The server accepts ``ts`` within :data:`MAX_SKEW_SECONDS` of its clock and each
(DevID, nonce) once; the body (which carries the CSR) must not be empty.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from bootstrap.errors import AuthenticationFailed

__all__ = [
    "MAX_SKEW_SECONDS",
    "SCHEME",
    "VERSION",
    "HmacAuthorization",
    "authorization_header",
    "canonical_string",
    "compute_mac",
    "derive_device_key",
    "nonce_digest",
    "parse_authorization",
]

#: The Authorization scheme name.
SCHEME = "DMBoot-HMAC"
#: The first line of the canonical string; a new version changes it.
VERSION = "DMBoot-HMAC-v1"
#: How far the device's timestamp may be from the server's clock, either way.
MAX_SKEW_SECONDS = 300
_PARAMS = ("group", "devid", "ts", "nonce", "mac")
_PARAM = re.compile(r'\s*([a-z]+)="([^"\\]*)"\s*(?:,|$)')
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}\Z")
_MAC = re.compile(r"^[0-9a-f]{64}\Z")
_TS = re.compile(r"^[0-9]{1,12}\Z")


@dataclass(frozen=True)
class HmacAuthorization:
    """The parameters of one ``DMBoot-HMAC`` Authorization header."""

    group: str
    dev_id: str
    ts: int
    nonce: str
    mac: str


def derive_device_key(group_key: bytes, dev_id: str) -> bytes:
    """The device key: HMAC-SHA256(group key, UTF-8 DevID)."""
    return hmac.new(group_key, dev_id.encode("utf-8"), hashlib.sha256).digest()


def canonical_string(group: str, dev_id: str, ts: int, nonce: str, body: bytes) -> bytes:
    """The bytes the MAC covers."""
    lines = (VERSION, group, dev_id, str(ts), nonce, hashlib.sha256(body).hexdigest())
    return "\n".join(lines).encode("utf-8")


def compute_mac(device_key: bytes, group: str, dev_id: str, ts: int, nonce: str, body: bytes) -> str:
    """The ``mac`` parameter: lowercase hex HMAC-SHA256 over the canonical string."""
    return hmac.new(device_key, canonical_string(group, dev_id, ts, nonce, body), hashlib.sha256).hexdigest()


def authorization_header(device_key: bytes, group: str, dev_id: str, body: bytes, *,
                         ts: int | None = None, nonce: str | None = None) -> str:
    """A complete header value, as a device computes it (for clients and tests)."""
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or secrets.token_urlsafe(16)
    mac = compute_mac(device_key, group, dev_id, ts, nonce, body)
    return f'{SCHEME} group="{group}", devid="{dev_id}", ts="{ts}", nonce="{nonce}", mac="{mac}"'


def parse_authorization(value: str) -> HmacAuthorization:
    """Parse a header value strictly: the scheme, each parameter exactly once, quoted.

    Raises:
        AuthenticationFailed: not a well-formed DMBoot-HMAC header, naming what is wrong.
    """
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != SCHEME.lower():
        raise AuthenticationFailed(f"expected Authorization: {SCHEME} ...", field="authorization")
    params: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None or match.group(1) in params:
            raise AuthenticationFailed(f"malformed {SCHEME} header near {rest[position:position + 20]!r}",
                                       field="authorization")
        params[match.group(1)] = match.group(2)
        position = match.end()
    missing = [p for p in _PARAMS if p not in params]
    unknown = sorted(set(params) - set(_PARAMS))
    if missing or unknown:
        raise AuthenticationFailed(f"{SCHEME} header needs exactly {', '.join(_PARAMS)}"
                                   f" (missing {missing}, unknown {unknown})", field="authorization")
    if not _TS.match(params["ts"]):
        raise AuthenticationFailed("ts must be Unix time in whole seconds", field="authorization")
    if not _NONCE.match(params["nonce"]):
        raise AuthenticationFailed("nonce must be 16-128 characters of A-Z a-z 0-9 - _", field="authorization")
    if not _MAC.match(params["mac"]):
        raise AuthenticationFailed("mac must be 64 lowercase hex digits", field="authorization")
    return HmacAuthorization(params["group"], params["devid"], int(params["ts"]), params["nonce"], params["mac"])


def nonce_digest(dev_id: str, nonce: str) -> str:
    """What the used-nonce table keeps: SHA-256 hex of the method, DevID and nonce."""
    return hashlib.sha256(f"group-key\x00{dev_id}\x00{nonce}".encode()).hexdigest()
