"""DM 1.x security: bootstrap MAC vectors built by hand, session digests, credentials.

Expected values here are computed independently of the module: IMSI keys are
written out as bytes, and digests are spelled out step by step with hashlib.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from bootstrap.dm.dm1_security import (
    HmacHeader,
    bootstrap_mac,
    content_type_with_mac,
    format_hmac_header,
    generate_dm1_credentials,
    hmac_md5_mac,
    imsi_key,
    md5_digest,
    parse_hmac_header,
    verify_bootstrap_mac,
)
from bootstrap.dm.syncml import DmNode, SyncHeader, bootstrap_commands, to_wbxml

# "9" (odd digit count) + digits, nibbles swapped per octet:
# 90 01 01 01 23 45 67 89 -> 09 10 10 10 32 54 76 98
KEY_001010123456789 = b"\x09\x10\x10\x10\x32\x54\x76\x98"
# "1" (even) + digits + "F": 12 14 07 65 01 23 45 6F -> 21 41 70 56 10 32 54 F6
KEY_21407650123456 = b"\x21\x41\x70\x56\x10\x32\x54\xf6"
# The kannel users' list example IMSI: 94 04 02 05 06 70 82 00 -> 49 40 20 50 60 07 28 00
KEY_404020506708200 = b"\x49\x40\x20\x50\x60\x07\x28\x00"

BOOTSTRAP = to_wbxml(
    SyncHeader("IMEI:490154203237518", "bootstrap"),
    bootstrap_commands([DmNode("./DMAcc/x1", "node"), DmNode("./DMAcc/x1/AppID", "chr", "w7")]),
)


@pytest.mark.parametrize(
    ("imsi", "key"),
    [
        ("001010123456789", KEY_001010123456789),
        ("21407650123456", KEY_21407650123456),
        ("404020506708200", KEY_404020506708200),
        ("1", b"\x19"),
        ("12", b"\x11\xf2"),  # "1" + "12" + "F": 11 2F -> 11 F2
    ],
    ids=["15-digits", "14-digits", "kannel-example", "one-digit", "two-digits"],
)
def test_imsi_key_is_semi_octets_with_parity_nibble(imsi: str, key: bytes) -> None:
    assert imsi_key(imsi) == key


@pytest.mark.parametrize("imsi", ["", "00101012345678a", "0010101234567890", " 00101"], ids=str)
def test_bad_imsi_is_refused(imsi: str) -> None:
    with pytest.raises(ValueError, match="imsi"):
        imsi_key(imsi)


MAC_CASES = {
    "NETWORKID": (dict(imsi="001010123456789"), KEY_001010123456789),
    "USERPIN": (dict(pin="1234"), b"1234"),
    "USERPIN_NETWORKID": (dict(imsi="001010123456789", pin="1234"), KEY_001010123456789 + b"1234"),
}


@pytest.mark.parametrize("sec", MAC_CASES)
@pytest.mark.parametrize("document", [BOOTSTRAP, b"\x03\xa4\x01\x6a\x00\x2d"], ids=["bootstrap", "minimal"])
def test_bootstrap_mac_is_hmac_sha1_with_the_mode_key(sec: str, document: bytes) -> None:
    secrets, key = MAC_CASES[sec]
    expected = hmac.new(key, document, hashlib.sha1).hexdigest().upper()
    assert bootstrap_mac(sec, document, **secrets) == expected  # type: ignore[arg-type]
    assert len(expected) == 40


def test_each_mode_gives_a_different_mac() -> None:
    macs = {bootstrap_mac(sec, BOOTSTRAP, **secrets) for sec, (secrets, _) in MAC_CASES.items()}  # type: ignore[arg-type]
    assert len(macs) == 3


def test_content_type_carries_sec_and_mac() -> None:
    mac = hmac.new(b"1234", BOOTSTRAP, hashlib.sha1).hexdigest().upper()
    assert content_type_with_mac("USERPIN", BOOTSTRAP, pin="1234") == (
        f"application/vnd.syncml.dm+wbxml; SEC=USERPIN; MAC={mac}"
    )


def test_verify_accepts_any_case_and_rejects_a_changed_document() -> None:
    mac = bootstrap_mac("NETWORKID", BOOTSTRAP, imsi="001010123456789")
    assert verify_bootstrap_mac("NETWORKID", BOOTSTRAP, mac.lower(), imsi="001010123456789")
    assert not verify_bootstrap_mac("NETWORKID", BOOTSTRAP + b"\x00", mac, imsi="001010123456789")
    assert not verify_bootstrap_mac("NETWORKID", BOOTSTRAP, "\u00e9" * 40, imsi="001010123456789")


@pytest.mark.parametrize(
    ("sec", "imsi", "pin", "field"),
    [
        ("NETWORKID", None, "1234", "imsi"),
        ("USERPIN", "001010123456789", None, "pin"),
        ("USERPIN_NETWORKID", None, "1234", "imsi"),
        ("USERPIN_NETWORKID", "001010123456789", "", "pin"),
        ("NETWPIN", "001010123456789", "1234", "sec"),
    ],
    ids=["networkid-no-imsi", "userpin-no-pin", "both-no-imsi", "both-empty-pin", "cp-name-not-dm"],
)
def test_missing_secret_is_refused(sec: str, imsi: str | None, pin: str | None, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        bootstrap_mac(sec, BOOTSTRAP, imsi=imsi, pin=pin)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- session auth


def _b64md5(data: bytes) -> bytes:
    return base64.b64encode(hashlib.md5(data).digest())  # noqa: S324 - DM 1.x auth is MD5 by spec


def test_md5_digest_matches_the_syncml_example() -> None:
    # The SyncML specifications' worked example for syncml:auth-md5.
    assert md5_digest("Bruce2", "OhBehave", b"Nonce") == "Zz6EivR3yeaaENcRN6lpAQ=="


@pytest.mark.parametrize("nonce", [b"Nonce", bytes(range(16)), b""], ids=["text", "binary", "empty"])
def test_md5_digest_by_hand(nonce: bytes) -> None:
    step1 = base64.b64encode(hashlib.md5(b"user:p\xc3\xa4ss").digest())  # noqa: S324 - the spec's hash
    expected = base64.b64encode(hashlib.md5(step1 + b":" + nonce).digest()).decode()  # noqa: S324
    assert md5_digest("user", "p\u00e4ss", nonce) == expected


def test_hmac_md5_mac_by_hand() -> None:
    nonce, body = b"\x00\x01nonce", BOOTSTRAP
    cred = _b64md5(b"dev:secret")
    expected = _b64md5(cred + b":" + nonce + b":" + _b64md5(body)).decode()
    assert hmac_md5_mac("dev", "secret", nonce, body) == expected
    assert hmac_md5_mac("dev", "secret", nonce, body + b" ") != expected


def test_hmac_header_round_trip() -> None:
    header = HmacHeader(username='dev "7", x', mac="kB9sVPLJ3R7n4rDVIY0k9Q==")
    text = format_hmac_header(header)
    assert text == 'algorithm=MD5, username="dev \\"7\\", x", mac=kB9sVPLJ3R7n4rDVIY0k9Q=='
    assert parse_hmac_header(text) == header


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('username="a", mac=b==', HmacHeader("a", "b==")),
        ('  mac=b== ,username="a" , algorithm=MD5', HmacHeader("a", "b==")),
        ("ALGORITHM=MD5, Username=a, MAC=b", HmacHeader("a", "b")),
    ],
    ids=["algorithm-defaults", "any-order-and-spaces", "case-insensitive-names"],
)
def test_hmac_header_parse_variants(text: str, expected: HmacHeader) -> None:
    assert parse_hmac_header(text) == expected


@pytest.mark.parametrize(
    "text", ["", 'username="a"', "mac=b", 'username="a, mac=b', "username=a mac=b"], ids=repr
)
def test_bad_hmac_header_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="x-syncml-hmac"):
        parse_hmac_header(text)


# --------------------------------------------------------------------------- credentials


def test_generated_credentials_are_strong_and_fresh() -> None:
    first = generate_dm1_credentials("IMEI:490154203237518", "dm.example.com")
    second = generate_dm1_credentials("IMEI:490154203237518", "dm.example.com")
    assert (first.client_name, first.server_name) == ("IMEI:490154203237518", "dm.example.com")
    for secret in (first.client_secret, first.server_secret):
        assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) * 8 >= 128
    for nonce in (first.client_nonce, first.server_nonce):
        assert len(base64.b64decode(nonce, validate=True)) == 16
    assert first.client_secret != first.server_secret
    assert first.client_secret != second.client_secret and first.client_nonce != second.client_nonce


def test_credentials_repr_hides_secrets() -> None:
    creds = generate_dm1_credentials("dev", "srv")
    text = repr(creds)
    assert creds.client_secret not in text and creds.server_secret not in text
    assert "dev" in text


@pytest.mark.parametrize(
    ("dev_id", "server_id"), [("", "srv"), ("dev", "")], ids=["no-dev-id", "no-server-id"]
)
def test_credentials_need_both_ids(dev_id: str, server_id: str) -> None:
    with pytest.raises(ValueError):
        generate_dm1_credentials(dev_id, server_id)
