"""Use case B.2: a subscriber's chosen configuration packages shape the next bootstrap."""

from __future__ import annotations

import copy

from sqlmodel import select

from bootstrap.auth.attestation import Evidence
from bootstrap.runtime import Runtime
from bootstrap.services.subscriber import SubscriberService
from bootstrap.store.models import DeviceRow
from tests.enrollment.support import ADMIN, EXTRA_MO, GROUP, configure, device_csr

DEV = "IMEI:490154203237599"
SECOND = copy.deepcopy(EXTRA_MO) | {"ClientURI": "urn:oma:mo:oma-dm-dmacc:1.0/second"}
DECLARED = [{"MOID": EXTRA_MO["MOID"], "MIID": []}]


def _enroll(runtime: Runtime) -> list[str]:
    _view, token = runtime.devices.create_token(profile=GROUP, dev_id=DEV, actor=ADMIN)
    outcome = runtime.enrollment.enroll(DEV, Evidence("token", token=token), device_csr(DEV), declared_mos=DECLARED)
    return sorted(str(m.instance["ClientURI"]) for m in outcome.content.extra_mos)


def _pending(runtime: Runtime) -> list[str]:
    with runtime.database.session() as session:
        return list(session.exec(select(DeviceRow).where(DeviceRow.dev_id == DEV)).one().pending_packages)


def test_without_a_choice_the_profile_set_goes_and_a_choice_narrows_it(runtime: Runtime) -> None:
    configure(runtime, extra_mos=(EXTRA_MO, SECOND))
    runtime.devices.register(DEV, GROUP, actor=ADMIN)
    assert _enroll(runtime) == sorted([EXTRA_MO["ClientURI"], SECOND["ClientURI"]])

    SubscriberService(runtime.database).set_packages(DEV, [SECOND["ClientURI"]])
    first = _enroll(runtime)
    assert first == [SECOND["ClientURI"]]
    assert _pending(runtime) == [SECOND["ClientURI"]]

    with runtime.database.session() as session:
        serial = session.exec(select(DeviceRow).where(DeviceRow.dev_id == DEV)).one().current_serial
    runtime.enrollment.complete(DEV, str(serial))
    assert _pending(runtime) == []  # the choice was for that bootstrap
