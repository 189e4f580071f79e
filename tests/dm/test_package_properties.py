"""Property tests for the DM 2.0 package parsers and encoders (hypothesis)."""

from __future__ import annotations

import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.dm.ddf import node_name_error
from bootstrap.dm.package import (
    Alert,
    DeclaredMo,
    End,
    Hget,
    Initiation,
    PackageError,
    Response,
    Status,
    encode_request,
    parse_initiation,
    parse_request,
    parse_response,
)

PROPERTIES = settings(deadline=None, database=None, max_examples=200)

_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
_node = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=20).filter(
    lambda n: node_name_error(n) is None)
_moid = st.builds(lambda nid, nss: f"urn:{nid}:{nss}", st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
                  st.from_regex(r"[a-z0-9:._-]{1,20}", fullmatch=True))
_url = st.builds(lambda host, path: f"https://{host}/{path}", st.from_regex(r"[a-z]{1,10}\.example", fullmatch=True),
                 st.from_regex(r"[a-z0-9/]{0,20}", fullmatch=True))
_declared = st.builds(DeclaredMo, moid=_moid, ddf=st.none() | _url,
                      miids=st.lists(_node, max_size=4).map(tuple))
_scalar = st.one_of(st.booleans(), st.integers(-(2**31), 2**31), st.text(max_size=20),
                    st.floats(allow_nan=False, allow_infinity=False))
_features = st.dictionaries(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True),
                            _scalar | st.lists(_scalar, max_size=3), max_size=5)
_initiation = st.builds(Initiation, dev_id=st.from_regex(r"[\x21-\x7e]{1,40}", fullmatch=True),
                        mos=st.lists(_declared, max_size=5).map(tuple), csr=st.binary(min_size=1, max_size=300),
                        features=_features, token=st.none() | st.text(string.ascii_letters, min_size=1, max_size=40))
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=20)


@PROPERTIES
@given(_initiation)
def test_package1_round_trips(sent: Initiation) -> None:
    assert parse_initiation(sent.encode(), dev_id=sent.dev_id) == sent


@PROPERTIES
@given(st.builds(Response,
                 statuses=st.lists(st.builds(Status, sc=st.integers(100, 599), uris=st.lists(_text, max_size=3)
                                             .map(tuple)), max_size=5).map(tuple),
                 alerts=st.lists(st.builds(Alert, alert_type=_text, source_uri=st.none() | _text,
                                           target_uri=st.none() | _text, mark=st.none() | _text,
                                           data_type=st.none() | _text, data=st.none() | _text), max_size=3)
                 .map(tuple)))
def test_package3_round_trips(sent: Response) -> None:
    assert parse_response(sent.encode()) == sent


@PROPERTIES
@given(st.lists(st.one_of(st.builds(Hget, _url, _text), st.just(End())), max_size=6))
def test_package2_commands_round_trip(commands: list[Hget | End]) -> None:
    assert list(parse_request(encode_request(commands))) == commands


@PROPERTIES
@given(st.binary(max_size=200) | _json.map(lambda doc: json.dumps(doc).encode()))
def test_parsers_raise_only_package_errors(body: bytes) -> None:
    for parse in (lambda b: parse_initiation(b, dev_id="dev-1"), parse_request, parse_response):
        try:
            parse(body)
        except PackageError:
            pass


@PROPERTIES
@given(_json)
def test_package1_members_of_any_json_type_raise_only_package_errors(value: object) -> None:
    for member in ("MOS", "Features", "ext-dmboot"):
        doc = {"MOS": [], "ext-dmboot": {"CSR": ""}, member: value}
        try:
            parse_initiation(json.dumps(doc), dev_id="dev-1")
        except PackageError:
            pass
