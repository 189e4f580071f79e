"""DMBoot-HMAC: the documented test vector, an independent check with openssl, strict parsing."""

from __future__ import annotations

import subprocess

import pytest

from bootstrap.auth import hmac_scheme
from bootstrap.errors import AuthenticationFailed

# The example in docs/api.md ("The DMBoot-HMAC scheme").
GROUP_KEY = bytes(range(32))
DEV_ID = "IMEI:490154203237518"
BODY = b'{"dev_id":"IMEI:490154203237518","csr":"..."}'
TS = 1767225600
NONCE = "bm9uY2Utbm9uY2Utbm9uY2U"
DEVICE_KEY = "71f1dc6db7bdc90c338878f33d2b0bfcb5559a8dd44386d12cf48584b671ef4c"
MAC = "99ed38afe28c17d5f759c88bcaa6d4e3a64fa3e97867c4f29686214ce2f06d47"


def test_the_documented_vector() -> None:
    device_key = hmac_scheme.derive_device_key(GROUP_KEY, DEV_ID)
    assert device_key.hex() == DEVICE_KEY
    assert hmac_scheme.compute_mac(device_key, "fleet", DEV_ID, TS, NONCE, BODY) == MAC
    header = hmac_scheme.authorization_header(device_key, "fleet", DEV_ID, BODY, ts=TS, nonce=NONCE)
    assert hmac_scheme.parse_authorization(header) == hmac_scheme.HmacAuthorization("fleet", DEV_ID, TS, NONCE, MAC)


@pytest.mark.peers("openssl")
def test_openssl_computes_the_same_keys() -> None:
    def openssl_hmac(key_hex: str, data: bytes) -> str:
        result = subprocess.run(["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{key_hex}"],
                                input=data, capture_output=True, check=True)
        return result.stdout.decode().rsplit("= ", 1)[1].strip()

    assert openssl_hmac(GROUP_KEY.hex(), DEV_ID.encode()) == DEVICE_KEY
    canonical = hmac_scheme.canonical_string("fleet", DEV_ID, TS, NONCE, BODY)
    assert openssl_hmac(DEVICE_KEY, canonical) == MAC


GOOD = f'DMBoot-HMAC group="fleet", devid="{DEV_ID}", ts="{TS}", nonce="{NONCE}", mac="{MAC}"'


@pytest.mark.parametrize("header", [
    pytest.param(GOOD.replace("DMBoot-HMAC", "Bearer"), id="other-scheme"),
    pytest.param(GOOD.replace(', mac="' + MAC + '"', ""), id="missing-mac"),
    pytest.param(GOOD + ', extra="1"', id="unknown-parameter"),
    pytest.param(GOOD + f', ts="{TS}"', id="duplicate-parameter"),
    pytest.param(GOOD.replace(f'ts="{TS}"', "ts=1767225600"), id="unquoted"),
    pytest.param(GOOD.replace(f'ts="{TS}"', 'ts="-5"'), id="negative-ts"),
    pytest.param(GOOD.replace(NONCE, "short"), id="short-nonce"),
    pytest.param(GOOD.replace(NONCE, "n" * 15 + "/"), id="nonce-charset"),
    pytest.param(GOOD.replace(MAC, MAC.upper()), id="uppercase-mac"),
    pytest.param(GOOD.replace(MAC, MAC[:-2]), id="short-mac"),
    pytest.param("DMBoot-HMAC", id="no-parameters"),
])
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(AuthenticationFailed):
        hmac_scheme.parse_authorization(header)


def test_the_scheme_name_is_case_insensitive_and_spacing_tolerant() -> None:
    relaxed = GOOD.replace("DMBoot-HMAC", "dmboot-hmac").replace(", ", " ,  ")
    assert hmac_scheme.parse_authorization(relaxed).mac == MAC
