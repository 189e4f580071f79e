"""The signed, expiring session reference between package 2 and package 3."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import Barrier, Thread

import pytest

from bootstrap.dm.session import SESSION_KEY_PATH, SessionExpired, SessionInvalid, SessionSigner
from bootstrap.errors import AuthenticationFailed, SecretConflict, SecretNotFound
from bootstrap.secrets.base import SecretRef
from bootstrap.secrets.embedded import EmbeddedKeystore

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
KEY = b"k" * 32


@pytest.fixture
def keystore(tmp_path: Path) -> Iterator[EmbeddedKeystore]:
    yield EmbeddedKeystore(tmp_path / "keystore", "test-passphrase", tmp_path / "keystore.key")


def test_a_reference_verifies_until_it_expires() -> None:
    signer = SessionSigner(key=KEY)
    ref = signer.issue("IMEI:1", "abc123", now=NOW)
    got = signer.verify(ref, now=NOW + timedelta(minutes=9))
    assert (got.dev_id, got.serial_hex, got.issued_at, got.expires_at) == ("IMEI:1", "abc123", NOW,
                                                                          NOW + timedelta(minutes=10))
    with pytest.raises(SessionExpired, match="start again with package 1"):
        signer.verify(ref, now=NOW + timedelta(minutes=10))


def _tamper_payload(ref: str) -> str:
    prefix, payload, mac = ref.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["dev"] = "IMEI:2"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{prefix}.{forged}.{mac}"


@pytest.mark.parametrize(("mangle", "message"), [
    pytest.param(lambda r: None, "header is missing", id="missing"),
    pytest.param(lambda r: "", "header is missing", id="empty"),
    pytest.param(lambda r: "garbage", "malformed", id="garbage"),
    pytest.param(lambda r: r + "x", "malformed", id="long-mac"),
    pytest.param(lambda r: "s2" + r[2:], "malformed", id="other-version"),
    pytest.param(lambda r: r[:-2] + ("AA" if not r.endswith("AA") else "BB"), "bad signature", id="flipped-mac"),
    pytest.param(_tamper_payload, "bad signature", id="forged-devid"),
    pytest.param(lambda r: SessionSigner(key=b"o" * 32).issue("IMEI:1", "abc123", now=NOW), "bad signature",
                 id="other-key"),
])
def test_bad_references_are_refused(mangle: object, message: str) -> None:
    signer = SessionSigner(key=KEY)
    ref = mangle(signer.issue("IMEI:1", "abc123", now=NOW))  # type: ignore[operator]
    with pytest.raises(SessionInvalid, match=message) as excinfo:
        signer.verify(ref, now=NOW)
    assert excinfo.value.field == "OMADM-Session"
    assert isinstance(excinfo.value, AuthenticationFailed)  # 401 problem+json


def test_replicas_share_the_key_through_the_secret_store(keystore: EmbeddedKeystore) -> None:
    first, second = SessionSigner(keystore), SessionSigner(keystore)
    assert second.verify(first.issue("IMEI:1", "ab", now=NOW), now=NOW).dev_id == "IMEI:1"
    data, ref = keystore.get(SESSION_KEY_PATH)
    assert len(base64.b64decode(data["key"])) == 32
    assert ref.version == 1


class _RacingStore:
    """A store where another replica writes the key between our read and our write."""

    def __init__(self) -> None:
        self.data: dict[str, str] | None = None
        self.puts = 0

    def get(self, path: str, version: int | None = None) -> tuple[dict[str, str], SecretRef]:
        if self.data is None:
            self.data = {"key": base64.b64encode(b"w" * 32).decode()}  # the winner writes now
            raise SecretNotFound(path)
        return dict(self.data), SecretRef("test", path, 1)

    def put(self, path: str, data: Mapping[str, str], *, cas: int | None = None) -> SecretRef:
        self.puts += 1
        assert cas == 0
        raise SecretConflict(path)


def test_losing_the_race_to_create_the_key_uses_the_winners() -> None:
    store = _RacingStore()
    ref = SessionSigner(store).issue("IMEI:1", "ab", now=NOW)  # type: ignore[arg-type]
    assert store.puts == 1
    assert SessionSigner(key=b"w" * 32).verify(ref, now=NOW).dev_id == "IMEI:1"


def test_concurrent_first_use_creates_one_key(keystore: EmbeddedKeystore) -> None:
    signers = [SessionSigner(keystore) for _ in range(8)]
    barrier, refs = Barrier(len(signers)), []

    def run(signer: SessionSigner) -> None:
        barrier.wait()
        refs.append(signer.issue("IMEI:1", "ab", now=NOW))

    threads = [Thread(target=run, args=(s,)) for s in signers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(signers[0].verify(r, now=NOW) for r in refs)
    assert keystore.get(SESSION_KEY_PATH)[1].version == 1


def test_a_signer_needs_a_store_or_a_key() -> None:
    with pytest.raises(TypeError):
        SessionSigner()
