"""Every validator's regular expression ends at the end of the text: Python's ``$`` also matches
before a final newline, so "IMEI:1\\n" passed as a DevID (found by the DevID property test)."""

from __future__ import annotations

import re

import pytest

from bootstrap.auth import hmac_scheme
from bootstrap.secrets import embedded
from bootstrap.services import config, crl, devices, enrollment, est
from bootstrap.services.admins import _model as admins
from bootstrap.web import observe, params
from pki import csr, identity

# (pattern, a value it accepts): literal examples, each also tried with a trailing newline.
CASES = [
    (identity._DEV_ID, "IMEI:350000000000001"),
    (csr._HOSTNAME, "dm.example.net"),
    (hmac_scheme._NONCE, "abcdefghijklmnop"),
    (hmac_scheme._MAC, "0" * 64),
    (hmac_scheme._TS, "1700000000"),
    (config._SERVER_ID, "dm1"),
    (config._NAME, "fleet"),
    (devices._FINGERPRINT, "sha256:" + "a" * 64),
    (admins.USERNAME, "alice"),
    (est._LABEL, "fleet"),
    (crl._PARTITION_NAME, "issuing-p3"),
    (params._INTEGER, "42"),
    (observe._SAFE_ID, "req-1"),
    (embedded._NAME, "ca/issuing"),
    (enrollment._MOID, "urn:oma:mo:oma-dm-devinfo:1.0"),
]


@pytest.mark.parametrize(("pattern", "value"), CASES, ids=[c[1][:24] for c in CASES])
def test_a_trailing_newline_is_refused(pattern: re.Pattern[str], value: str) -> None:
    assert pattern.match(value)
    assert pattern.match(value + "\n") is None


def test_a_devid_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        identity.check_dev_id("0\n")
