"""DM 1.x accounts: profile options, the DMAcc 1.0 account, where credentials live, what a bootstrap returns."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from bootstrap.dm.content import DmAccount
from bootstrap.dm.ddf import MoProblem
from bootstrap.dm.dm1_security import (
    SEC_MODES,
    Dm1Credentials,
    SecMode,
    md5_digest,
)
from bootstrap.dm.dmacc10 import Dm1Account, app_auths
from bootstrap.errors import (
    ConfigurationError,
    InvalidRequest,
)
from bootstrap.secrets.base import SecretRef

DMACC_1_0 = "urn:oma:mo:oma-dm-dmacc:1.0"


#: ``dm1_auth`` -> the SyncML DM 1.x authentication scheme it names (DM Security 1.2 5.1.3).
AUTH_SCHEMES = {"DIGEST": "syncml:auth-md5", "HMAC": "syncml:auth-MAC"}


_PATH_PREFIX = "dm1"


_PATH_KEEP = re.compile(r"[A-Za-z0-9.-]")


_NODE_UNSAFE = re.compile(r"[/?#\s]")


_PIN = re.compile(r"[0-9]{4,16}")


_DEFAULT_PORTS = {"https": 443, "http": 80}


class Dm1AccountError(ConfigurationError):
    """The DMAcc 1.0 account built for a profile does not validate against the DMAcc 1.0 DDF."""

    def __init__(self, message: str, problems: list[MoProblem]) -> None:
        super().__init__(message, field=problems[0].path if problems else None)
        self.problems = problems


# --------------------------------------------------------------------------- profile settings


@dataclass(frozen=True)
class Dm1Options:
    """A profile's DM 1.x settings (``dmacc["dm1_*"]``), defaults filled in."""

    auth: str = "DIGEST"
    sec: SecMode = "USERPIN"
    account_name: str | None = None

    @classmethod
    def of(cls, dmacc: Mapping[str, Any]) -> Dm1Options:
        """The options a profile's ``dmacc`` holds (validated as :func:`profile_options` does)."""
        found = profile_options(dmacc)
        return cls(auth=found.get("dm1_auth", "DIGEST"), sec=cast(SecMode, found.get("dm1_sec", "USERPIN")),
                   account_name=found.get("dm1_account"))


def profile_options(dmacc: Mapping[str, Any]) -> dict[str, str]:
    """The ``dm1_*`` members of a profile's ``dmacc``, checked; other members are ignored.

    Raises:
        InvalidRequest: a value is not one this module knows, naming the member.
    """
    result: dict[str, str] = {}
    choices: dict[str, tuple[str, ...]] = {"dm1_auth": tuple(AUTH_SCHEMES), "dm1_sec": SEC_MODES}
    for key, allowed in choices.items():
        if key in dmacc:
            if dmacc[key] not in allowed:
                raise InvalidRequest(f"dmacc.{key} must be one of {', '.join(allowed)}", field=f"dmacc.{key}")
            result[key] = str(dmacc[key])
    if "dm1_account" in dmacc:
        name = dmacc["dm1_account"]
        if not isinstance(name, str) or not name or len(name) > 64 or _NODE_UNSAFE.search(name) or name in (
                ".", ".."):
            raise InvalidRequest("dmacc.dm1_account must be a DM node name (1-64 characters, no /, ?, #, space)",
                                 field="dmacc.dm1_account")
        result["dm1_account"] = name
    return result


def dm1_account(account: DmAccount, options: Dm1Options, credentials: Dm1Credentials) -> Dm1Account:
    """Map the format-neutral account and the device's credentials to DMAcc 1.0.

    ServerID is the SrvID, Addr the SrvURI (AddrType URI) with PortNbr its port (or
    the scheme's default), AAuthPref and both AAuthTypes ``options.auth``.

    Raises:
        ConfigurationError: the server URL has no usable port.
    """
    try:
        parts = urlsplit(account.server_uri)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError as exc:
        raise ConfigurationError(f"DM server {account.server_id!r} URL: {exc}", field="url") from None
    client, server = app_auths(credentials, options.auth)
    name = options.account_name or _NODE_UNSAFE.sub("_", account.server_id)
    return Dm1Account(account_name=name, server_id=account.server_id, name=account.name or account.server_id,
                      addr=account.server_uri, addr_type="URI", port=port, auth_pref=options.auth,
                      client_auth=client, server_auth=server)


def credentials_path(dev_id: str) -> str:
    """The secret store path of a device's DM 1.x credentials: ``dm1/<DevID>``, escaped.

    Every byte outside ``A-Z a-z 0-9 . -`` is written ``_XX`` (hex), so the path
    is one segment both secret stores accept: ``IMEI:35...`` is ``dm1/IMEI_3A35...``.

    Raises:
        InvalidRequest: the DevID does not start with a letter or digit.
    """
    if not dev_id[:1].isascii() or not dev_id[:1].isalnum():
        raise InvalidRequest("DM 1.x credentials need a DevID that starts with a letter or digit", field="dev_id")
    escaped = "".join(c if _PATH_KEEP.fullmatch(c) else "".join(f"_{b:02X}" for b in c.encode()) for c in dev_id)
    return f"{_PATH_PREFIX}/{escaped}"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Dm1Message:
    """One encoded form of the bootstrap message and its Content-Type (with SEC and MAC)."""

    body: bytes = field(repr=False)
    content_type: str


@dataclass(frozen=True)
class Dm1Package:
    """A DM 1.x bootstrap for one device: the account and the message in every form.

    The WBXML and XML bodies hold the device's secrets in the clear (that is what
    a bootstrap is); only ever send them to the device or write them for its factory.
    """

    dev_id: str
    profile: str
    account: Dm1Account
    sec: SecMode
    #: HMAC-SHA1 of the WBXML document, upper-case hex, as in ``wbxml.content_type``.
    mac: str
    wbxml: Dm1Message
    xml: Dm1Message
    #: The DMAcc subtree as TNDS (``application/vnd.syncml.dmtnds+xml``), no MAC.
    tnds: bytes = field(repr=False)
    #: The same account as an OMA Client Provisioning w7 document (bootstrap.dm.cp), with its MAC.
    cp: Dm1Message
    #: The secret store reference of the credentials (safe to log).
    credentials_ref: str
    #: The PIN the MAC is keyed with (USERPIN modes), for the factory's label.
    pin: str | None = field(default=None, repr=False)
    #: Set when a CSR was given: the new certificate first, then the issuing CA (DER).
    certificate_chain: tuple[bytes, ...] = ()
    serial_hex: str | None = None


@dataclass(frozen=True)
class Dm1CredentialsView:
    """What a DM 1.x server needs to authenticate a device and itself (the credential API)."""

    dev_id: str
    server_id: str
    auth: str
    credentials: Dm1Credentials
    ref: SecretRef

    def to_json(self) -> dict[str, Any]:
        """The JSON document of ``GET /api/v1/dm1/credentials/{dev_id}`` (docs/dm1x.md)."""
        c = self.credentials
        return {"dev_id": self.dev_id, "server_id": self.server_id, "auth_type": self.auth,
                "auth_scheme": AUTH_SCHEMES[self.auth], "version": self.ref.version, "ref": self.ref.to_uri(),
                "client": _side(c.client_name, c.client_secret, c.client_nonce),
                "server": _side(c.server_name, c.server_secret, c.server_nonce)}


def _side(name: str, secret: str, nonce: str) -> dict[str, str]:
    return {"name": name, "secret": secret, "nonce": nonce,
            "auth_md5": md5_digest(name, secret, base64.b64decode(nonce))}
