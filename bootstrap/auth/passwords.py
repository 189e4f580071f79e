"""Password hashing for human admins: scrypt (RFC 7914) from the standard library.

A stored hash names its own parameters, ``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>``
(salt and hash base64, no padding), so the cost can be raised later: a hash with
weaker parameters than :data:`DEFAULT_COST` still verifies and
:func:`needs_rehash` says so; the admin service re-hashes it at the next login.
Parameters follow OWASP's recommendation for scrypt (n=2**17, r=8, p=1; 128 MiB).

Each hash takes 128 MiB and a core for a while, so a process runs at most
:data:`MAX_CONCURRENT_HASHES` of them at once; a check that finds every slot
busy for :data:`SLOT_WAIT_SECONDS` gives up with :class:`HashingBusy` instead of
queueing without bound (the caller answers 429 + Retry-After).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["DEFAULT_COST", "MAX_CONCURRENT_HASHES", "MIN_PASSWORD_LENGTH", "SLOT_WAIT_SECONDS", "HashingBusy",
           "ScryptCost", "check_password_policy", "hash_password", "needs_rehash", "verify_password"]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # scrypt reads the whole password; bound the work an attacker can ask for
_SALT_BYTES = 16
_HASH_BYTES = 32

#: Password hashes one process computes at once (memory: this many times 128 MiB).
MAX_CONCURRENT_HASHES = 2
#: How long a password check waits for a free hashing slot before it gives up.
SLOT_WAIT_SECONDS = 2.0
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)


class HashingBusy(RuntimeError):
    """Every password-hashing slot stayed busy: too many checks at once; retry shortly."""


@contextmanager
def _slot(wait: float | None) -> Iterator[None]:
    if not _SLOTS.acquire(timeout=wait):
        raise HashingBusy("too many password checks at once")
    try:
        yield
    finally:
        _SLOTS.release()


def _scrypt(password: str, salt: bytes, cost: ScryptCost, dklen: int, wait: float | None) -> bytes:
    with _slot(wait):
        return hashlib.scrypt(password.encode(), salt=salt, n=2**cost.log2_n, r=cost.r, p=cost.p,
                              maxmem=cost.maxmem, dklen=dklen)


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's work factors: n = 2**log2_n, block size r, parallelism p."""

    log2_n: int = 17
    r: int = 8
    p: int = 1

    @property
    def maxmem(self) -> int:
        # scrypt needs 128 * r * n bytes (plus slack); OpenSSL's default limit is 32 MiB.
        return int(128 * self.r * (2**self.log2_n) * self.p + 2**20)


DEFAULT_COST = ScryptCost()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def check_password_policy(password: str) -> None:
    """Refuse passwords too short or too long to be used.

    Raises:
        ValueError: naming the rule the password breaks.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str, cost: ScryptCost = DEFAULT_COST) -> str:
    """A new salted scrypt hash of ``password`` in the self-describing stored form."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, cost, _HASH_BYTES, None)  # admins setting passwords may queue
    return f"scrypt${cost.log2_n}${cost.r}${cost.p}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> tuple[ScryptCost, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        cost = ScryptCost(int(parts[1]), int(parts[2]), int(parts[3]))
        return cost, _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored`` (constant-time comparison); False for a malformed hash.

    Raises:
        HashingBusy: every hashing slot stayed busy for :data:`SLOT_WAIT_SECONDS`.
    """
    parsed = _parse(stored)
    if parsed is None or len(password) > MAX_PASSWORD_LENGTH:
        return False
    cost, salt, expected = parsed
    actual = _scrypt(password, salt, cost, len(expected), SLOT_WAIT_SECONDS)
    return hmac.compare_digest(actual, expected)


def needs_rehash(stored: str, cost: ScryptCost = DEFAULT_COST) -> bool:
    """True if ``stored`` was made with weaker parameters than ``cost``."""
    parsed = _parse(stored)
    if parsed is None:
        return True
    old = parsed[0]
    return (old.log2_n, old.r, old.p) < (cost.log2_n, cost.r, cost.p)
