"""Validation of MO instances against DDFs: valid and invalid instances, every leaf format, and a property."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.dm.ddf import (
    DdfRegistry,
    DfFormat,
    MoValidationError,
    load_ddf_bytes,
)
from bootstrap.errors import InvalidRequest
from tests.dm.ddf_support import (
    CERT,
    DMACC_1_0,
    DMACC_1_2,
    TRUST_1_0,
    assert_problem,
    leaf,
    mo_doc,
    problems_of,
)


@pytest.fixture(scope="module")
def registry() -> DdfRegistry:
    return DdfRegistry.load()

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
