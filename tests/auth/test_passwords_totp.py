"""Password hashing (scrypt) and TOTP (RFC 6238) against their specifications."""

from __future__ import annotations

import base64

import pytest

from bootstrap.auth import passwords, totp
from tests.support.admins import FAST

# RFC 6238 appendix B: the SHA-1 secret is the ASCII string "12345678901234567890"; 8 digits.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize(("at", "code"), [
    (59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
    (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130"),
], ids=["59", "1111111109", "1111111111", "1234567890", "2000000000", "20000000000"])
def test_totp_matches_rfc_6238_vectors(at: int, code: str) -> None:
    assert totp.totp(RFC_SECRET, at, digits=8) == code


def test_totp_accepts_one_step_either_side_and_never_twice() -> None:
    secret, now = totp.new_secret(), 1_700_000_000.0
    for skew in (-30, 0, 30):
        assert totp.verify(secret, totp.totp(secret, now + skew), at=now) is not None
    assert totp.verify(secret, totp.totp(secret, now - 60), at=now) is None
    step = totp.verify(secret, totp.totp(secret, now), at=now)
    assert step is not None
    assert totp.verify(secret, totp.totp(secret, now), at=now, after_step=step) is None  # replay
    assert totp.verify(secret, "12345", at=now) is None and totp.verify(secret, "abcdef", at=now) is None


def test_provisioning_uri_names_issuer_and_account() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", "alice", "dm-bootstrap")
    assert uri.startswith("otpauth://totp/dm-bootstrap%3Aalice?secret=JBSWY3DPEHPK3PXP&issuer=dm-bootstrap")


def test_password_hash_round_trip_and_salt() -> None:
    first = passwords.hash_password("correct horse battery", FAST)
    second = passwords.hash_password("correct horse battery", FAST)
    assert first != second and first.startswith("scrypt$10$8$1$")
    assert passwords.verify_password("correct horse battery", first)
    assert not passwords.verify_password("correct horse batterz", first)
    assert not passwords.verify_password("x", "md5$garbage")


def test_weaker_hashes_need_a_rehash() -> None:
    weak = passwords.hash_password("correct horse battery", FAST)
    assert passwords.needs_rehash(weak)
    assert not passwords.needs_rehash(weak, FAST)
    assert passwords.needs_rehash("not a hash")


def test_default_cost_is_owasp_scrypt() -> None:
    assert (passwords.DEFAULT_COST.log2_n, passwords.DEFAULT_COST.r, passwords.DEFAULT_COST.p) == (17, 8, 1)


@pytest.mark.parametrize("password", ["short", "x" * 1025], ids=["too-short", "too-long"])
def test_password_policy(password: str) -> None:
    with pytest.raises(ValueError, match="the password must have"):
        passwords.check_password_policy(password)
