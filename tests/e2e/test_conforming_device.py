"""A DM 2.0 client built to the specification bootstraps against `dmboot serve` with no extension.

The device (tests/e2e/conforming.py) knows nothing of the project: package 1 with
ClientInitiatedMgmt and no ext-dmboot member, HTTP Basic / Digest / X.509, HGET (its
credentials from the bootstrap server, the profile's other MO from the data repository
over mutual TLS with what it just received), CONT, END. It then opens a session with the
DM server of its DMAcc with BootstrapComplete in package 1; the DM server reports it to
the service, and the device is "bootstrapped". The service generated its key (the
profile allows server keygen: a device with no CSR to send).
"""

from __future__ import annotations

import itertools

import pytest

from tests.dm2.helpers import EXTRA_MOID
from tests.e2e.conforming import DMACC, TRUST, ConformingDevice, ProtocolRefused
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.slow

_serial = itertools.count(1)


def _device(stack: Stack, kind: str, *, register: str | None = None, idevid: bool = False) -> ConformingDevice:
    dev_id = f"spec-{kind}-{next(_serial)}"
    pair = None
    if idevid:
        cert, key, print_ = stack.manufacturer.idevid(dev_id, stack.folder / "spec" / dev_id)
        stack.admin.call("POST", "/devices", {"dev_id": dev_id, "profile": register or "hget",
                                              "idevid_fingerprint": print_})
        pair = (cert, key)
    elif register:
        stack.admin.call("POST", "/devices", {"dev_id": dev_id, "profile": register})
    return ConformingDevice(dev_id, stack.bootstrap_url, stack.root_pem, stack.folder / "spec" / dev_id, idevid=pair)


def _password(stack: Stack, device: ConformingDevice, kind: str) -> str | None:
    if kind == "token":
        return str(stack.admin.call("POST", "/enrollment-tokens", {"dev_id": device.dev_id})["token"])
    if kind == "group-key":
        exported = stack.admin.call("POST", "/profiles/hget/group-key/export", {"dev_ids": [device.dev_id]})
        return str(exported["keys"][device.dev_id])
    return None


@pytest.mark.parametrize(("kind", "auth"), [
    pytest.param("token", "basic", id="token-basic"),
    pytest.param("token", "digest", id="token-digest"),
    pytest.param("group-key", "basic", id="group-key-basic"),
    pytest.param("group-key", "digest", id="group-key-digest"),
    pytest.param("idevid", "x509", id="idevid-x509"),
])
def test_a_conforming_device_bootstraps_and_ends_bootstrapped(stack: Stack, kind: str, auth: str) -> None:
    device = _device(stack, kind, register="hget" if kind == "token" else None, idevid=kind == "idevid")
    password = _password(stack, device, kind)

    device.bootstrap(auth=auth, password=password, moids=(DMACC, TRUST, EXTRA_MOID))

    assert device.log == ["HGET", "HGET", "HGET", "CONT", "END"]
    assert set(device.tree) == {DMACC, TRUST, EXTRA_MOID}
    account = device.account()
    assert account["SrvID"] == "dm-test" and account["Name"] == "Test DM"
    assert set(account["Auth"]["Bootstrap"]) == {"ServerURI", "SecMode", "ClientPubKey", "ServerPubKey",
                                                 "ClientSecretKey"}
    assert stack.repository.seen[-1].dev_id == device.dev_id  # the extra MO came over mutual TLS
    assert stack.device_status(device.dev_id)["status"] == "delivered"

    assert device.dm_session() == [["END"]]
    assert stack.dm.reported[-1] == (device.dev_id, 200)
    assert stack.dm.seen[-1].dev_id == device.dev_id  # the DM server saw the delivered certificate
    assert stack.device_status(device.dev_id)["status"] == "bootstrapped"


def test_the_conforming_device_refuses_a_package2_with_put(stack: Stack) -> None:
    """Proof the test device is strict: our inline profile sends PUT, which DM 2.0 does not have."""
    device = _device(stack, "token", register="inline")
    token = _password(stack, device, "token")
    with pytest.raises(ProtocolRefused, match="'PUT'"):
        device.bootstrap(auth="basic", password=token)
    assert device.tree == {}


def test_the_delivered_bootstrap_credential_bootstraps_again(stack: Stack) -> None:
    """DMAcc Auth/Bootstrap: the device authenticates to the bootstrap server with ClientPubKey and
    ClientSecretKey (X.509, our current-cert attestation) and gets a new certificate."""
    device = _device(stack, "token", register="hget")
    device.bootstrap(auth="basic", password=_password(stack, device, "token"))
    first = device.account()["Auth"]["Trsp"]["Data"]
    device.use_bootstrap_credential()
    device.tree.clear()
    device.bootstrap(auth="x509")
    assert device.account()["Auth"]["Trsp"]["Data"] != first
    assert stack.device_status(device.dev_id)["status"] == "delivered"
