"""The dashboard's "expiring soon" is what an admin must act on."""

from __future__ import annotations

from bootstrap.runtime import Runtime
from bootstrap.services.console_queries import dashboard
from bootstrap.services.issuance import Requester
from tests.factories import make_csr


def test_ocsp_responder_certificates_are_not_expiring_soon(console_runtime: Runtime) -> None:
    # A 30-day responder certificate: inside the 30-day window from the day it is made, and renewed
    # by the responder itself, so it is never the admin's to renew.
    issued = console_runtime.issuance.issue_from_csr(make_csr("issuing-1 OCSP Responder"), "ocsp-signer",
                                                     Requester("test"))
    assert (issued.certificate.not_valid_after_utc - issued.certificate.not_valid_before_utc).days <= 30
    data = dashboard(console_runtime.database)
    assert data.expiring_count == 0 and issued.serial_hex not in [c.serial_hex for c in data.expiring]
