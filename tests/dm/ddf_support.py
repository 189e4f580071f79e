"""Builders of DDF documents and the MO ids the DDF tests share."""

from __future__ import annotations

import pytest

from bootstrap.dm.ddf import (
    MoValidationError,
)

DMACC_1_2 = "urn:oma:mo:oma-dm-dmacc:1.2"


DMACC_1_0 = "urn:oma:mo:oma-dm-dmacc:1.0"


TRUST_1_0 = "urn:oma:mo:ext-dmboot-trust:1.0"


CERT = bytes.fromhex("3082010a0282010100")  # not a real certificate: validation checks formats only


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
