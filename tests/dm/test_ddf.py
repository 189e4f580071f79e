"""The DDF parser, the DDFs we ship, broken DDFs and the registry (validation: test_ddf_validation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.dm.ddf import (
    DEFAULT_DDF_DIR,
    MAX_DDF_BYTES,
    AccessType,
    Ddf,
    DdfError,
    DdfRegistry,
    DfFormat,
    Occurrence,
    load_ddf,
    load_ddf_bytes,
    node_name_error,
)
from bootstrap.errors import ConfigurationError, NotFound
from tests.dm.ddf_support import (
    DMACC_1_0,
    DMACC_1_2,
    TRUST_1_0,
    ddf_doc,
    interior,
    leaf,
    mo_doc,
)


@pytest.fixture(scope="module")
def registry() -> DdfRegistry:
    return DdfRegistry.load()


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
