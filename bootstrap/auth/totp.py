"""Time-based one-time passwords (RFC 6238, HOTP of RFC 4226 over 30-second steps).

Codes are 6 digits over HMAC-SHA1, the parameters every authenticator app
supports. A code is accepted for the current step and one step either side
(clock skew, RFC 6238 section 5.2); callers remember the step of the last
accepted code and refuse it or any earlier step, so a code works once.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

__all__ = ["DIGITS", "STEP_SECONDS", "hotp", "new_secret", "provisioning_uri", "totp", "verify"]

STEP_SECONDS = 30
DIGITS = 6
_WINDOW = 1


def new_secret() -> str:
    """A random 160-bit secret, base32 without padding (what authenticator apps take)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    text = secret.strip().replace(" ", "").upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def hotp(key: bytes, counter: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 section 5.3: HMAC over the big-endian counter, dynamically truncated."""
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp(secret: str, at: float | None = None, *, digits: int = DIGITS) -> str:
    """The code for ``secret`` (base32) at Unix time ``at`` (now by default)."""
    step = int((time.time() if at is None else at) // STEP_SECONDS)
    return hotp(_key(secret), step, digits=digits)


def verify(secret: str, code: str, *, at: float | None = None, after_step: int | None = None) -> int | None:
    """The time step ``code`` matches within one step of ``at``, or None.

    Args:
        secret: The shared secret, base32.
        code: What the user typed; spaces are ignored.
        at: Unix time (now by default).
        after_step: The step of the last code accepted; it and earlier steps are refused (replay).
    """
    code = code.replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    key = _key(secret)
    now = int((time.time() if at is None else at) // STEP_SECONDS)
    for step in range(now - _WINDOW, now + _WINDOW + 1):
        if after_step is not None and step <= after_step:
            continue
        if hmac.compare_digest(hotp(key, step), code):
            return step
    return None


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI authenticator apps read (usually from a QR code)."""
    label = quote(f"{issuer}:{account}")
    query = urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS,
                       "period": STEP_SECONDS})
    return f"otpauth://totp/{label}?{query}"
