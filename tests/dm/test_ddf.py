"""The DDF parser, the DDFs we ship, and validation of MO instances against them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.dm.ddf import (
    DEFAULT_DDF_DIR,
    MAX_DDF_BYTES,
    AccessType,
    Ddf,
    DdfError,
    DdfRegistry,
    DfFormat,
    MoValidationError,
    Occurrence,
    load_ddf,
    load_ddf_bytes,
    node_name_error,
)
from bootstrap.errors import ConfigurationError, InvalidRequest, NotFound

DMACC_1_2 = "urn:oma:mo:oma-dm-dmacc:1.2"
DMACC_1_0 = "urn:oma:mo:oma-dm-dmacc:1.0"
TRUST_1_0 = "urn:oma:mo:ext-dmboot-trust:1.0"
CERT = bytes.fromhex("3082010a0282010100")  # not a real certificate: validation checks formats only


@pytest.fixture(scope="module")
def registry() -> DdfRegistry:
    return DdfRegistry.load()


# --- building DDF documents for the tests ------------------------------------------------------

def leaf(name: str, fmt: str = "chr", occurrence: str = "<One/>", access: str = "<Get/>") -> str:
    return (f"<Node><NodeName>{name}</NodeName><DFProperties><AccessType>{access}</AccessType>"
            f"<DFFormat><{fmt}/></DFFormat><Occurrence>{occurrence}</Occurrence>"
            f"<DFType><MIME>text/plain</MIME></DFType></DFProperties></Node>")


def interior(name: str, *children: str, occurrence: str = "<One/>", moid: str = "") -> str:
    return (f"<Node><NodeName>{name}</NodeName><DFProperties><AccessType><Get/></AccessType>"
            f"<DFFormat><node/></DFFormat><Occurrence>{occurrence}</Occurrence>"
            f"<DFType><DDFName>{moid}</DDFName></DFType></DFProperties>{''.join(children)}</Node>")


def ddf_doc(*nodes: str, prolog: str = "") -> bytes:
    body = "".join(nodes)
    return f'<?xml version="1.0"?>\n{prolog}<MgmtTree>\n<VerDTD>1.2</VerDTD>\n{body}\n</MgmtTree>'.encode()


def mo_doc(*children: str, prolog: str = "") -> bytes:
    """A DDF whose root is a placeholder with the given children, MO id urn:test:mo:1."""
    return ddf_doc(interior("", *children, occurrence="<ZeroOrMore/>", moid="urn:test:mo:1"), prolog=prolog)


def problems_of(excinfo: pytest.ExceptionInfo[MoValidationError]) -> list[str]:
    return [str(p) for p in excinfo.value.problems]


def assert_problem(excinfo: pytest.ExceptionInfo[MoValidationError], path: str, reason: str) -> None:
    found = [p for p in excinfo.value.problems if p.path == path and reason in p.reason]
    assert found, f"no problem {path}: {reason!r} in {problems_of(excinfo)}"


# --- the DDFs we ship --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("file", "moid", "root_path", "mount"),
    [
        ("dmacc-1.2.ddf", DMACC_1_2, "<x>", ""),
        ("dmacc-1.0.ddf", DMACC_1_0, "DMAcc/<x>", "DMAcc"),
        ("dmboot-trust-1.0.ddf", TRUST_1_0, "<x>", ""),
    ],
    ids=["dmacc-1.2", "dmacc-1.0", "trust-1.0"],
)
def test_shipped_ddf_parses(file: str, moid: str, root_path: str, mount: str) -> None:
    ddf = load_ddf(DEFAULT_DDF_DIR / file)
    assert ddf.moid == moid
    assert ddf.root.path == root_path
    assert ddf.root_name is None  # every shipped MO root is a placeholder
    assert ddf.mount == mount
    assert ddf.ver_dtd == "1.2"


def test_registry_loads_every_shipped_ddf(registry: DdfRegistry) -> None:
    assert registry.moids == (TRUST_1_0, DMACC_1_0, DMACC_1_2)
    assert DMACC_1_2 in registry and len(registry) == 3
    assert registry.get(TRUST_1_0).moid == TRUST_1_0


@pytest.mark.parametrize(
    ("moid", "path"),
    [
        (DMACC_1_2, "<x>/Auth/Trsp/Secret"),
        (DMACC_1_2, "<x>/Auth/Noti/Secret"),
        (DMACC_1_2, "<x>/Auth/Bootstrap/ClientSecretKey"),
        (DMACC_1_2, "<x>/Perm/<x>/MOID"),
        (DMACC_1_0, "DMAcc/<x>/AppAuth/<x>/AAuthSecret"),
        (DMACC_1_0, "DMAcc/<x>/AppAuth/<x>/AAuthData"),
    ],
    ids=lambda v: v.rsplit("/", 1)[-1] if v.startswith(("<", "D")) else v.rsplit(":", 1)[-1],
)
def test_secrets_have_no_get(registry: DdfRegistry, moid: str, path: str) -> None:
    node = registry.get(moid).find(path)
    assert node is not None
    assert not node.readable and AccessType.GET not in node.access


@pytest.mark.parametrize(
    ("moid", "path", "expected"),
    [
        (DMACC_1_2, "x1/Auth/Trsp/Data", "<x>/Auth/Trsp/Data"),
        (DMACC_1_2, "<x>/SrvURI", "<x>/SrvURI"),
        (DMACC_1_0, "DMAcc/acct/AppAddr/1/Port/1/PortNbr", "DMAcc/<x>/AppAddr/<x>/Port/<x>/PortNbr"),
        (DMACC_1_0, "./DMAcc/acct/AppID", "DMAcc/<x>/AppID"),
        (TRUST_1_0, "t/Credential/Chain/2", "<x>/Credential/Chain/<x>"),
        (DMACC_1_2, "x1/Nope", None),
        (DMACC_1_2, "x1//SrvID", None),
        (DMACC_1_2, "", None),
    ],
    ids=["instance-names", "ddf-names", "nested-placeholders", "device-uri", "trust-chain",
         "unknown", "empty-step", "empty"],
)
def test_find(registry: DdfRegistry, moid: str, path: str, expected: str | None) -> None:
    node = registry.get(moid).find(path)
    assert (node.path if node else None) == expected


def test_shipped_node_properties(registry: DdfRegistry) -> None:
    trust = registry.get(TRUST_1_0)
    chain = trust.find("<x>/Credential/Chain/<x>")
    assert chain is not None and chain.is_placeholder
    assert (chain.format, chain.occurrence) == (DfFormat.B64, Occurrence(1, 8))
    assert chain.mime == "application/pkix-cert"
    port = registry.get(DMACC_1_0).find("DMAcc/<x>/AppAddr/<x>/Port/<x>/PortNbr")
    assert port is not None and port.format is DfFormat.INT
    assert [n.display_name for n in registry.get(DMACC_1_2).root.children] == [
        "SrvID", "SrvURI", "Name", "Perm", "Auth", "Push", "Ext"]


# --- valid instances ---------------------------------------------------------------------------

DMACC_12_ACCOUNT: dict[str, Any] = {
    "SrvID": "dm.example",
    "SrvURI": "https://dm.example/dm",
    "Name": "Example DM",
    "Perm": {"1": {"MOID": "urn:oma:mo:oma-dm-devinfo:1.0"}},
    "Auth": {
        "Bootstrap": {"ServerURI": "https://boot.example/dm", "SecMode": b"\x00", "ClientPubKey": CERT,
                      "ServerPubKey": b"\x04\x01", "ClientSecretKey": b""},
        "Trsp": {"Data": CERT, "Secret": b"\x30\x00"},
        "Noti": {"Type": 1, "Data": b"\x01", "Secret": "c2VjcmV0"},
    },
    "Push": {"GCM": {"SenderID": "123"}},
    "Ext": {},
}
DMACC_10_ACCOUNT: dict[str, Any] = {
    "AppID": "w7",
    "ServerID": "dm.example",
    "ToConRef": {"c1": {"ConRef": "apn1"}},
    "AppAddr": {"a1": {"Addr": "https://dm.example/dm", "AddrType": "URI", "Port": {"p1": {"PortNbr": 443}}}},
    "AAuthPref": "HTTP-DIGEST",
    "AppAuth": {"srv": {"AAuthLevel": "SRVCRED", "AAuthType": "HTTP-DIGEST", "AAuthName": "dm",
                        "AAuthSecret": "s", "AAuthData": b"nonce"}},
}
TRUST_INSTANCE: dict[str, Any] = {
    "Anchors": {
        "1": {"Role": "dm-server", "Name": "DM root", "Cert": CERT, "Fingerprint": "sha256:00"},
        "2": {"Role": "data-repository", "Cert": "MIIBCgKCAQEA", "Fingerprint": "sha256:01"},
    },
    "Credential": {"Chain": {"1": CERT, "2": CERT}, "NotAfter": "2027-01-31T12:00:00Z"},
}


@pytest.mark.parametrize(
    ("moid", "tree", "at"),
    [
        (DMACC_1_2, {"x1": DMACC_12_ACCOUNT}, ""),
        (DMACC_1_2, DMACC_12_ACCOUNT, "x1"),
        (DMACC_1_2, {"SrvID": "a", "SrvURI": "https://b", "Name": "n", "Perm": {"p": {"MOID": "urn:x:y"}},
                     "Auth": {}}, "x1"),
        (DMACC_1_2, {"Data": "MII=", "Secret": ""}, "x1/Auth/Trsp"),
        (DMACC_1_0, {"DMAcc": {"acct": DMACC_10_ACCOUNT}}, ""),
        (DMACC_1_0, DMACC_10_ACCOUNT, "DMAcc/acct"),
        (TRUST_1_0, {"t": TRUST_INSTANCE}, ""),
        (TRUST_1_0, {}, ""),
    ],
    ids=["dmacc-1.2-top", "dmacc-1.2-instance", "dmacc-1.2-minimal", "dmacc-1.2-subtree",
         "dmacc-1.0-top", "dmacc-1.0-instance", "trust", "no-instances"],
)
def test_valid_instance(registry: DdfRegistry, moid: str, tree: dict[str, object], at: str) -> None:
    registry.get(moid).validate(tree, at=at)  # type: ignore[arg-type]


# --- invalid instances -------------------------------------------------------------------------

def with_sec_mode(value: object) -> dict[str, object]:
    bootstrap = {**DMACC_12_ACCOUNT["Auth"]["Bootstrap"], "SecMode": value}
    return {**DMACC_12_ACCOUNT, "Auth": {"Bootstrap": bootstrap}}


def with_noti_type(value: object) -> dict[str, object]:
    return {**DMACC_12_ACCOUNT, "Auth": {"Noti": {"Type": value, "Data": "", "Secret": ""}}}


WITH_INT_KEY: dict[Any, Any] = {5: "x"}

INVALID = [
    ("unknown-node", DMACC_1_2, {**DMACC_12_ACCOUNT, "Bogus": "x"}, "x1/Bogus", "not defined by the DDF"),
    ("unknown-in-ext", DMACC_1_2, {**DMACC_12_ACCOUNT, "Ext": {"Vendor": 1}}, "x1/Ext/Vendor",
     "not defined by the DDF"),
    ("missing-required", DMACC_1_2, {"SrvID": "a", "Auth": {}}, "x1/SrvURI", "required node missing"),
    ("missing-required-deep", DMACC_1_2, {**DMACC_12_ACCOUNT, "Auth": {"Trsp": {}}}, "x1/Auth/Trsp/Data",
     "required node missing"),
    ("bin-not-base64", DMACC_1_2, {**DMACC_12_ACCOUNT, "Auth": {"Trsp": {"Data": "not base64!"}}},
     "x1/Auth/Trsp/Data", "expected format bin"),
    ("bin-not-canonical-base64", DMACC_1_2, {**DMACC_12_ACCOUNT, "Auth": {"Trsp": {"Data": "MII"}}},
     "x1/Auth/Trsp/Data", "expected format bin"),
    ("chr-got-int", DMACC_1_2, {**DMACC_12_ACCOUNT, "SrvID": 7}, "x1/SrvID",
     "expected format chr (text), got int"),
    ("chr-got-bytes", DMACC_1_2, {**DMACC_12_ACCOUNT, "SrvID": b"a"}, "x1/SrvID", "got bytes"),
    ("int-got-str", DMACC_1_2, with_noti_type("2"), "x1/Auth/Noti/Type", "expected format int"),
    ("int-got-bool", DMACC_1_2, with_noti_type(True), "x1/Auth/Noti/Type", "got bool"),
    ("int-out-of-range", DMACC_1_2, with_noti_type(2**31), "x1/Auth/Noti/Type", "expected format int"),
    # The DMAcc 1.2 table: SecMode is bin, Name and Perm are Required, Auth/Bootstrap has five Required children.
    ("secmode-is-bin", DMACC_1_2, with_sec_mode(2), "x1/Auth/Bootstrap/SecMode", "expected format bin"),
    ("name-required", DMACC_1_2, {k: v for k, v in DMACC_12_ACCOUNT.items() if k != "Name"}, "x1/Name",
     "required node missing"),
    ("perm-required", DMACC_1_2, {k: v for k, v in DMACC_12_ACCOUNT.items() if k != "Perm"}, "x1/Perm",
     "required node missing"),
    ("bootstrap-client-secret-required", DMACC_1_2,
     {**DMACC_12_ACCOUNT, "Auth": {"Bootstrap": {"ServerURI": "u", "SecMode": "AA==", "ClientPubKey": "",
                                                 "ServerPubKey": ""}}},
     "x1/Auth/Bootstrap/ClientSecretKey", "required node missing"),
    ("trsp-secret-required", DMACC_1_2, {**DMACC_12_ACCOUNT, "Auth": {"Trsp": {"Data": CERT}}},
     "x1/Auth/Trsp/Secret", "required node missing"),
    ("leaf-got-tree", DMACC_1_2, {**DMACC_12_ACCOUNT, "SrvURI": {"a": "b"}}, "x1/SrvURI",
     "got an interior node"),
    ("tree-got-leaf", DMACC_1_2, {**DMACC_12_ACCOUNT, "Auth": "x"}, "x1/Auth",
     "expected an interior node, got str"),
    ("too-few-placeholders", DMACC_1_2, {**DMACC_12_ACCOUNT, "Perm": {}}, "x1/Perm/<x>", "at least 1"),
    ("too-many-placeholders", TRUST_1_0,
     {**TRUST_INSTANCE, "Credential": {"Chain": {str(i): CERT for i in range(1, 10)}, "NotAfter": "x"}},
     "x1/Credential/Chain/<x>", "at most 8 node(s) allowed (OneOrN(8)), found 9"),
    ("bad-name-slash", DMACC_1_2, {**DMACC_12_ACCOUNT, "Perm": {"a/b": {"MOID": "m"}}}, "x1/Perm/'a/b'",
     "contains '/'"),
    ("bad-name-empty", DMACC_1_2, {**DMACC_12_ACCOUNT, "Perm": {"": {"MOID": "m"}}}, "x1/Perm/''",
     "empty node name"),
    ("bad-name-wildcard", DMACC_1_2, {**DMACC_12_ACCOUNT, "Perm": {"*": {"MOID": "m"}}}, "x1/Perm/'*'",
     "reserved"),
    ("bad-name-control", DMACC_1_2, {**DMACC_12_ACCOUNT, "Perm": {"a\nb": {"MOID": "m"}}}, "x1/Perm/'a\\nb'",
     "control character"),
    ("bad-name-long", DMACC_1_2, {**DMACC_12_ACCOUNT, "Perm": {"p" * 129: {"MOID": "m"}}},
     f"x1/Perm/'{'p' * 129}'", "longer than 128"),
    ("name-not-str", DMACC_1_2, {**DMACC_12_ACCOUNT, **WITH_INT_KEY}, "x1/5", "not a string"),
]


@pytest.mark.parametrize(("moid", "tree", "path", "reason"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_instance(registry: DdfRegistry, moid: str, tree: dict[str, object], path: str,
                          reason: str) -> None:
    with pytest.raises(MoValidationError) as excinfo:
        registry.get(moid).validate(tree, at="x1")  # type: ignore[arg-type]
    assert_problem(excinfo, path, reason)
    assert isinstance(excinfo.value, InvalidRequest)
    assert excinfo.value.field == excinfo.value.problems[0].path


def test_every_problem_is_reported_at_once(registry: DdfRegistry) -> None:
    tree: dict[str, Any] = {"SrvID": 1, "Bogus": "x", "Auth": {"Trsp": {"Data": "!"}}}
    with pytest.raises(MoValidationError) as excinfo:
        registry.get(DMACC_1_2).validate(tree, at="x1")
    assert problems_of(excinfo) == [
        "x1/SrvID: expected format chr (text), got int",
        "x1/Bogus: not defined by the DDF",
        "x1/Auth/Trsp/Data: expected format bin (bytes or base64 text), got str",
        "x1/Auth/Trsp/Secret: required node missing",
        "x1/SrvURI: required node missing",
        "x1/Name: required node missing",
        "x1/Perm: required node missing",
    ]
    assert str(excinfo.value).startswith("x1/SrvID: expected format chr")


def test_problems_never_echo_values(registry: DdfRegistry) -> None:
    tree = {**DMACC_12_ACCOUNT, "Auth": {"Trsp": {"Data": CERT, "Secret": "hunter2 is not base64"}}}
    with pytest.raises(MoValidationError) as excinfo:
        registry.get(DMACC_1_2).validate(tree, at="x1")
    assert "hunter2" not in str(excinfo.value)
    assert_problem(excinfo, "x1/Auth/Trsp/Secret", "expected format bin")


@pytest.mark.parametrize(
    ("at", "label", "path", "reason"),
    [
        ("x1/Nope", None, "x1/Nope", "not defined by the DDF"),
        ("x1/SrvURI", None, "x1/SrvURI", "is a leaf"),
        ("x1/a?b", None, "x1/a?b", "contains"),
        ("x1/Nope", f"{DMACC_1_2}/x1/Nope", f"{DMACC_1_2}/x1/Nope", "not defined"),
    ],
    ids=["unknown", "leaf", "bad-name", "label"],
)
def test_validate_at_must_name_an_interior_node(registry: DdfRegistry, at: str, label: str | None, path: str,
                                                reason: str) -> None:
    with pytest.raises(MoValidationError) as excinfo:
        registry.get(DMACC_1_2).validate({}, at=at, label=label)
    assert_problem(excinfo, path, reason)


def test_validate_top_level_occurrence(registry: DdfRegistry) -> None:
    with pytest.raises(MoValidationError) as excinfo:
        registry.get(DMACC_1_0).validate({})
    assert problems_of(excinfo) == ["DMAcc: required node missing"]


# --- every leaf format -------------------------------------------------------------------------

ALL_FORMATS = mo_doc(*(leaf(f.value.capitalize(), f.value, "<ZeroOrOne/>") for f in DfFormat
                       if f is not DfFormat.NODE))

FORMAT_CASES = [
    ("Chr", "text", True), ("Chr", "", True), ("Chr", None, False),
    ("Xml", "<a/>", True), ("Xml", 1, False),
    ("Int", 0, True), ("Int", -(2**31), True), ("Int", 2**31 - 1, True), ("Int", 2**31, False),
    ("Int", 1.0, False), ("Int", False, False),
    ("Bool", True, True), ("Bool", 1, False), ("Bool", "true", False),
    ("Float", 1.5, True), ("Float", 2, True), ("Float", float("nan"), False), ("Float", float("inf"), False),
    ("Float", True, False),
    ("Bin", b"", True), ("Bin", b"\x00\xff", True), ("Bin", "AP8=", True), ("Bin", "AP8", False),
    ("Bin", "AP8=\n", False), ("Bin", "A-8=", False), ("Bin", 1, False),
    ("B64", b"x", True), ("B64", "eA==", True), ("B64", "eA", False),
    ("Date", "2026-01-31", True), ("Date", "20260131", True), ("Date", "2026-02-30", False),
    ("Date", 1, False),
    ("Time", "12:30:00", True), ("Time", "12:30:00+01:00", True), ("Time", "25:00", False),
    ("Null", None, True), ("Null", "", False),
]


@pytest.mark.parametrize(("name", "value", "ok"), FORMAT_CASES,
                         ids=[f"{n.lower()}-{v!r}-{'ok' if ok else 'bad'}" for n, v, ok in FORMAT_CASES])
def test_leaf_format(name: str, value: object, ok: bool) -> None:
    ddf = load_ddf_bytes(ALL_FORMATS)
    if ok:
        ddf.validate({name: value}, at="i")  # type: ignore[dict-item]
        return
    with pytest.raises(MoValidationError) as excinfo:
        ddf.validate({name: value}, at="i")  # type: ignore[dict-item]
    assert_problem(excinfo, f"i/{name}", f"expected format {name.lower()}")


# --- broken DDFs -------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE MgmtTree [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<MgmtTree>&lol2;</MgmtTree>"""

BROKEN = [
    ("broken-xml", b'<?xml version="1.0"?>\n<MgmtTree>\n<VerDTD>1.2</VerDTD>\n<Node>\n</MgmtTree>',
     "not well-formed XML: mismatched tag", 5),
    ("empty", b"", "not well-formed XML: no element found", 1),
    ("undefined-entity", ddf_doc("&nope;"), "not well-formed XML: undefined entity", 4),
    ("billion-laughs", BILLION_LAUGHS, "an ENTITY declaration is refused", 3),
    ("external-entity", mo_doc(prolog='<!DOCTYPE MgmtTree [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'),
     "an ENTITY declaration is refused", 2),
    ("parameter-entity",
     mo_doc(prolog='<!DOCTYPE MgmtTree [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]>\n'),
     "an ENTITY declaration is refused", 2),
    ("element-declaration", mo_doc(prolog="<!DOCTYPE MgmtTree [<!ELEMENT MgmtTree ANY>]>\n"),
     "an ELEMENT declaration is refused", 2),
    ("external-dtd-entity-ref",
     b'<!DOCTYPE MgmtTree SYSTEM "file:///etc/passwd">\n<MgmtTree>&passwd;</MgmtTree>',
     "the undeclared entity &passwd; is refused", 2),
    ("other-doctype", mo_doc(prolog="<!DOCTYPE html>\n"), "DOCTYPE 'html' (expected MgmtTree) is refused", 2),
    ("missing-mgmttree", b"<Node><NodeName>a</NodeName></Node>",
     "root element is <Node>, expected <MgmtTree>", 1),
    ("missing-verdtd", f"<MgmtTree>{leaf('a')}</MgmtTree>", "MgmtTree: <MgmtTree> has no <VerDTD>", 1),
    ("empty-verdtd", b"<MgmtTree><VerDTD/></MgmtTree>", "MgmtTree: <VerDTD> is empty", 1),
    ("no-node", ddf_doc(), "MgmtTree: <MgmtTree> has no <Node>", 2),
    ("missing-nodename", mo_doc("<Node><DFProperties/></Node>"), "<x>: <Node> has no <NodeName>", 4),
    ("missing-dfproperties", mo_doc("<Node><NodeName>A</NodeName></Node>"),
     "<x>/A: <Node> has no <DFProperties>", 4),
    ("missing-dfformat", mo_doc(leaf("A").replace("<DFFormat><chr/></DFFormat>", "")),
     "<x>/A: <DFProperties> has no <DFFormat>", 4),
    ("missing-accesstype", mo_doc(leaf("A").replace("<AccessType><Get/></AccessType>", "")),
     "<x>/A: <DFProperties> has no <AccessType>", 4),
    ("unknown-format", mo_doc(leaf("A", "str")), "<x>/A: unknown <DFFormat> value <str>", 4),
    ("two-formats", mo_doc(leaf("A", "chr/><int")), "<x>/A: <DFFormat> must hold exactly one of", 4),
    ("unknown-access", mo_doc(leaf("A", access="<Get/><Read/>")), "<x>/A: unknown access type <Read>", 4),
    ("unknown-occurrence", mo_doc(leaf("A", occurrence="<Many/>")),
     "<x>/A: <Occurrence> must hold exactly one", 4),
    ("zero-or-n-no-number", mo_doc(leaf("A", occurrence="<ZeroOrN/>")),
     "<x>/A: <ZeroOrN> must hold a positive integer, not ''", 4),
    ("one-or-n-zero", mo_doc(leaf("A", occurrence="<OneOrN>0</OneOrN>")),
     "<x>/A: <OneOrN> must hold a positive integer, not '0'", 4),
    ("duplicate-occurrence",
     mo_doc(leaf("A").replace("</DFProperties>", "<Occurrence><One/></Occurrence></DFProperties>")),
     "<x>/A: more than one <Occurrence>", 4),
    ("leaf-with-children", mo_doc(leaf("A").replace("</Node>", leaf("B") + "</Node>", 1)),
     "<x>/A: a leaf (format chr) cannot have child nodes", 4),
    ("duplicate-name", mo_doc(leaf("A"), leaf("A")), "<x>/A: duplicate node name under <x>", 4),
    ("two-placeholders", mo_doc(leaf(""), leaf("")), "<x>/<x>: more than one placeholder under <x>", 4),
    ("bad-node-name", mo_doc(leaf("a/b")), "<x>/a/b: <NodeName>: node name contains '/'", 4),
    ("no-ddfname", ddf_doc(interior("A", leaf("B"))),
     "MgmtTree: no node declares the MO type (DFType/DDFName)", 2),
    ("leaf-mo-root", ddf_doc(leaf("A").replace("<MIME>text/plain</MIME>", "<DDFName>urn:x:y</DDFName>")),
     "A: the MO root must be an interior node, not format chr", 2),
    ("mime-and-ddfname", mo_doc(leaf("A").replace("</MIME>", "</MIME><DDFName/>")),
     "<x>/A: <DFType> must hold exactly one of <MIME>, <DDFName>", 4),
]


@pytest.mark.parametrize(("doc", "message", "line"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_ddf(doc: bytes | str, message: str, line: int) -> None:
    data = doc.encode() if isinstance(doc, str) else doc
    with pytest.raises(DdfError) as excinfo:
        load_ddf_bytes(data, source="test.ddf")
    assert isinstance(excinfo.value, ConfigurationError)
    assert message in str(excinfo.value)
    assert excinfo.value.line == line
    assert str(excinfo.value).startswith(f"test.ddf:{line}: ")


def test_oversized_ddf_is_refused_before_parsing() -> None:
    with pytest.raises(DdfError, match="larger than"):
        load_ddf_bytes(b" " * (MAX_DDF_BYTES + 1))


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(DdfError, match="nested deeper than"):
        load_ddf_bytes(b"<MgmtTree>" + b"<a>" * 200 + b"</a>" * 200 + b"</MgmtTree>")


def test_bare_doctype_as_published_by_oma_is_accepted() -> None:
    # OMA's and Microsoft's DDFs carry a DOCTYPE, some with a processing instruction as internal subset.
    prolog = ('<!DOCTYPE MgmtTree PUBLIC "-//OMA//DTD-DM-DDF 1.2//EN" '
              '"http://www.openmobilealliance.org/tech/DTD/DM_DDF-V1_2.dtd"'
              '[<?oma-dm-ddf-ver supported-versions="1.2"?>]>\n')
    ddf = load_ddf_bytes(mo_doc(leaf("A"), prolog=prolog))
    assert ddf.moid == "urn:test:mo:1"


def test_utf16_ddf() -> None:
    doc = mo_doc(leaf("Größe")).decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
    ddf = load_ddf_bytes(doc.encode("utf-16"))
    assert ddf.find("<x>/Größe") is not None


def test_ignored_and_foreign_elements() -> None:
    # RTProperties, Value and vendor extensions (MSFT:...) are ignored, as DM 2.0 says.
    extra = "<RTProperties><ACL/></RTProperties><MSFT:Applicability/>"
    doc = mo_doc(leaf("A").replace("<DFProperties>", extra + "<DFProperties>"))
    ddf = load_ddf_bytes(doc.replace(b"<MgmtTree>", b'<MgmtTree xmlns:MSFT="urn:x">'))
    assert [n.path for n in ddf.walk()] == ["<x>", "<x>/A"]


def test_defaults_and_optional_properties() -> None:
    doc = mo_doc(
        "<Node><NodeName>A</NodeName><DFProperties><AccessType/><DefaultValue>w7</DefaultValue>"
        "<Description>d</Description><DFFormat><chr/></DFFormat><Scope><Permanent/></Scope>"
        "<DFTitle>t</DFTitle><CaseSense><CIS/></CaseSense></DFProperties></Node>"
    )
    ddf = load_ddf_bytes(doc)
    node = ddf.find("<x>/A")
    assert node is not None
    assert node.occurrence == Occurrence(1, 1) and node.access == frozenset()
    assert (node.default, node.description, node.title, node.mime) == ("w7", "d", "t", None)
    assert not node.case_sensitive
    assert ddf.find("i/a") is node  # CIS: matched case-insensitively


@pytest.mark.parametrize(
    ("occurrence", "label"),
    [(Occurrence(1, 1), "One"), (Occurrence(0, 1), "ZeroOrOne"), (Occurrence(0, None), "ZeroOrMore"),
     (Occurrence(1, None), "OneOrMore"), (Occurrence(0, 5), "ZeroOrN(5)"), (Occurrence(1, 8), "OneOrN(8)")],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_occurrence_label(occurrence: Occurrence, label: str) -> None:
    assert occurrence.label == label


@pytest.mark.parametrize(
    ("name", "ok"),
    [("x1", True), ("Größe", True), ("a b", True), ("", False), ("a/b", False), ("a?b", False), ("a#", False),
     (".", False), ("..", False), ("*", False), ("(x)", False), ("<x>", False), ("a\x7f", False),
     ("\ud800", False), ("n" * 128, True), ("n" * 129, False)],
    ids=lambda v: repr(v)[:12] if isinstance(v, str) else None,
)
def test_node_name_rules(name: str, ok: bool) -> None:
    assert (node_name_error(name) is None) == ok


# --- files and the registry --------------------------------------------------------------------

def test_load_ddf_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DdfError, match="cannot read"):
        load_ddf(tmp_path / "absent.ddf")


def test_extra_directory_overrides_shipped_ddf(tmp_path: Path) -> None:
    doc = ddf_doc(interior("", leaf("Only"), occurrence="<ZeroOrMore/>", moid=TRUST_1_0))
    (tmp_path / "replacement.ddf").write_bytes(doc)
    (tmp_path / "not-a-ddf.txt").write_text("ignored")
    registry = DdfRegistry.load(tmp_path)
    assert len(registry) == 3
    assert registry.get(TRUST_1_0).source == str(tmp_path / "replacement.ddf")
    assert registry.get(DMACC_1_2).source == str(DEFAULT_DDF_DIR / "dmacc-1.2.ddf")


def test_same_mo_twice_in_one_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.ddf").write_bytes(mo_doc(leaf("A")))
    (tmp_path / "b.ddf").write_bytes(mo_doc(leaf("B")))
    with pytest.raises(DdfError, match=r"b\.ddf: MO urn:test:mo:1 is also described by .*a\.ddf"):
        DdfRegistry.load(tmp_path, default_dir=None)


def test_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="DDF directory does not exist"):
        DdfRegistry.load(tmp_path / "nope")


def test_registry_get_unknown_mo(registry: DdfRegistry) -> None:
    assert registry.find("urn:x:unknown") is None
    with pytest.raises(NotFound) as excinfo:
        registry.get("urn:x:unknown")
    assert excinfo.value.field == "MOID"


def test_registry_from_ddfs() -> None:
    ddf = load_ddf_bytes(mo_doc(leaf("A")))
    registry = DdfRegistry([ddf])
    assert list(registry) == [ddf] and isinstance(registry.get("urn:test:mo:1"), Ddf)


# --- property: validate only ever raises MoValidationError --------------------------------------

_SHIPPED = DdfRegistry.load()
_NAMES = sorted({n.name for d in _SHIPPED for n in d.walk() if n.name} | {"x1", "1", "DMAcc"})
_keys = st.sampled_from(_NAMES) | st.text(max_size=6) | st.integers(-2, 2) | st.none()
_leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
           | st.binary(max_size=8) | st.lists(st.integers(), max_size=2) | st.just(object()))
_trees = st.recursive(_leaves, lambda kids: st.dictionaries(_keys, kids, max_size=5), max_leaves=30)


@given(moid=st.sampled_from(_SHIPPED.moids), tree=_trees,
       at=st.sampled_from(["", "x1", "x1/Auth", "DMAcc/a"]))
def test_validate_raises_only_mo_validation_error(moid: str, tree: object, at: str) -> None:
    try:
        _SHIPPED.get(moid).validate(tree, at=at)  # type: ignore[arg-type]
    except MoValidationError as exc:
        assert exc.problems and all(isinstance(p.reason, str) and p.reason for p in exc.problems)
