"""Fixtures for the revocation service tests: a fleet of registered devices with certificates."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from bootstrap.services.issuance import Requester
from pki.authority import IssuedCertificate
from pki.identity import device_uri
from pki.profiles import Names
from tests.factories import make_csr

ADMIN = Requester("test:admin")


@pytest.fixture
def fleet(runtime: Runtime) -> str:
    """An enrollment profile ``fleet-a`` with one DM server; returns the profile name."""
    runtime.config.add_server("dm-1", "DM one", "https://dm.example.net/dm", actor="test")
    runtime.config.add_profile(ProfileSpec("fleet-a", ("dm-1",), attestation=("token", "idevid", "current-cert")),
                               actor="test")
    return "fleet-a"


@pytest.fixture
def device_cert(runtime: Runtime) -> Callable[[str], IssuedCertificate]:
    """``device_cert(dev_id)``: a device certificate for ``dev_id``, recorded like an enrollment's."""

    def issue(dev_id: str) -> IssuedCertificate:
        return runtime.issuance.issue_from_csr(make_csr(dev_id), "device", ADMIN,
                                               expected=Names(dev_id, uris=(device_uri(dev_id),)))

    return issue
