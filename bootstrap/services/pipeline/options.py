"""What an authorizer grants: the sign options one request is issued under."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from bootstrap.store.models import DeviceRow, EnrollmentProfileRow
from pki.keys import KeyPolicy
from pki.profiles import Names

__all__ = ["Authorize", "SignOptions"]


@dataclass(frozen=True)
class SignOptions:
    """How one authorized request is issued (step-ca's "sign options").

    An authorizer returns them from the evidence of a request; the pipeline
    checks the CSR against them, signs, and records. Nothing else decides what
    a certificate certifies.
    """

    #: Who asks, for the certificate row and the audit trail.
    actor: str
    #: The certificate profile (``device``, ``dm-server``...).
    certificate_profile: str
    #: What the certificate certifies; None: what the CSR asks, checked against the profile.
    names: Names | None = None
    #: None: the certificate profile's validity.
    validity: timedelta | None = None
    #: Key types the enrollment profile allows (besides the certificate profile's own policy).
    key_policy: KeyPolicy | None = None
    #: The device the certificate is for, when it is one of ours.
    dev_id: str | None = None
    device: DeviceRow | None = None
    enrollment_profile: EnrollmentProfileRow | None = None
    #: What the request used up (token id, nonce digest...), for the audit trail.
    consumes: tuple[str, ...] = ()
    #: For the audit trail: method, identifiers and fingerprints, never secrets.
    detail: Mapping[str, Any] = field(default_factory=dict)
    #: The device's earlier certificates of this profile are superseded by this one and
    #: revoked within this grace (see supersede.py); None: they are kept.
    supersede_grace: timedelta | None = None
    #: certificatePolicies OIDs the certificate carries besides its profile's (a TPM-resident key...).
    policies: tuple[str, ...] = ()


#: An authorizer bound to one request: runs inside the request's savepoint.
Authorize = Callable[[Session, datetime], SignOptions]
