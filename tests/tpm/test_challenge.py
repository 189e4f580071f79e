"""The sealed TPM challenge: only the service can read it, and only until it expires."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from bootstrap.auth.tpm import Challenge, ChallengeSealer
from bootstrap.errors import AuthenticationFailed

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _challenge(secret: bytes) -> Challenge:
    return Challenge("IMEI:350000000000017", "sha256:" + "ab" * 32, "sha256:" + "cd" * 32, "000b" + "ef" * 32,
                     "12" * 32, secret, secrets.token_hex(16), NOW + timedelta(minutes=10))


def test_a_sealed_challenge_opens_and_hides_its_secret() -> None:
    sealer, secret = ChallengeSealer(key=secrets.token_bytes(32)), secrets.token_bytes(32)
    reference = sealer.seal(_challenge(secret))
    assert reference.startswith("t1.")
    assert secret.hex() not in reference and secrets.compare_digest(sealer.open(reference, NOW).secret, secret)
    assert "IMEI" not in reference  # encrypted, not only signed


@pytest.mark.parametrize("how", ["tampered", "other-key", "malformed", "not-text"])
def test_a_forged_challenge_is_refused(how: str) -> None:
    sealer = ChallengeSealer(key=secrets.token_bytes(32))
    reference: object = sealer.seal(_challenge(secrets.token_bytes(32)))
    assert isinstance(reference, str)
    if how == "tampered":
        reference = reference[:-5] + ("A" if reference[-5] != "A" else "B") + reference[-4:]
    elif how == "other-key":
        sealer = ChallengeSealer(key=secrets.token_bytes(32))
    elif how == "malformed":
        reference = "s1." + reference[3:]
    else:
        reference = 42
    with pytest.raises(AuthenticationFailed) as refused:
        sealer.open(reference, NOW)
    assert refused.value.field == "challenge"


def test_an_expired_challenge_is_refused() -> None:
    sealer = ChallengeSealer(key=secrets.token_bytes(32))
    reference = sealer.seal(_challenge(b"x" * 32))
    sealer.open(reference, NOW + timedelta(minutes=9, seconds=59))
    with pytest.raises(AuthenticationFailed, match="expired"):
        sealer.open(reference, NOW + timedelta(minutes=10))
