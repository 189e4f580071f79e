"""The DMAcc 1.0 management object (``./DMAcc/<x>``) for OMA DM 1.2/1.3 devices.

Nodes after OMA-TS-DM_StdObj-V1_2 section 5.3 (DDF ``urn:oma:mo:oma-dm-dmacc:1.0``)::

    ./DMAcc/<x>                 node, Type org.openmobilealliance/1.0/w7
        AppID  ServerID  Name  PrefConRef                      chr ("w7" for AppID)
        AppAddr/<x>/{Addr, AddrType}                           chr
        AppAddr/<x>/Port/<x>/PortNbr                           int
        AAuthPref                                              chr
        AppAuth/<x>/{AAuthLevel, AAuthType, AAuthName, AAuthSecret}  chr
        AppAuth/<x>/AAuthData                                  bin

Our own choices, kept here: the AppAddr and Port instances are named ``1``; the
client credential (CLCRED) is ``AppAuth/1`` and the server credential (SRVCRED)
``AppAuth/2``; AAuthData is left out when there is none. Deployed DDFs differ on
PortNbr (int in config/ddf/dmacc-1.0.ddf, chr in some vendors'); we send int.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from bootstrap.dm.dm1_security import Dm1Credentials
from bootstrap.dm.syncml import DmNode

__all__ = [
    "AAUTH_TYPES",
    "APP_ID",
    "DMACC10_DDF_TYPE",
    "Dm1Account",
    "Dm1AppAuth",
    "DmAcc10",
    "Tree",
    "app_auths",
    "build_dmacc10",
    "tree_to_nodes",
]

APP_ID = "w7"
DMACC10_DDF_TYPE = "org.openmobilealliance/1.0/w7"
#: AAuthType and AAuthPref values of the DMAcc 1.0 DDF.
AAUTH_TYPES = frozenset(
    "HTTP-BASIC HTTP-DIGEST BASIC DIGEST HMAC X509 SECURID SAFEWORD DIGIPASS TRANSPORT".split()
)
_AAUTH_LEVELS = frozenset({"CLCRED", "SRVCRED", "OBEX", "HTTP"})
_ADDR_TYPES = frozenset({"URI", "IPv4", "IPv6"})

#: A management subtree: interior node name -> subtree, leaf name -> value.
Tree: TypeAlias = dict[str, "Tree | str | int | bool | bytes"]


@dataclass(frozen=True)
class Dm1AppAuth:
    """One ``AppAuth/<x>`` credential. Secret and data are hidden from repr."""

    level: str
    type: str
    name: str
    secret: str = field(repr=False)
    data: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.level not in _AAUTH_LEVELS:
            raise ValueError(f"level: AAuthLevel must be one of {sorted(_AAUTH_LEVELS)}")
        if self.type not in AAUTH_TYPES:
            raise ValueError(f"type: AAuthType must be one of {sorted(AAUTH_TYPES)}")


@dataclass(frozen=True)
class Dm1Account:
    """A DM 1.x server account, neutral of any storage.

    Attributes:
        account_name: The ``<x>`` node under ``./DMAcc``.
        server_id: ServerID, the server's name in the device's ACLs.
        name: Name, shown to the user.
        addr: Addr, the server URL (or IP address, by ``addr_type``).
        addr_type: AddrType: ``URI``, ``IPv4`` or ``IPv6``.
        port: PortNbr, or None to leave the Port subtree out.
        auth_pref: AAuthPref, one of :data:`AAUTH_TYPES`.
        client_auth: The credential the device presents (AAuthLevel CLCRED).
        server_auth: The credential the server presents (AAuthLevel SRVCRED).
        pref_con_ref: PrefConRef, a connectivity reference; empty for "any".
    """

    account_name: str
    server_id: str
    name: str
    addr: str
    addr_type: Literal["URI", "IPv4", "IPv6"]
    port: int | None
    auth_pref: str
    client_auth: Dm1AppAuth
    server_auth: Dm1AppAuth
    pref_con_ref: str = ""

    def __post_init__(self) -> None:
        if not self.account_name or "/" in self.account_name:
            raise ValueError("account_name: must be one non-empty URI segment")
        if self.addr_type not in _ADDR_TYPES:
            raise ValueError(f"addr_type: must be one of {sorted(_ADDR_TYPES)}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError("port: must be 1 to 65535")
        if self.auth_pref not in AAUTH_TYPES:
            raise ValueError(f"auth_pref: must be one of {sorted(AAUTH_TYPES)}")
        if (self.client_auth.level, self.server_auth.level) != ("CLCRED", "SRVCRED"):
            raise ValueError("client_auth/server_auth: levels must be CLCRED and SRVCRED")


@dataclass(frozen=True)
class DmAcc10:
    """A built account: the nodes for a SyncML message and the same data as a tree.

    ``tree`` is rooted at ``DMAcc`` (``{"DMAcc": {<x>: {...}}}``), the shape a
    DDF validator walks; ``nodes`` lists ``./DMAcc/<x>`` and everything under it,
    parents first, ready for :func:`bootstrap.dm.syncml.bootstrap_commands`.
    """

    nodes: list[DmNode]
    tree: Tree


def app_auths(credentials: Dm1Credentials, auth_type: str = "DIGEST") -> tuple[Dm1AppAuth, Dm1AppAuth]:
    """Turn generated credentials into the CLCRED and SRVCRED AppAuth entries."""
    client = Dm1AppAuth("CLCRED", auth_type, credentials.client_name, credentials.client_secret,
                        base64.b64decode(credentials.client_nonce))  # fmt: skip
    server = Dm1AppAuth("SRVCRED", auth_type, credentials.server_name, credentials.server_secret,
                        base64.b64decode(credentials.server_nonce))  # fmt: skip
    return client, server


def build_dmacc10(account: Dm1Account) -> DmAcc10:
    """Build the ``./DMAcc/<x>`` subtree for ``account``."""
    app_addr: Tree = {"Addr": account.addr, "AddrType": account.addr_type}
    if account.port is not None:
        app_addr["Port"] = {"1": {"PortNbr": account.port}}
    acc: Tree = {
        "AppID": APP_ID,
        "ServerID": account.server_id,
        "Name": account.name,
        "PrefConRef": account.pref_con_ref,
        "AppAddr": {"1": app_addr},
        "AAuthPref": account.auth_pref,
        "AppAuth": {"1": _app_auth(account.client_auth), "2": _app_auth(account.server_auth)},
    }
    nodes = [DmNode(f"./DMAcc/{account.account_name}", "node", type=DMACC10_DDF_TYPE)]
    nodes += tree_to_nodes(acc, f"./DMAcc/{account.account_name}")
    return DmAcc10(nodes, {"DMAcc": {account.account_name: acc}})


def _app_auth(auth: Dm1AppAuth) -> Tree:
    entry: Tree = {
        "AAuthLevel": auth.level,
        "AAuthType": auth.type,
        "AAuthName": auth.name,
        "AAuthSecret": auth.secret,
    }
    if auth.data is not None:
        entry["AAuthData"] = auth.data
    return entry


def tree_to_nodes(tree: Tree, base: str) -> list[DmNode]:
    """Flatten a subtree under URI ``base`` into nodes, parents before children.

    Leaf formats follow the Python type: str -> chr, bool -> bool, int -> int,
    bytes -> bin; a dict is an interior node.
    """
    nodes: list[DmNode] = []
    for name, value in tree.items():
        path = f"{base}/{name}"
        if isinstance(value, dict):
            nodes.append(DmNode(path, "node"))
            nodes += tree_to_nodes(value, path)
        else:
            nodes.append(DmNode(path, _FORMAT_OF[type(value)], value))
    return nodes


_FORMAT_OF: dict[type, str] = {str: "chr", bool: "bool", int: "int", bytes: "bin"}
