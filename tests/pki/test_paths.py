"""Path validation leaf -> presented intermediates -> anchor, each case cross-checked with ``openssl verify``.

The expected outcome of every case is a literal in the table, and openssl (``-CAfile``
the anchors, ``-untrusted`` the presented intermediates, ``-partial_chain`` so a
registered intermediate is an anchor) must agree with it: an independent peer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509

from pki.errors import PathError
from pki.paths import MAX_INTERMEDIATES, validate_path
from tests.pki.helpers import openssl, write_pem
from tests.support.chains import NOW, make_ca, make_leaf


@dataclass
class Case:
    leaf: x509.Certificate
    presented: list[x509.Certificate]
    anchors: list[x509.Certificate]
    valid: bool
    reason: str = ""  # a fragment of our message when refused
    openssl_error: str = ""  # a fragment of openssl's when refused
    extra: list[str] = field(default_factory=list)


def _cases() -> dict[str, Case]:
    root = make_ca("Maker Root")
    inter = make_ca("Maker Devices CA", root, path_length=0)
    leaf = make_leaf(inter)
    stranger_root = make_ca("Maker Root")  # same name, other key: not the registered root
    stranger_inter = make_ca("Maker Devices CA", stranger_root)
    not_ca = make_ca("Maker Devices CA", root, ca=False)
    no_sign = make_ca("Maker Devices CA", root, cert_sign=False)
    expired = make_ca("Maker Devices CA", root, expired=True)
    tight_root = make_ca("Tight Root", path_length=0)
    under_tight = make_ca("Tight Devices CA", tight_root)
    sub_a = make_ca("Maker Sub A", root, path_length=0)
    sub_b = make_ca("Maker Sub B", sub_a)  # sub_a allows no intermediate below it
    deep_root = make_ca("Deep Root", path_length=2)
    deep_a = make_ca("Deep A", deep_root, path_length=1)
    deep_b = make_ca("Deep B", deep_a, path_length=0)
    shallow_root = make_ca("Shallow Root", path_length=1)
    shallow_a = make_ca("Shallow A", shallow_root)
    shallow_b = make_ca("Shallow B", shallow_a)
    return {
        "leaf+intermediate, root registered": Case(leaf, [inter.cert], [root.cert], True),
        "intermediate registered, leaf alone": Case(leaf, [], [inter.cert], True, extra=["-partial_chain"]),
        "presented in any order, extra certs ignored": Case(
            leaf, [stranger_root.cert, inter.cert], [root.cert], True),
        "two intermediates within pathLen": Case(
            make_leaf(deep_b), [deep_a.cert, deep_b.cert], [deep_root.cert], True),
        "leaf alone, only root registered": Case(
            leaf, [], [root.cert], False, "no trusted CA or presented intermediate",
            "unable to get local issuer certificate"),
        "chains to an unregistered root": Case(
            make_leaf(stranger_inter), [stranger_inter.cert], [root.cert], False,
            "signature does not verify", "unable to get local issuer certificate"),
        "intermediate without cA=TRUE": Case(
            make_leaf(not_ca), [not_ca.cert], [root.cert], False, "not a CA", "invalid CA certificate"),
        "intermediate without keyCertSign": Case(
            make_leaf(no_sign), [no_sign.cert], [root.cert], False, "keyCertSign", "invalid CA certificate"),
        "expired intermediate": Case(
            make_leaf(expired), [expired.cert], [root.cert], False, "expired", "certificate has expired"),
        "root pathLen 0 over an intermediate": Case(
            make_leaf(under_tight), [under_tight.cert], [tight_root.cert], False, "pathLen",
            "path length constraint exceeded"),
        "root pathLen 1 over two intermediates": Case(
            make_leaf(shallow_b), [shallow_b.cert, shallow_a.cert], [shallow_root.cert], False, "pathLen",
            "path length constraint exceeded"),
        "intermediate pathLen 0 over another": Case(
            make_leaf(sub_b), [sub_a.cert, sub_b.cert], [root.cert], False, "pathLen",
            "path length constraint exceeded"),
    }


CASES = _cases()


def _openssl(tmp_path: Path, case: Case) -> tuple[bool, str]:
    anchors = write_pem(tmp_path / "anchors.pem", *case.anchors)
    leaf = write_pem(tmp_path / "leaf.pem", case.leaf)
    untrusted = ["-untrusted", str(write_pem(tmp_path / "untrusted.pem", *case.presented))] if case.presented else []
    result = openssl("verify", "-x509_strict", *case.extra, "-CAfile", anchors, *untrusted, leaf)
    return result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", list(CASES))
def test_path_outcome_agrees_with_openssl(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    openssl_ok, openssl_says = _openssl(tmp_path, case)
    assert openssl_ok is case.valid, openssl_says
    if not case.valid:
        assert case.openssl_error in openssl_says, openssl_says
        with pytest.raises(PathError, match=case.reason):
            validate_path(case.leaf, case.presented, case.anchors, NOW)
        return
    path = validate_path(case.leaf, case.presented, case.anchors, NOW)
    assert path.certificates[0] == case.leaf
    assert path.anchor == case.anchors[path.anchor_index]


def test_the_path_names_the_intermediates_used_and_the_anchor() -> None:
    root = make_ca("Root")
    inter = make_ca("Devices", root)
    decoy = make_ca("Decoy", root)
    path = validate_path(make_leaf(inter), [decoy.cert, inter.cert], [make_ca("Other").cert, root.cert], NOW)
    assert path.certificates[1:] == (inter.cert,)
    assert path.anchor_index == 1


def test_too_many_presented_certificates_are_refused() -> None:
    root = make_ca("Root")
    inter = make_ca("Devices", root)
    with pytest.raises(PathError, match=f"at most {MAX_INTERMEDIATES}"):
        validate_path(make_leaf(inter), [inter.cert] * (MAX_INTERMEDIATES + 1), [root.cert], NOW)
