"""OMA DM 1.x security: bootstrap MACs, session digests, per-device credentials.

Bootstrap (OMA-TS-DM_Security-V1_2 section 5.7, "Security for Bootstrap
Operation"): the MAC is ``HMAC-SHA1(K, A)`` over the WBXML-encoded bootstrap
message ``A`` (RFC 2104), written as hexadecimal and carried in the Content-Type
parameters ``SEC`` and ``MAC``. The key ``K`` per mechanism:

- ``NETWORKID``: the IMSI in semi-octet form, as in EF_IMSI of GSM 11.11 without
  its length byte: a first nibble ``9`` (odd digit count) or ``1`` (even), then
  the digits, padded with ``F`` to whole octets, each octet's nibbles swapped.
  This is the NETWPIN key of OMA-WAP-TS-ProvBoot-V1_1 section 5.3, to which the
  DM security spec points for IMSI-based secrets.
- ``USERPIN``: the PIN's bytes (UTF-8; PINs are digits in practice).
- ``USERPIN_NETWORKID``: the NETWORKID key followed by the PIN bytes, as
  ProvBoot's USERNETWPIN does. The DM spec text does not spell this out; we
  follow the ACCESS/Intel CP client, and say so in docs/dm1x.md.

The hex is upper-case (our choice; the spec only says "hexadecimal digits"), and
:func:`verify_bootstrap_mac` ignores case.

Session authentication (OMA-TS-DM_Security-V1_2 section 5.1.3, OMA-TS-SyncML-
HTTPBinding-V1_2 section 5.3): ``syncml:auth-md5`` and the ``x-syncml-hmac``
header. Both use MD5 because the DM 1.x specifications fix it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "SEC_MODES",
    "Dm1Credentials",
    "HmacHeader",
    "SecMode",
    "bootstrap_mac",
    "content_type_with_mac",
    "format_hmac_header",
    "generate_dm1_credentials",
    "hmac_md5_mac",
    "imsi_key",
    "md5_digest",
    "parse_hmac_header",
    "verify_bootstrap_mac",
]

SecMode = Literal["NETWORKID", "USERPIN", "USERPIN_NETWORKID"]
SEC_MODES: tuple[SecMode, ...] = ("NETWORKID", "USERPIN", "USERPIN_NETWORKID")
_WBXML_MEDIA_TYPE = "application/vnd.syncml.dm+wbxml"
_IMSI = re.compile(r"[0-9]{1,15}")
_HEADER_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')


# --------------------------------------------------------------------------- bootstrap


def imsi_key(imsi: str) -> bytes:
    """Return the NETWORKID key: the IMSI as GSM 11.11 EF_IMSI semi-octets.

    Raises:
        ValueError: ``imsi`` is not 1 to 15 decimal digits.
    """
    if not _IMSI.fullmatch(imsi):
        raise ValueError("imsi: must be 1 to 15 decimal digits")
    # First nibble: identity type 1 (IMSI) with the odd/even bit (GSM 04.08 10.5.1.4).
    nibbles = ("9" if len(imsi) % 2 else "1") + imsi
    nibbles += "F" * (len(nibbles) % 2)
    return bytes(int(nibbles[i + 1] + nibbles[i], 16) for i in range(0, len(nibbles), 2))


def _bootstrap_key(sec: SecMode, imsi: str | None, pin: str | None) -> bytes:
    if sec not in SEC_MODES:
        raise ValueError(f"sec: unknown bootstrap security mechanism {sec!r}")
    if sec != "USERPIN" and not imsi:
        raise ValueError(f"imsi: {sec} needs the IMSI")
    if sec != "NETWORKID" and not pin:
        raise ValueError(f"pin: {sec} needs the user PIN")
    key = imsi_key(imsi) if imsi and sec != "USERPIN" else b""
    return key + (pin.encode("utf-8") if pin and sec != "NETWORKID" else b"")


def bootstrap_mac(sec: SecMode, wbxml: bytes, *, imsi: str | None = None, pin: str | None = None) -> str:
    """Compute the bootstrap MAC: upper-case hex HMAC-SHA1 over the WBXML document.

    Args:
        sec: The SEC mechanism.
        wbxml: The exact bytes that will be sent.
        imsi: The subscriber's IMSI (NETWORKID and USERPIN_NETWORKID).
        pin: The user PIN (USERPIN and USERPIN_NETWORKID).

    Raises:
        ValueError: Unknown mechanism, or the IMSI or PIN it needs is missing or bad.
    """
    key = _bootstrap_key(sec, imsi, pin)
    return hmac.new(key, wbxml, hashlib.sha1).hexdigest().upper()


def verify_bootstrap_mac(
    sec: SecMode, wbxml: bytes, mac: str, *, imsi: str | None = None, pin: str | None = None
) -> bool:
    """Check a bootstrap MAC in constant time, ignoring the case of its hex digits."""
    expected = bootstrap_mac(sec, wbxml, imsi=imsi, pin=pin)
    return hmac.compare_digest(expected.encode(), mac.strip().upper().encode("ascii", "replace"))


def content_type_with_mac(
    sec: SecMode, wbxml: bytes, *, imsi: str | None = None, pin: str | None = None
) -> str:
    """Return ``application/vnd.syncml.dm+wbxml; SEC=<sec>; MAC=<hex>`` for the message."""
    mac = bootstrap_mac(sec, wbxml, imsi=imsi, pin=pin)
    return f"{_WBXML_MEDIA_TYPE}; SEC={sec}; MAC={mac}"


# --------------------------------------------------------------------------- session auth


def _b64_md5(data: bytes) -> bytes:
    # MD5 is what syncml:auth-md5 and syncml:auth-MAC are defined with (DM Security 1.2 5.1.3).
    return base64.b64encode(hashlib.md5(data).digest())  # noqa: S324 - fixed by the DM 1.x spec


def md5_digest(username: str, password: str, nonce: bytes) -> str:
    """Return the ``syncml:auth-md5`` credential: B64(MD5(B64(MD5(user:pass)):nonce))."""
    inner = _b64_md5(f"{username}:{password}".encode())
    return _b64_md5(inner + b":" + nonce).decode("ascii")


def hmac_md5_mac(username: str, password: str, nonce: bytes, body: bytes) -> str:
    """Return the ``x-syncml-hmac`` mac: B64(MD5(B64(MD5(user:pass)):nonce:B64(MD5(body))))."""
    inner = _b64_md5(f"{username}:{password}".encode())
    return _b64_md5(inner + b":" + nonce + b":" + _b64_md5(body)).decode("ascii")


@dataclass(frozen=True)
class HmacHeader:
    """The parameters of an ``x-syncml-hmac`` header."""

    username: str
    mac: str
    algorithm: str = "MD5"


def format_hmac_header(header: HmacHeader) -> str:
    """Render the ``x-syncml-hmac`` value: ``algorithm=MD5, username="...", mac=...``."""
    user = header.username.replace("\\", "\\\\").replace('"', '\\"')
    return f'algorithm={header.algorithm}, username="{user}", mac={header.mac}'


def parse_hmac_header(value: str) -> HmacHeader:
    """Parse an ``x-syncml-hmac`` value; ``algorithm`` defaults to MD5.

    Raises:
        ValueError: A parameter is malformed, or username or mac is missing.
    """
    params: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        match = _HEADER_PARAM.match(value, pos)
        if not match or match.end() == pos:
            raise ValueError(f"x-syncml-hmac: malformed at {value[pos:]!r}")
        raw = match[2]
        params[match[1].lower()] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        pos = match.end()
    if not params.get("username") or not params.get("mac"):
        raise ValueError("x-syncml-hmac: username and mac are required")
    return HmacHeader(params["username"], params["mac"], params.get("algorithm", "MD5"))


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Dm1Credentials:
    """The two DMAcc 1.0 AppAuth credential sets for one device and server.

    ``client_*`` is what the device presents (AAuthLevel CLCRED), ``server_*``
    what the server presents (SRVCRED). Nonces are base64 of 16 random bytes.
    Secrets are hidden from repr.
    """

    client_name: str
    client_secret: str = field(repr=False)
    client_nonce: str
    server_name: str
    server_secret: str = field(repr=False)
    server_nonce: str


def generate_dm1_credentials(dev_id: str, server_id: str) -> Dm1Credentials:
    """Make fresh credentials: 192-bit url-safe secrets, 128-bit nonces.

    The client name is the device id and the server name the server id, which
    is how DM 1.x servers usually look accounts up.

    Raises:
        ValueError: ``dev_id`` or ``server_id`` is empty.
    """
    if not dev_id:
        raise ValueError("dev_id: must not be empty")
    if not server_id:
        raise ValueError("server_id: must not be empty")
    return Dm1Credentials(
        client_name=dev_id,
        client_secret=secrets.token_urlsafe(24),
        client_nonce=_nonce(),
        server_name=server_id,
        server_secret=secrets.token_urlsafe(24),
        server_nonce=_nonce(),
    )


def _nonce() -> str:
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")
