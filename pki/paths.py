"""Certification path validation for client certificates: leaf -> presented intermediates -> anchor.

A device proves its identity with a leaf (an IEEE 802.1AR IDevID) and usually
presents the manufacturer's intermediate CA(s) with it; the service registers only
the manufacturer's root (or any CA it chooses to trust: a registered intermediate
is an anchor too, as with OpenSSL's ``-partial_chain``). :func:`validate_path` finds
a path from the leaf through the presented certificates (untrusted, in any order;
OpenSSL's ``-untrusted``) to one of the anchors and checks, for every CA on it
(RFC 5280 6.1, the parts that apply here):

- it signed the certificate below it (names chain, signature verifies);
- it is valid at ``now``;
- basicConstraints cA=TRUE, and its pathLenConstraint is not exceeded by the
  intermediates below it (checked for the anchor too, as OpenSSL does);
- keyUsage, when present, includes keyCertSign.

The leaf's own checks (validity, not a CA, EKU) are the caller's: they depend on
what the leaf is used for. No policy, name constraints or revocation checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from pki.errors import PathError

__all__ = ["MAX_INTERMEDIATES", "PathError", "ValidatedPath", "ca_problem", "issued_by", "validate_path"]

#: Presented intermediates beyond this many are refused (802.1AR chains have one or two).
MAX_INTERMEDIATES = 4


@dataclass(frozen=True)
class ValidatedPath:
    """A path that validated: the certificates from the leaf up (anchor excluded), and the anchor."""

    certificates: tuple[x509.Certificate, ...]
    anchor: x509.Certificate
    anchor_index: int  # the anchor's position in the ``anchors`` given


def ca_problem(ca: x509.Certificate, now: datetime, below: int) -> str | None:
    """Why ``ca`` may not issue with ``below`` intermediates under it, or None if it may."""
    subject = ca.subject.rfc4514_string()
    if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
        return f"CA {subject} is expired or not yet valid"
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return f"{subject} has no basicConstraints: not a CA"
    if not constraints.ca:
        return f"{subject} is not a CA (basicConstraints cA=FALSE)"
    if constraints.path_length is not None and below > constraints.path_length:
        return f"CA {subject} allows {constraints.path_length} intermediate(s) below it (pathLen); the path has {below}"
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return None if usage.key_cert_sign else f"CA {subject} may not sign certificates (keyUsage without keyCertSign)"


def _signed(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def issued_by(cert: x509.Certificate, ca: x509.Certificate, now: datetime, *, below: int = 0) -> bool:
    """Whether ``ca`` signed ``cert`` and may issue it (:func:`ca_problem` finds nothing)."""
    return cert.issuer == ca.subject and ca_problem(ca, now, below) is None and _signed(cert, ca)


def validate_path(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                  anchors: Sequence[x509.Certificate], now: datetime) -> ValidatedPath:
    """The path from ``leaf`` through some of ``intermediates`` to one of ``anchors``.

    Raises:
        PathError: there is none; the message names the most specific reason found.
    """
    if len(intermediates) > MAX_INTERMEDIATES:
        raise PathError(f"{len(intermediates)} intermediates presented; at most {MAX_INTERMEDIATES}")
    reasons: list[str] = []
    found = _extend((leaf,), list(intermediates), anchors, now, reasons)
    if found is not None:
        return found
    raise PathError(f"no path from the certificate (issuer {leaf.issuer.rfc4514_string()}) to a trusted CA:"
                    f" {reasons[0]}")


def _extend(path: tuple[x509.Certificate, ...], pool: list[x509.Certificate], anchors: Sequence[x509.Certificate],
            now: datetime, reasons: list[str]) -> ValidatedPath | None:
    """Depth-first: an anchor over ``path[-1]``, else each presented CA over it, then further up.

    Appends to ``reasons`` why each dead end is one (there is at least one when it returns None).
    """
    top, below = path[-1], len(path) - 1  # intermediates under the next CA
    named = [c for c in (*anchors, *pool) if top.issuer == c.subject and c not in path]
    if not named:
        reasons.append(f"no trusted CA or presented intermediate is named {top.issuer.rfc4514_string()}")
        return None
    for index, anchor in enumerate(anchors):
        if top.issuer != anchor.subject:
            continue
        problem = ca_problem(anchor, now, below)
        if problem is None and _signed(top, anchor):
            return ValidatedPath(path, anchor, index)
        reasons.append(problem or f"the signature does not verify with CA {anchor.subject.rfc4514_string()}")
    for candidate in pool:
        if top.issuer != candidate.subject or candidate in path:
            continue
        problem = ca_problem(candidate, now, below)
        if problem is not None or not _signed(top, candidate):
            reasons.append(problem or f"the signature does not verify with {candidate.subject.rfc4514_string()}")
            continue
        rest = [c for c in pool if c is not candidate]
        found = _extend((*path, candidate), rest, anchors, now, reasons)
        if found is not None:
            return found
    return None
