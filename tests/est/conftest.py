"""A live dm-bootstrap server with a small fleet, for the EST end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from bootstrap.runtime import Runtime
from bootstrap.services.config import ProfileSpec
from pki.authority import fingerprint
from tests.est.live import LiveServer, disabling_manufacturer, live_server, make_ca, make_leaf, write_key

#: DevIDs of the fleet (registered in profile factory-a unless said otherwise).
DEVICES = {
    "token": "IMEI:310000000000001",
    "idevid": "IMEI:310000000000002",
    "keygen": "IMEI:310000000000003",
    "binding": "IMEI:310000000000004",
    "bad": "IMEI:310000000000005",
    "revoked": "IMEI:310000000000006",
    "other-profile": "IMEI:310000000000007",
    "retired-maker": "IMEI:310000000000008",
}


def _prepare(server: LiveServer, runtime: Runtime) -> None:
    files = server.files
    runtime.config.add_server("dm-1", "DM one", "https://dm.example.net/dm", actor="test")
    runtime.config.add_profile(ProfileSpec("factory-a", ("dm-1",), attestation=("token", "idevid", "current-cert")),
                               actor="test")
    runtime.config.add_profile(ProfileSpec("factory-b", ("dm-1",), attestation=("token",)), actor="test")
    acme, acme_key = make_ca("ACME Devices Manufacturing CA")
    retired, retired_key = make_ca("Retired Manufacturing CA")
    foreign, foreign_key = make_ca("Someone Else's CA")
    runtime.config.add_manufacturer_ca("acme", acme.public_bytes(Encoding.PEM).decode(), actor="test")
    runtime.config.add_manufacturer_ca("retired", retired.public_bytes(Encoding.PEM).decode(), actor="test")
    idevid, idevid_key = make_leaf(acme, acme_key, "ACME sensor", serial_number=DEVICES["idevid"])
    old, old_key = make_leaf(retired, retired_key, DEVICES["retired-maker"])
    stranger, stranger_key = make_leaf(foreign, foreign_key, DEVICES["bad"])
    for name, cert, key in (("idevid", idevid, idevid_key), ("retired", old, old_key),
                            ("foreign", stranger, stranger_key)):
        (files / f"{name}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
        write_key(files / f"{name}.key", key)
    (files / "foreign-ca.pem").write_bytes(foreign.public_bytes(Encoding.PEM))
    server.extra["foreign_ca_key"] = foreign_key
    for role, dev_id in DEVICES.items():
        profile = "factory-b" if role == "other-profile" else "factory-a"
        print_ = fingerprint(idevid) if role == "idevid" else None
        runtime.devices.register(dev_id, profile, idevid_fingerprint=print_, actor="test")


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("est-live"), _prepare, disabling_manufacturer("retired")) as live:
        yield live


@pytest.fixture
def token_for(server: LiveServer) -> Callable[[str], str]:
    """``token_for(dev_id)``: a fresh one-time enrollment token bound to ``dev_id``."""

    def create(dev_id: str) -> str:
        _view, token = server.runtime().devices.create_token(dev_id=dev_id, actor="test")
        return token

    return create


@pytest.fixture
def files(server: LiveServer, tmp_path: Path) -> Path:
    """A per-test folder for keys, requests and responses."""
    return tmp_path
