"""The DMAcc 1.0 builder: its tree, its nodes, the message, the DDF it must satisfy."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from bootstrap.dm.ddf import DEFAULT_DDF_DIR, MoValidationError, load_ddf
from bootstrap.dm.dm1_security import generate_dm1_credentials
from bootstrap.dm.dmacc10 import Dm1Account, Dm1AppAuth, Tree, app_auths, build_dmacc10, tree_to_nodes
from bootstrap.dm.syncml import DmNode, SyncHeader, bootstrap_commands, parse_message, to_wbxml

CLIENT = Dm1AppAuth("CLCRED", "DIGEST", "IMEI:490154203237518", "client-secret", b"\x01\x02")
SERVER = Dm1AppAuth("SRVCRED", "HMAC", "dm.example.com", "server-secret", None)
ACCOUNT = Dm1Account(
    account_name="x1",
    server_id="dm.example.com",
    name="Example DM",
    addr="https://dm.example.com/dm",
    addr_type="URI",
    port=443,
    auth_pref="DIGEST",
    client_auth=CLIENT,
    server_auth=SERVER,
)
EXPECTED_TREE = {
    "DMAcc": {
        "x1": {
            "AppID": "w7",
            "ServerID": "dm.example.com",
            "Name": "Example DM",
            "PrefConRef": "",
            "AppAddr": {
                "1": {"Addr": "https://dm.example.com/dm", "AddrType": "URI", "Port": {"1": {"PortNbr": 443}}}
            },
            "AAuthPref": "DIGEST",
            "AppAuth": {
                "1": {
                    "AAuthLevel": "CLCRED",
                    "AAuthType": "DIGEST",
                    "AAuthName": "IMEI:490154203237518",
                    "AAuthSecret": "client-secret",
                    "AAuthData": b"\x01\x02",
                },
                "2": {
                    "AAuthLevel": "SRVCRED",
                    "AAuthType": "HMAC",
                    "AAuthName": "dm.example.com",
                    "AAuthSecret": "server-secret",
                },
            },
        }
    }
}


def test_tree_is_the_dmacc_subtree() -> None:
    assert build_dmacc10(ACCOUNT).tree == EXPECTED_TREE


def test_nodes_list_parents_first_with_formats() -> None:
    nodes = build_dmacc10(ACCOUNT).nodes
    assert nodes[0] == DmNode("./DMAcc/x1", "node", type="org.openmobilealliance/1.0/w7")
    assert [n.path.removeprefix("./DMAcc/x1") for n in nodes] == [
        "", "/AppID", "/ServerID", "/Name", "/PrefConRef",
        "/AppAddr", "/AppAddr/1", "/AppAddr/1/Addr", "/AppAddr/1/AddrType",
        "/AppAddr/1/Port", "/AppAddr/1/Port/1", "/AppAddr/1/Port/1/PortNbr", "/AAuthPref",
        "/AppAuth", "/AppAuth/1", "/AppAuth/1/AAuthLevel", "/AppAuth/1/AAuthType",
        "/AppAuth/1/AAuthName", "/AppAuth/1/AAuthSecret", "/AppAuth/1/AAuthData",
        "/AppAuth/2", "/AppAuth/2/AAuthLevel", "/AppAuth/2/AAuthType",
        "/AppAuth/2/AAuthName", "/AppAuth/2/AAuthSecret",
    ]  # fmt: skip
    by_path = {n.path: n for n in nodes}
    interior = {p for p, n in by_path.items() if n.format == "node"}
    assert all(n.path.rsplit("/", 1)[0] in interior for n in nodes[1:])
    assert by_path["./DMAcc/x1/AppID"].value == "w7"
    assert by_path["./DMAcc/x1/AppAddr/1/Port/1/PortNbr"] == DmNode(
        "./DMAcc/x1/AppAddr/1/Port/1/PortNbr", "int", 443
    )
    assert by_path["./DMAcc/x1/AppAuth/1/AAuthData"] == DmNode(
        "./DMAcc/x1/AppAuth/1/AAuthData", "bin", b"\x01\x02"
    )
    assert "./DMAcc/x1/AppAuth/2/AAuthData" not in by_path


def _subtree(tree: Tree, *names: str) -> Tree:
    for name in names:
        child = tree[name]
        assert isinstance(child, dict), name
        tree = child
    return tree


def test_without_port_there_is_no_port_subtree() -> None:
    account = Dm1Account("acc", "s", "n", "10.0.0.1", "IPv4", None, "BASIC", CLIENT, SERVER)
    assert "Port" not in _subtree(build_dmacc10(account).tree, "DMAcc", "acc", "AppAddr", "1")


def test_message_round_trips_the_account() -> None:
    nodes = build_dmacc10(ACCOUNT).nodes
    message = parse_message(
        to_wbxml(SyncHeader("IMEI:490154203237518", "dm.example.com"), bootstrap_commands(nodes))
    )
    assert [n for cmd in message.commands for n in cmd.nodes] == nodes


def test_tree_to_nodes_picks_formats_from_python_types() -> None:
    nodes = tree_to_nodes({"a": "s", "b": 1, "c": True, "d": b"\x00", "e": {"f": "g"}}, "./X")
    assert [(n.path, n.format) for n in nodes] == [
        ("./X/a", "chr"),
        ("./X/b", "int"),
        ("./X/c", "bool"),
        ("./X/d", "bin"),
        ("./X/e", "node"),
        ("./X/e/f", "chr"),
    ]


def test_app_auths_come_from_generated_credentials() -> None:
    creds = generate_dm1_credentials("IMEI:490154203237518", "dm.example.com")
    client, server = app_auths(creds, "HMAC")
    assert (client.level, client.type, client.name, client.secret) == (
        "CLCRED",
        "HMAC",
        creds.client_name,
        creds.client_secret,
    )
    assert client.data == base64.b64decode(creds.client_nonce)
    assert (server.level, server.name, server.secret) == ("SRVCRED", "dm.example.com", creds.server_secret)
    assert server.data == base64.b64decode(creds.server_nonce)


def test_repr_hides_secrets() -> None:
    text = repr(ACCOUNT)
    assert "client-secret" not in text and "server-secret" not in text and "\\x01\\x02" not in text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"account_name": ""}, "account_name"),
        ({"account_name": "a/b"}, "account_name"),
        ({"addr_type": "URL"}, "addr_type"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"auth_pref": "MD5"}, "auth_pref"),
        ({"client_auth": SERVER}, "client_auth"),
    ],
    ids=[
        "empty-name",
        "slash-in-name",
        "bad-addr-type",
        "port-0",
        "port-65536",
        "bad-auth-pref",
        "swapped-auth",
    ],
)
def test_bad_accounts_are_refused(change: dict[str, Any], field: str) -> None:
    fields = {**ACCOUNT.__dict__, **change}
    with pytest.raises(ValueError, match=field):
        Dm1Account(**fields)


@pytest.mark.parametrize(
    ("level", "auth_type"), [("CLIENT", "DIGEST"), ("CLCRED", "DIGEST-MD5")], ids=["bad-level", "bad-type"]
)
def test_bad_app_auth_is_refused(level: str, auth_type: str) -> None:
    with pytest.raises(ValueError):
        Dm1AppAuth(level, auth_type, "n", "s")


# --------------------------------------------------------------------------- the DDF


def test_tree_satisfies_the_dmacc_1_0_ddf() -> None:
    ddf = load_ddf(DEFAULT_DDF_DIR / "dmacc-1.0.ddf")
    ddf.validate(build_dmacc10(ACCOUNT).tree)
    ddf.validate(_subtree(build_dmacc10(ACCOUNT).tree, "DMAcc", "x1"), at="DMAcc/x1")


def test_ddf_check_catches_a_missing_server_id() -> None:
    account = dict(_subtree(build_dmacc10(ACCOUNT).tree, "DMAcc", "x1"))
    del account["ServerID"]
    with pytest.raises(MoValidationError, match="ServerID"):
        load_ddf(DEFAULT_DDF_DIR / "dmacc-1.0.ddf").validate({"DMAcc": {"x1": account}})
