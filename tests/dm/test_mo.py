"""DM 2.0 MO instance JSON: ClientURI, MoInstance, CV, and validation before sending."""

from __future__ import annotations

import base64
import hashlib
import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.dm.ddf import DdfRegistry, MoValidationError, node_name_error
from bootstrap.dm.mo import (
    DMACC_1_0,
    DMACC_1_2,
    MAX_TREE_DEPTH,
    OMNA_DDF_URLS,
    TRUST_1_0,
    ClientUri,
    MoInstance,
    canonical_json,
    compute_cv,
    ddf_url,
    dump_instances,
    load_instances,
    trust_fingerprint,
    validate_instance,
)

DDF_URL = "https://boot.example/ddf/x"
ACCOUNT: dict[str, Any] = {
    "SrvID": "dm.example",
    "SrvURI": "https://dm.example/dm",
    "Name": "Example DM",
    "Perm": {"1": {"MOID": "urn:oma:mo:oma-dm-devinfo:1.0"}},
    "Auth": {"Trsp": {"Data": b"\x30\x82\x01\x0a", "Secret": b""}},
}


@pytest.fixture(scope="module")
def registry() -> DdfRegistry:
    return DdfRegistry.load()


def instance_json(**changes: object) -> dict[str, object]:
    obj: dict[str, object] = {"DDF": DDF_URL, "MOID": DMACC_1_2, "ClientURI": f"{DMACC_1_2}/x1",
                              "MOData": {"SrvID": "a"}}
    obj.update(changes)
    return {k: v for k, v in obj.items() if v is not ...}


def assert_problem(excinfo: pytest.ExceptionInfo[MoValidationError], path: str, reason: str) -> None:
    found = [p for p in excinfo.value.problems if p.path == path and reason in p.reason]
    assert found, f"no problem {path}: {reason!r} in {[str(p) for p in excinfo.value.problems]}"


# --- ClientURI ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "uri"),
    [
        (f"{DMACC_1_2}/*", ClientUri(DMACC_1_2)),
        (f"{DMACC_1_2}/x1", ClientUri(DMACC_1_2, "x1")),
        (f"{DMACC_1_2}/x1/Auth/Trsp", ClientUri(DMACC_1_2, "x1", ("Auth", "Trsp"))),
        ("urn:oma:mo:moid:1.0/a%20b", ClientUri("urn:oma:mo:moid:1.0", "a%20b")),
    ],
    ids=["all-instances", "instance", "path", "escaped-name"],
)
def test_client_uri_round_trip(text: str, uri: ClientUri) -> None:
    assert ClientUri.parse(text) == uri
    assert str(uri) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (DMACC_1_2, "names no instance"),
        (f"{DMACC_1_2}/", "names no instance"),
        (f"{DMACC_1_2}//Auth", "empty node name"),
        (f"{DMACC_1_2}/x1/", "empty node name"),
        (f"{DMACC_1_2}/(x)/Auth", "reserved"),
        (f"{DMACC_1_2}/*/Auth", "a path after '*' is not supported"),
        (f"{DMACC_1_2}/x1?cv=abc", "query"),
        ("urn:oma:mo:moid:1.0/(x)/Data?nv=(x)/ID:GPS", "query"),
        ("dmacc/x1", "is not an MO id"),
        ("urn:a b:c/x1", "is not an MO id"),
    ],
    ids=["no-instance", "trailing-slash", "empty-miid", "empty-step", "nv-selector", "star-path", "cv-query",
         "nv-query", "not-urn", "space"],
)
def test_client_uri_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="^ClientURI: ") as excinfo:
        ClientUri.parse(text)
    assert reason in str(excinfo.value)


def test_client_uri_instance_path(registry: DdfRegistry) -> None:
    dmacc10, dmacc12 = registry.get(DMACC_1_0), registry.get(DMACC_1_2)
    assert ClientUri(DMACC_1_2, "x1", ("Auth",)).instance_path(dmacc12) == "x1/Auth"
    assert ClientUri(DMACC_1_2).instance_path(dmacc12) == ""
    assert ClientUri(DMACC_1_0, "a").instance_path(dmacc10) == "DMAcc/a"
    assert ClientUri(DMACC_1_0).instance_path(dmacc10) == "DMAcc"


# --- MoInstance --------------------------------------------------------------------------------

def test_create_and_to_json() -> None:
    """MO serialization: {DDF?, ClientURI, CV?, MOData}; ClientURI names the instance root
    (``MOID//``) and MOData is keyed by the root node; no MOID member; the CV is the client's."""
    instance = MoInstance.create(DMACC_1_2, ACCOUNT, ddf_url=DDF_URL, miid="x1")
    obj = instance.to_json()
    assert list(obj) == ["DDF", "ClientURI", "MOData"]
    assert obj["ClientURI"] == "urn:oma:mo:oma-dm-dmacc:1.2//"
    assert list(obj["MOData"]) == ["x1"]
    assert obj["MOData"]["x1"]["Auth"]["Trsp"]["Data"] == "MIIBCg=="  # bytes travel as base64 text
    assert instance.cv is None
    json.dumps(obj)  # plain JSON types only


def test_the_specifications_devinfo_example_reads() -> None:
    """The specification's example: ClientURI ``urn:oma:mo:oma-dm-devinfo:1.0//``, MOData keyed by ``DevInfo``."""
    (instance,) = load_instances(json.dumps([{
        "ClientURI": "urn:oma:mo:oma-dm-devinfo:1.0//", "DDF": DDF_URL,
        "MOData": {"DevInfo": {"DevID": "IMEI:1", "Man": "Acme"}}}]))
    assert instance.client_uri == "urn:oma:mo:oma-dm-devinfo:1.0/DevInfo"
    assert instance.data == {"DevID": "IMEI:1", "Man": "Acme"}


def test_our_stored_form_still_reads() -> None:
    instance = MoInstance.create(DMACC_1_2, ACCOUNT, ddf_url=DDF_URL, miid="x1")
    stored = instance.to_stored_json()
    assert stored["MOID"] == DMACC_1_2 and stored["ClientURI"] == f"{DMACC_1_2}/x1"
    assert MoInstance.from_json(stored).to_json() == instance.to_json()


def test_data_is_read_only() -> None:
    source: dict[str, Any] = {"SrvID": "a", "Auth": {"Trsp": {}}}
    instance = MoInstance(DMACC_1_2, DDF_URL, f"{DMACC_1_2}/x1", source)
    source["SrvID"] = "changed"  # a copy was taken
    assert instance.data["SrvID"] == "a"
    assert isinstance(instance.data["Auth"], MappingProxyType)
    with pytest.raises(TypeError):
        instance.data["SrvID"] = "b"  # type: ignore[index]
    assert hash(instance) == hash(MoInstance(DMACC_1_2, DDF_URL, f"{DMACC_1_2}/x1", {}))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"moid": "dmacc"}, ValueError, "MOID: 'dmacc' is not an MO id"),
        ({"moid": 5}, TypeError, "MOID: must be a string"),
        ({"ddf_url": "ftp://x/y"}, ValueError, "DDF: 'ftp://x/y' is not an absolute http(s) URL"),
        ({"ddf_url": "/ddf/x"}, ValueError, "DDF: "),
        ({"client_uri": f"{DMACC_1_0}/x1"}, ValueError, "ClientURI: names MO 'urn:oma:mo:oma-dm-dmacc:1.0'"),
        ({"cv": "has space"}, ValueError, "CV: must be"),
        ({"cv": ""}, ValueError, "CV: must be"),
        ({"data": []}, TypeError, "MOData: must be an object"),
        ({"data": {"a": [1]}}, TypeError, "MOData/a: a node value cannot be list"),
        ({"data": {"a": {"b": float("nan")}}}, ValueError, "MOData/a/b: NaN and infinity"),
        ({"data": {"a": "\ud800"}}, ValueError, "MOData/a: text is not valid Unicode"),
        ({"data": {"a/b": 1}}, ValueError, "MOData/'a/b': node name contains '/'"),
        ({"data": {1: 1}}, TypeError, "MOData: node name 1 is not a string"),
    ],
    ids=["moid", "moid-type", "ddf-scheme", "ddf-relative", "uri-other-mo", "cv-space", "cv-empty",
         "data-list", "leaf-list", "leaf-nan", "leaf-surrogate", "bad-name", "name-type"],
)
def test_instance_refuses(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    args: dict[str, Any] = {"moid": DMACC_1_2, "ddf_url": DDF_URL, "client_uri": f"{DMACC_1_2}/x1",
                            "data": {}, **kwargs}
    with pytest.raises(error) as excinfo:
        MoInstance(**args)
    assert str(excinfo.value).startswith(message)


def test_tree_depth_is_bounded() -> None:
    tree: dict[str, Any] = {}
    node = tree
    for _ in range(MAX_TREE_DEPTH + 1):
        node["n"] = node = {}
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_TREE_DEPTH} levels"):
        MoInstance(DMACC_1_2, DDF_URL, f"{DMACC_1_2}/x1", tree)


# --- JSON in -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("obj", "path", "reason"),
    [
        ([], "", "must be a JSON object"),
        (instance_json(Extra=1), "Extra", "unknown member"),
        (instance_json(DDF=...), "DDF", "required member missing"),
        (instance_json(ClientURI=...), "ClientURI", "required member missing"),
        (instance_json(MOData=...), "MOData", "required member missing"),
        (instance_json(MOID=None), "MOID", "must be a string, not null"),
        (instance_json(CV=None), "CV", "must be a string, not null"),
        (instance_json(CV=5), "CV", "must be 1 to 128"),
        (instance_json(MOID=TRUST_1_0), "ClientURI", "names MO 'urn:oma:mo:oma-dm-dmacc:1.2'"),
        (instance_json(MOID=..., ClientURI=7), "ClientURI", "must be a string"),
        (instance_json(DDF="x"), "DDF", "not an absolute http(s) URL"),
        (instance_json(MOData="x"), "MOData", "must be an object"),
        (instance_json(MOData={"a": {"b": [1]}}), "MOData/a/b", "a node value cannot be list"),
    ],
    ids=["not-object", "unknown-member", "no-ddf", "no-clienturi", "no-modata", "null-moid", "null-cv",
         "cv-type", "moid-mismatch", "clienturi-type", "ddf-url", "modata-type", "array-leaf"],
)
def test_from_json_refuses(obj: object, path: str, reason: str) -> None:
    with pytest.raises(MoValidationError) as excinfo:
        MoInstance.from_json(obj)
    assert_problem(excinfo, path, reason)


def test_from_json_takes_moid_from_client_uri() -> None:
    instance = MoInstance.from_json(instance_json(MOID=...))
    assert instance.moid == DMACC_1_2 and instance.cv is None


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        (b"{", "", "not valid JSON"),
        (b"\xff\xfe\x00", "", "not valid JSON"),
        (b'[{"MOData": NaN}]', "", "NaN is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "", "not valid JSON"),
        (b"{}", "", "must be a JSON array"),
        (json.dumps([instance_json(), instance_json(DDF=...)]).encode(), "/1/DDF", "required member missing"),
        (json.dumps([instance_json(), 3]).encode(), "/1", "must be a JSON object"),
        (json.dumps([instance_json(MOData={"a": [1]})]).encode(), "/0/MOData/a", "cannot be list"),
    ],
    ids=["truncated", "not-utf", "nan", "nesting-bomb", "object", "second-missing-ddf", "not-object",
         "array-leaf"],
)
def test_load_instances_refuses(data: bytes, path: str, reason: str) -> None:
    with pytest.raises(MoValidationError) as excinfo:
        load_instances(data)
    assert_problem(excinfo, path, reason)


def test_dump_and_load() -> None:
    instances = [MoInstance.create(DMACC_1_2, ACCOUNT, ddf_url=DDF_URL, miid="x1"),
                 MoInstance.create(TRUST_1_0, {}, ddf_url=DDF_URL)]
    text = dump_instances(instances)
    assert json.loads(text)[1] == {"DDF": DDF_URL, "ClientURI": f"{TRUST_1_0}/*", "MOData": {}}
    loaded = load_instances(text.decode())
    assert [i.to_json() for i in loaded] == [i.to_json() for i in instances]
    assert loaded[1] == instances[1]


# --- CV ----------------------------------------------------------------------------------------

def test_cv_definition() -> None:
    data: dict[str, Any] = {"b": 1, "a": {"z": b"\x00", "y": "é"}}
    canonical = b'{"a":{"y":"\xc3\xa9","z":"AA=="},"b":1}'
    assert canonical_json(data) == canonical
    assert compute_cv(data) == base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).decode()[:22]


def test_cv_is_the_same_for_bytes_and_their_base64() -> None:
    assert compute_cv({"Data": b"\x01\x02"}) == compute_cv({"Data": "AQI="})


def test_cv_changes_with_content() -> None:
    assert compute_cv({"a": 1}) != compute_cv({"a": 2}) != compute_cv({"a": "2"})


def test_cv_refuses_invalid_trees() -> None:
    with pytest.raises(TypeError, match="MOData/a: a node value cannot be set"):
        compute_cv({"a": {1}})  # type: ignore[dict-item]


# --- validation before sending -----------------------------------------------------------------

def test_validate_instance(registry: DdfRegistry) -> None:
    one = MoInstance.create(DMACC_1_2, ACCOUNT, ddf_url=DDF_URL, miid="x1")
    assert validate_instance(one, registry).moid == DMACC_1_2
    every = MoInstance.create(DMACC_1_2, {"x1": ACCOUNT, "x2": ACCOUNT}, ddf_url=DDF_URL)
    validate_instance(every, registry)
    subtree = MoInstance.create(DMACC_1_2, {"Data": "MII=", "Secret": ""}, ddf_url=DDF_URL, miid="x1",
                                path=["Auth", "Trsp"])
    validate_instance(subtree, registry)


def test_validate_instance_survives_the_json_round_trip(registry: DdfRegistry) -> None:
    (loaded,) = load_instances(dump_instances([MoInstance.create(DMACC_1_2, ACCOUNT, ddf_url=DDF_URL,
                                                                  miid="x1")]))
    validate_instance(loaded, registry)  # bin leaves are now base64 text, which validates too


@pytest.mark.parametrize(
    ("moid", "data", "miid", "path", "reason"),
    [
        (DMACC_1_2, {**ACCOUNT, "Auth": {"Trsp": {"Data": "MII"}}}, "x1", f"{DMACC_1_2}/x1/Auth/Trsp/Data",
         "expected format bin"),
        (DMACC_1_2, {"x1": {"SrvID": "a"}}, "*", f"{DMACC_1_2}/x1/SrvURI", "required node missing"),
        (DMACC_1_2, {"SrvID": "a"}, "x1", f"{DMACC_1_2}/x1/SrvURI", "required node missing"),
        ("urn:x:unknown", {}, "x1", "MOID", "no DDF is registered for urn:x:unknown"),
    ],
    ids=["wrong-format", "all-instances", "missing", "unknown-mo"],
)
def test_validate_instance_refuses(registry: DdfRegistry, moid: str, data: dict[str, Any], miid: str,
                                   path: str, reason: str) -> None:
    instance = MoInstance.create(moid, data, ddf_url=DDF_URL, miid=miid)
    with pytest.raises(MoValidationError) as excinfo:
        validate_instance(instance, registry)
    assert_problem(excinfo, path, reason)


# --- helpers -----------------------------------------------------------------------------------

def test_ddf_url() -> None:
    assert ddf_url(DMACC_1_2, base_url="https://boot.example/") == OMNA_DDF_URLS[DMACC_1_2]
    assert ddf_url(TRUST_1_0, base_url="https://boot.example/") == f"https://boot.example/ddf/{TRUST_1_0}"


def test_trust_fingerprint() -> None:
    assert trust_fingerprint(b"") == "sha256:" + hashlib.sha256(b"").hexdigest()


# --- properties --------------------------------------------------------------------------------

_names = st.text(min_size=1, max_size=10).filter(lambda n: node_name_error(n) is None)
_leaves = (st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=10)
           | st.floats(allow_nan=False, allow_infinity=False) | st.binary(max_size=10))
_trees = st.dictionaries(_names, st.recursive(_leaves, lambda kids: st.dictionaries(_names, kids, max_size=4),
                                              max_leaves=20), max_size=5)
_instances = st.builds(
    MoInstance.create,
    moid=st.sampled_from([DMACC_1_2, TRUST_1_0, "urn:oma:mo:moid:1.0"]),
    data=_trees,
    ddf_url=st.sampled_from([DDF_URL, OMNA_DDF_URLS[DMACC_1_2]]),
    miid=st.sampled_from(["*"]) | _names,
)


def _without_bytes(value: object) -> object:
    if isinstance(value, MappingProxyType | dict):
        return {k: _without_bytes(v) for k, v in value.items()}
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


@given(_instances)
def test_json_round_trip(instance: MoInstance) -> None:
    (loaded,) = load_instances(dump_instances([instance]))
    assert loaded.to_json() == instance.to_json()
    assert loaded.cv is None and instance.cv is None  # the client assigns CVs
    assert loaded == MoInstance(instance.moid, instance.ddf_url, instance.client_uri,
                                _without_bytes(instance.data), instance.cv)  # type: ignore[arg-type]


@given(_trees, st.randoms(use_true_random=False))
def test_cv_is_stable_across_key_order(tree: dict[str, Any], rnd: Any) -> None:
    def shuffled(value: object) -> object:
        if not isinstance(value, dict):
            return value
        items = list(value.items())
        rnd.shuffle(items)
        return {k: shuffled(v) for k, v in items}

    assert compute_cv(shuffled(tree)) == compute_cv(tree)  # type: ignore[arg-type]
