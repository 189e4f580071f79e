"""HTTP Basic (RFC 7617) and Digest (RFC 7616) parsing, arithmetic and stateless nonces."""

from __future__ import annotations

import base64

import pytest

from bootstrap.auth.http_auth import (
    REALM,
    BasicCredential,
    DigestCredential,
    NonceSigner,
    StaleNonce,
    challenges,
    digest_response,
    parse_authorization,
)
from bootstrap.errors import AuthenticationFailed

NONCES = NonceSigner(b"k" * 32)


def test_digest_sha256_matches_rfc_7616_3_9_1() -> None:
    # RFC 7616 3.9.1 (with erratum 4495: "Circle of Life"), SHA-256, qop=auth.
    assert digest_response("Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
                           "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001",
                           "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ") == (
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")


def test_basic_is_devid_and_password() -> None:
    header = "Basic " + base64.b64encode(b"IMEI:1:dmt_abc:def").decode()
    credential = parse_authorization(header, method="POST", nonces=NONCES)
    assert credential == BasicCredential("IMEI", "1:dmt_abc:def")  # RFC 7617: the user id has no colon


def test_a_devid_with_a_colon_is_split_after_the_known_devid() -> None:
    # RFC 7617 2 forbids a colon in a user-id; DM DevIDs (IMEI:...) have one, and OMADM-DevID names it.
    header = "Basic " + base64.b64encode(b"IMEI:1:dmt_x:y").decode()
    assert parse_authorization(header, method="POST", nonces=NONCES, user="IMEI:1") == BasicCredential(
        "IMEI:1", "dmt_x:y")


def _digest_header(issued: str, **changes: str) -> str:
    params = {"username": "IMEI:1", "realm": REALM, "nonce": issued, "uri": "/dm/bootstrap", "qop": "auth",
              "nc": "00000001", "cnonce": "c1", "algorithm": "SHA-256"}
    params.update(changes)
    params.setdefault("response", digest_response(params["username"], params["realm"], "pw", "POST",
                                                  params["uri"], params["nonce"], params["nc"], params["cnonce"]))
    return "Digest " + ", ".join(f'{k}="{v}"' if k not in ("qop", "nc", "algorithm") else f"{k}={v}"
                                 for k, v in params.items())


def test_digest_round_trip() -> None:
    nonce = NONCES.issue()
    credential = parse_authorization(_digest_header(nonce), method="POST", nonces=NONCES)
    assert isinstance(credential, DigestCredential)
    assert credential.matches("pw") and not credential.matches("other")


@pytest.mark.parametrize(("changes", "message"), [
    pytest.param({"algorithm": "MD5"}, "SHA-256", id="md5"),
    pytest.param({"qop": "auth-int"}, "qop=auth", id="auth-int"),
    pytest.param({"realm": "other"}, "realm", id="other-realm"),
    pytest.param({"nc": "1"}, "nc", id="short-nc"),
    pytest.param({"response": "zz"}, "response", id="bad-response"),
    pytest.param({"nonce": "123.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "not one of ours", id="forged-nonce"),
])
def test_digest_refusals(changes: dict[str, str], message: str) -> None:
    with pytest.raises(AuthenticationFailed, match=message):
        parse_authorization(_digest_header(NONCES.issue(), **changes), method="POST", nonces=NONCES)


def test_a_nonce_from_another_replica_with_the_same_key_is_good_and_an_old_one_stale() -> None:
    other = NonceSigner(b"k" * 32)
    assert other.fresh(NONCES.issue())
    old = NONCES.issue(now=1_000_000)
    with pytest.raises(StaleNonce):
        parse_authorization(_digest_header(old), method="POST", nonces=other)


def test_a_nonce_under_another_key_is_refused() -> None:
    with pytest.raises(AuthenticationFailed, match="not one of ours"):
        NonceSigner(b"x" * 32).fresh(NONCES.issue())


def test_challenges_offer_digest_sha256_and_basic() -> None:
    digest, basic = challenges(NONCES)
    assert digest.startswith(f'Digest realm="{REALM}", qop="auth", algorithm=SHA-256, nonce="')
    assert basic == f'Basic realm="{REALM}", charset="UTF-8"'
    assert challenges(NONCES, stale=True)[0].endswith("stale=true")


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                                    "Digest username", "Digest " + "a=b, " * 2000])
def test_malformed_headers_are_authentication_failures(header: str) -> None:
    with pytest.raises(AuthenticationFailed):
        parse_authorization(header, method="POST", nonces=NONCES)


def test_other_schemes_are_not_ours() -> None:
    assert parse_authorization("Bearer x", method="POST", nonces=NONCES) is None
