"""DM 2.0 packages 1, 2 and 3: parsing, building, and what a device is given."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from cryptography import x509

from bootstrap.dm.content import TrustAnchor
from bootstrap.dm.ddf import DdfRegistry
from bootstrap.dm.mo import DMACC_1_2, TRUST_1_0, ClientUri, trust_fingerprint, validate_instance
from bootstrap.dm.package import (
    BOOTSTRAP_COMPLETE,
    CLIENT_INITIATED,
    EXTENSION,
    MAX_MOS,
    TRUST_MIID,
    Alert,
    BootstrapServer,
    Cont,
    DeclaredMo,
    End,
    Hget,
    Initiation,
    PackageBuildError,
    PackageError,
    Put,
    Response,
    Status,
    account_instance,
    account_miid,
    bootstrap_instances,
    encode_request,
    hget_url,
    parse_initiation,
    parse_request,
    parse_response,
    trust_instance,
)
from tests.dm2.helpers import DEV_ID, EXTRA_MOID, NOT_AFTER, content, extra_mo, hierarchy, initiation

BASE = "https://dmboot.test"
CSR_B64 = base64.b64encode(initiation().csr).decode()


@pytest.fixture(scope="module")
def registry() -> DdfRegistry:
    return DdfRegistry.load()


def package1(**changes: Any) -> bytes:
    doc: dict[str, Any] = {"MOS": [{"DDF": "http://www.openmobilealliance.org/x.ddf", "MOID": DMACC_1_2,
                                    "MIID": ["x1"]}],
                           "Features": {"tls": ["1.3"]}, EXTENSION: {"CSR": CSR_B64}}
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def assert_pointer(excinfo: pytest.ExceptionInfo[PackageError], pointer: str, reason: str) -> None:
    assert excinfo.value.pointer == pointer, str(excinfo.value)
    assert reason in excinfo.value.reason, str(excinfo.value)


# --- package 1 ---------------------------------------------------------------------------------


def test_package1_is_read() -> None:
    got = parse_initiation(package1(), dev_id=DEV_ID)
    assert got.dev_id == DEV_ID
    assert got.mos == (DeclaredMo(DMACC_1_2, "http://www.openmobilealliance.org/x.ddf", ("x1",)),)
    assert got.features == {"tls": ["1.3"]}
    assert got.csr == base64.b64decode(CSR_B64)
    assert got.token is None
    assert got.declared_moids == {DMACC_1_2}


def test_package1_round_trips() -> None:
    sent = initiation(DMACC_1_2, TRUST_1_0, features={"ram": 64}, token="tok")
    assert parse_initiation(sent.encode(), dev_id=DEV_ID) == sent


def test_package1_ignores_members_it_does_not_know() -> None:
    body = package1(Other={"x": 1}, MOS=[{"MOID": TRUST_1_0, "Vendor": "acme"}])
    assert parse_initiation(body, dev_id=DEV_ID).mos == (DeclaredMo(TRUST_1_0),)


def test_the_specifications_package1_has_no_extension_member() -> None:
    """Package 1 as the specification has it: MOS and a ClientInitiatedMgmt alert, no CSR."""
    body = json.dumps({"MOS": [{"MIID": [], "MOID": DMACC_1_2}],
                       "Alert": [{"AlertType": "urn:oma:at:dm:2.0:ClientInitiatedMgmt"}]})
    got = parse_initiation(body, dev_id=DEV_ID)
    assert got.csr is None and got.token is None
    assert [a.alert_type for a in got.alerts] == [CLIENT_INITIATED]
    assert parse_initiation(got.encode(), dev_id=DEV_ID) == got
    assert EXTENSION not in json.loads(got.encode())


def test_an_empty_extension_member_means_no_csr() -> None:
    assert parse_initiation(package1(**{EXTENSION: {}}), dev_id=DEV_ID).csr is None


@pytest.mark.parametrize(("body", "pointer", "reason"), [
    pytest.param(b"{", "", "not valid JSON", id="truncated-json"),
    pytest.param(b"\xff", "", "not valid JSON", id="not-utf8"),
    pytest.param(b"[]", "", "must be a JSON object", id="array"),
    pytest.param(b'{"MOS": [], "MOS": []}', "", "duplicate member", id="duplicate-member"),
    pytest.param(b'{"MOS": NaN}', "", "NaN is not valid JSON", id="nan"),
    pytest.param(package1(MOS=...), "/MOS", "required member missing", id="no-mos"),
    pytest.param(package1(MOS={}), "/MOS", "must be an array", id="mos-object"),
    pytest.param(package1(MOS=[{"MOID": DMACC_1_2}] * (MAX_MOS + 1)), "/MOS", "more than", id="mos-too-many"),
    pytest.param(package1(MOS=["x"]), "/MOS/0", "must be an object", id="mos-entry-string"),
    pytest.param(package1(MOS=[{}]), "/MOS/0/MOID", "required member missing", id="moid-missing"),
    pytest.param(package1(MOS=[{"MOID": "dmacc"}]), "/MOS/0/MOID", "is not an MO id", id="moid-not-urn"),
    pytest.param(package1(MOS=[{"MOID": 7}]), "/MOS/0/MOID", "must be a string", id="moid-number"),
    pytest.param(package1(MOS=[{"MOID": DMACC_1_2, "MIID": ["a/b"]}]), "/MOS/0/MIID/0", "'/'", id="miid-slash"),
    pytest.param(package1(MOS=[{"MOID": DMACC_1_2, "MIID": "x1"}]), "/MOS/0/MIID", "must be an array",
                 id="miid-string"),
    pytest.param(package1(MOS=[{"MOID": DMACC_1_2, "DDF": "ftp://x"}]), "/MOS/0/DDF", "http(s) URL",
                 id="ddf-not-http"),
    pytest.param(package1(Features=[]), "/Features", "must be an object", id="features-array"),
    pytest.param(package1(Features={"a": {"b": 1}}), "/Features/a", "scalar", id="feature-nested"),
    pytest.param(package1(Features={"a": None}), "/Features/a", "scalar", id="feature-null"),
    pytest.param(package1(Features={"bad name": 1}), "/Features/bad name", "feature name", id="feature-name"),
    pytest.param(package1(**{EXTENSION: "csr"}), f"/{EXTENSION}", "must be an object", id="extension-string"),
    pytest.param(package1(Alert=[{"Mark": "fatal"}]), "/Alert/0/AlertType", "required member missing",
                 id="alert-without-type"),
    pytest.param(package1(**{EXTENSION: {"CSR": "not base64!"}}), f"/{EXTENSION}/CSR", "base64",
                 id="csr-not-base64"),
    pytest.param(package1(**{EXTENSION: {"CSR": CSR_B64, "Key": "x"}}), f"/{EXTENSION}/Key", "unknown member",
                 id="extension-unknown-member"),
    pytest.param(package1(**{EXTENSION: {"CSR": CSR_B64, "Token": 5}}), f"/{EXTENSION}/Token",
                 "must be a string", id="token-number"),
])
def test_package1_refusals_name_the_member(body: bytes, pointer: str, reason: str) -> None:
    with pytest.raises(PackageError) as excinfo:
        parse_initiation(body, dev_id=DEV_ID)
    assert_pointer(excinfo, pointer, reason)


@pytest.mark.parametrize(("dev_id", "pointer", "reason"), [
    pytest.param(None, "OMADM-DevID", "header is required", id="missing"),
    pytest.param("has space", "OMADM-DevID", "printable ASCII", id="space"),
    pytest.param("", "OMADM-DevID", "printable ASCII", id="empty"),
])
def test_package1_needs_a_devid_header(dev_id: str | None, pointer: str, reason: str) -> None:
    with pytest.raises(PackageError) as excinfo:
        parse_initiation(package1(), dev_id=dev_id)
    assert_pointer(excinfo, pointer, reason)


def test_package_errors_are_400s() -> None:
    from bootstrap.errors import InvalidRequest

    assert issubclass(PackageError, InvalidRequest)
    assert PackageError("/MOS", "x").field == "/MOS"


# --- package 2: what is delivered --------------------------------------------------------------


@pytest.mark.parametrize(("declared", "delivered"), [
    pytest.param((), [], id="nothing-declared"),
    pytest.param((DMACC_1_2,), [DMACC_1_2], id="dmacc-only"),
    pytest.param((TRUST_1_0,), [TRUST_1_0], id="trust-only"),
    pytest.param((DMACC_1_2, TRUST_1_0), [TRUST_1_0, DMACC_1_2], id="trust-first"),
    pytest.param((EXTRA_MOID,), [EXTRA_MOID], id="extra-only"),
    pytest.param((EXTRA_MOID, DMACC_1_2, TRUST_1_0, "urn:oma:mo:other:1.0"), [TRUST_1_0, DMACC_1_2, EXTRA_MOID],
                 id="all-and-an-unknown"),
])
def test_only_declared_mos_are_delivered(registry: DdfRegistry, declared: tuple[str, ...],
                                         delivered: list[str]) -> None:
    instances = bootstrap_instances(content(extra_mos=(extra_mo(),)), set(declared), registry, ddf_base_url=BASE)
    assert [i.moid for i in instances] == delivered


def test_the_account_carries_the_dm_server_and_the_device_certificate(registry: DdfRegistry) -> None:
    """The DMAcc 1.2 table: SrvID, SrvURI, Name, Perm/<x>/MOID, Auth/Trsp/{Data, Secret} and
    Auth/Bootstrap with all five children; MOData keyed by the root node."""
    _, _, device = hierarchy()
    server = BootstrapServer(f"{BASE}/dm/bootstrap", b"\x30\x03server")
    instance = account_instance(content(), ddf_base_url=BASE, bootstrap=server)
    validate_instance(instance, registry)
    assert instance.client_uri == f"{DMACC_1_2}/dm.example"
    assert instance.ddf_url == "http://www.openmobilealliance.org/tech/omna/dm_mo/dm_dmacc-v1_2.ddf"
    obj = instance.to_json()
    assert obj["ClientURI"] == "urn:oma:mo:oma-dm-dmacc:1.2//" and "MOID" not in obj and "CV" not in obj
    data = obj["MOData"]["dm.example"]
    assert data["SrvID"] == "dm.example"
    assert data["SrvURI"] == "https://dm.example/dm"
    assert data["Name"] == "Example DM"
    assert data["Perm"] == {"1": {"MOID": "urn:oma:mo:oma-dm-devinfo:1.0"}}
    assert base64.b64decode(data["Auth"]["Trsp"]["Data"]) == device
    assert data["Auth"]["Trsp"]["Secret"] == ""  # the device made its own key (CSR): nothing to send
    assert "Noti" not in data["Auth"]  # its Secret is Required, and we hold no package 0 secret
    assert data["Auth"]["Bootstrap"] == {
        "ServerURI": f"{BASE}/dm/bootstrap", "SecMode": "AA==", "ClientPubKey": data["Auth"]["Trsp"]["Data"],
        "ServerPubKey": base64.b64encode(b"\x30\x03server").decode(), "ClientSecretKey": ""}


def test_a_generated_key_goes_in_trsp_secret_and_client_secret_key(registry: DdfRegistry) -> None:
    server = BootstrapServer(f"{BASE}/dm/bootstrap", b"\x30\x00")
    instance = account_instance(content(private_key_der=b"\x30\x01k"), ddf_base_url=BASE, bootstrap=server)
    validate_instance(instance, registry)
    auth = instance.to_json()["MOData"]["dm.example"]["Auth"]
    assert auth["Trsp"]["Secret"] == auth["Bootstrap"]["ClientSecretKey"] == base64.b64encode(b"\x30\x01k").decode()


def test_the_account_never_carries_a_notification_secret() -> None:
    noti = {"Type": "sha256", "Secret": base64.b64encode(b"s").decode()}
    instance = account_instance(content(account=replace(content().account, notification=noti)), ddf_base_url=BASE)
    assert "Noti" not in instance.to_json()["MOData"]["dm.example"]["Auth"]


def test_without_perm_in_the_profile_devinfo_is_permitted(registry: DdfRegistry) -> None:
    instance = account_instance(content(account=replace(content().account, permitted_moids=(), name="")),
                                ddf_base_url=BASE)
    validate_instance(instance, registry)
    data = instance.to_json()["MOData"]["dm.example"]
    assert data["Perm"] == {"1": {"MOID": "urn:oma:mo:oma-dm-devinfo:1.0"}} and data["Name"] == "dm.example"


def test_the_trust_mo_carries_anchors_by_role_and_the_chain_in_tls_order(registry: DdfRegistry) -> None:
    root, issuing, device = hierarchy()
    instance = trust_instance(content(), ddf_base_url=BASE)
    validate_instance(instance, registry)
    assert instance.client_uri == f"{TRUST_1_0}/{TRUST_MIID}"
    assert instance.ddf_url == f"{BASE}/ddf/{TRUST_1_0}"
    data = instance.to_json()["MOData"][TRUST_MIID]
    anchors = list(data["Anchors"].values())
    assert [(a["Role"], a["Name"]) for a in anchors] == [
        ("dm-server", "dm.example"), ("data-repository", "repo-1"), ("issuing-ca", "issuing-1")]
    for anchor in anchors:
        assert anchor["Fingerprint"] == trust_fingerprint(base64.b64decode(anchor["Cert"]))
    chain = data["Credential"]["Chain"]
    assert [base64.b64decode(chain[k]) for k in ("1", "2")] == [device, issuing]
    assert data["Credential"]["NotAfter"] == NOT_AFTER.strftime("%Y-%m-%dT%H:%M:%SZ")
    x509.load_der_x509_certificate(base64.b64decode(chain["1"]))


@pytest.mark.parametrize(("server_id", "miid"), [
    pytest.param("dm.example", "dm.example", id="plain"),
    pytest.param("dm/example", "acc-", id="slash"),
    pytest.param("x" * 65, "acc-", id="long"),
])
def test_account_miid(server_id: str, miid: str) -> None:
    got = account_miid(server_id)
    assert got.startswith(miid)
    assert ClientUri(DMACC_1_2, got)  # a valid node name
    assert account_miid(server_id) == got  # stable: bootstrapping again replaces the same instance


@pytest.mark.parametrize(("changes", "message"), [
    pytest.param({"trust_anchors": (TrustAnchor("root", "x", b"0"),)}, "role 'root'", id="unknown-anchor-role"),
    pytest.param({"trust_anchors": ()}, "does not match its DDF", id="no-anchors"),
    pytest.param({"certificate_chain": ()}, "no certificate chain", id="no-chain"),
    pytest.param({"extra_mos": (replace(extra_mo(), moid="urn:oma:mo:other:1.0"),)},
                 "names urn:oma:mo:oma-dm-dmacc:1.0", id="extra-mo-moid-mismatch"),
])
def test_content_that_cannot_be_sent_is_a_server_fault(registry: DdfRegistry, changes: dict[str, Any],
                                                      message: str) -> None:
    declared = {DMACC_1_2, TRUST_1_0, EXTRA_MOID, "urn:oma:mo:other:1.0"}
    with pytest.raises(PackageBuildError, match=message):
        bootstrap_instances(content(**changes), declared, registry, ddf_base_url=BASE)


def test_an_account_that_breaks_the_ddf_is_not_sent(registry: DdfRegistry) -> None:
    account = replace(content().account, permitted_moids=(5,))  # type: ignore[arg-type] - chr expected
    with pytest.raises(PackageBuildError, match="does not match its DDF"):
        bootstrap_instances(content(account=account), {DMACC_1_2}, registry, ddf_base_url=BASE)


def test_package_build_errors_are_500s() -> None:
    from bootstrap.errors import ConfigurationError

    assert issubclass(PackageBuildError, ConfigurationError)


# --- package 2: encoding -----------------------------------------------------------------------


def test_package2_is_a_list_of_positional_commands() -> None:
    trust = trust_instance(content(), ddf_base_url=BASE)
    body = encode_request([Put(trust), Hget("https://repo.example/data/dmboot/r1", f"{DMACC_1_2}/x"), End()])
    doc = json.loads(body)
    assert list(doc) == ["CMD"]
    put, hget, end = doc["CMD"]
    assert put[:2] == ["PUT", trust.client_uri]
    assert put[2] == [trust.to_json()]
    assert hget == ["HGET", "https://repo.example/data/dmboot/r1", f"{DMACC_1_2}/x"]
    assert end == ["END"]
    # bin leaves come back as their base64 text: compare the JSON forms
    assert [c.to_json() for c in parse_request(body)] == doc["CMD"]


def test_the_specifications_package2_is_hgets_then_cont_every_command_strings() -> None:
    body = encode_request([Hget("https://boot.example/dm/objects/c1"), Cont("https://boot.example/dm/bootstrap/s1.a.b")])
    doc = json.loads(body)
    assert doc == {"CMD": [["HGET", "https://boot.example/dm/objects/c1"],
                           ["CONT", "https://boot.example/dm/bootstrap/s1.a.b"]]}
    assert all(isinstance(p, str) for command in doc["CMD"] for p in command)
    assert parse_request(body) == (Hget("https://boot.example/dm/objects/c1"),
                                   Cont("https://boot.example/dm/bootstrap/s1.a.b"))


@pytest.mark.parametrize(("doc", "pointer"), [
    pytest.param({}, "/CMD", id="no-cmd"),
    pytest.param({"CMD": [["CONT"]]}, "/CMD/0", id="cont-without-uri"),
    pytest.param({"CMD": [[]]}, "/CMD/0", id="empty-command"),
    pytest.param({"CMD": [["GET", "x"]]}, "/CMD/0", id="unknown-command"),
    pytest.param({"CMD": [["END", 1]]}, "/CMD/0", id="end-with-argument"),
    pytest.param({"CMD": [["PUT", "x", []]]}, "/CMD/0/2", id="put-without-data"),
    pytest.param({"CMD": [["PUT", "x", [{}]]]}, "/CMD/0/2/0", id="put-bad-instance"),
    pytest.param({"CMD": [["HGET", 1, "x"]]}, "/CMD/0/1", id="hget-number"),
])
def test_package2_refusals(doc: dict[str, Any], pointer: str) -> None:
    with pytest.raises(PackageError) as excinfo:
        parse_request(json.dumps(doc))
    assert excinfo.value.pointer == pointer


def test_a_put_whose_uri_differs_from_its_instance_is_refused() -> None:
    trust = trust_instance(content(), ddf_base_url=BASE).to_json()
    with pytest.raises(PackageError, match="differs"):
        parse_request(json.dumps({"CMD": [["PUT", f"{TRUST_1_0}/other", [trust]]]}))


@pytest.mark.parametrize(("repository", "expected"), [
    pytest.param("https://repo.example/data", "https://repo.example/data/dmboot/abc", id="plain"),
    pytest.param("https://repo.example/data/", "https://repo.example/data/dmboot/abc", id="trailing-slash"),
])
def test_hget_url(repository: str, expected: str) -> None:
    assert hget_url(repository, "abc") == expected


# --- package 3 ---------------------------------------------------------------------------------


def test_package3_is_read() -> None:
    body = json.dumps({"Status": [{"sc": 200, "URI": [f"{DMACC_1_2}/x"]}, {"sc": 200, "URI": f"{TRUST_1_0}/y"}],
                       "Alert": [{"AlertType": BOOTSTRAP_COMPLETE, "SourceURI": "dev", "Data": {"a": 1}}],
                       "Other": 1})
    got = parse_response(body)
    assert got.statuses == (Status(200, (f"{DMACC_1_2}/x",)), Status(200, (f"{TRUST_1_0}/y",)))
    assert got.alerts == (Alert(BOOTSTRAP_COMPLETE, source_uri="dev", data='{"a":1}'),)
    assert got.bootstrap_complete
    assert got.failures == ()


def test_package3_failures_and_missing_completion() -> None:
    got = parse_response(Response((Status(200, ("a",)), Status(500, ("b",))), ()).encode())
    assert got.failures == (Status(500, ("b",)),)
    assert not got.bootstrap_complete


@pytest.mark.parametrize(("doc", "pointer"), [
    pytest.param({"Status": {}}, "/Status", id="status-object"),
    pytest.param({"Status": [200]}, "/Status/0", id="status-number"),
    pytest.param({"Status": [{"URI": []}]}, "/Status/0/sc", id="sc-missing"),
    pytest.param({"Status": [{"sc": "200"}]}, "/Status/0/sc", id="sc-string"),
    pytest.param({"Status": [{"sc": True}]}, "/Status/0/sc", id="sc-bool"),
    pytest.param({"Status": [{"sc": 99}]}, "/Status/0/sc", id="sc-too-small"),
    pytest.param({"Status": [{"sc": 200, "URI": [1]}]}, "/Status/0/URI/0", id="uri-number"),
    pytest.param({"Alert": [{}]}, "/Alert/0/AlertType", id="alert-type-missing"),
    pytest.param({"Alert": [{"AlertType": ""}]}, "/Alert/0/AlertType", id="alert-type-empty"),
    pytest.param({"Alert": [{"AlertType": "x", "Mark": 1}]}, "/Alert/0/Mark", id="mark-number"),
])
def test_package3_refusals(doc: dict[str, Any], pointer: str) -> None:
    with pytest.raises(PackageError) as excinfo:
        parse_response(json.dumps(doc))
    assert excinfo.value.pointer == pointer


def test_initiation_repr_hides_csr_and_token() -> None:
    text = repr(replace(initiation(DMACC_1_2), token="secret-token"))
    assert "secret-token" not in text
    assert "csr" not in text
    assert isinstance(initiation(), Initiation)
