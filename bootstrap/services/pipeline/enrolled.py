"""The device side of an enrollment: its current certificate and status, written at the commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from bootstrap.services.pipeline.deferred import defer_update
from bootstrap.store.bulk import BulkUpdate
from bootstrap.store.models import DeviceRow, utcnow

__all__ = ["record_enrolled"]

_DEVICES: Table = DeviceRow.__table__  # type: ignore[attr-defined]
_COLUMNS = ("current_serial", "status", "updated_at", "declared_mos", "features")
_ENROLLED = BulkUpdate(
    statement=update(_DEVICES).where(_DEVICES.c.id == bindparam("device_id"))
    .values({name: bindparam(f"new_{name}") for name in _COLUMNS}),
    sql="UPDATE device SET current_serial = v.new_current_serial, status = v.new_status,"
        " updated_at = v.new_updated_at, declared_mos = v.new_declared_mos, features = v.new_features"
        " FROM {rows} WHERE device.id = v.device_id",
    parameters={"device_id": _DEVICES.c.id, **{f"new_{name}": _DEVICES.c[name] for name in _COLUMNS}},
    key=("device_id",))  # a device enrolled twice in one batch: the later enrollment's values


def record_enrolled(session: Session, device: DeviceRow, serial_hex: str | None, *, status: str = "enrolled",
                    mos: list[dict[str, Any]] | None = None, features: dict[str, Any] | None = None) -> None:
    """``device`` enrolled with certificate ``serial_hex`` (None: kept): every channel records it here.

    An UPDATE run when the transaction commits, with the batch's others in one
    executemany (pipeline/deferred.py), and dropped if the request fails; not an ORM
    flush. The loaded row leaves the session and takes the new values as its own: the
    ORM has nothing to flush, and a later request of the same batch loads it afresh.
    ``mos`` and ``features`` (package 1's declarations) replace the recorded ones when given.
    """
    values: dict[str, Any] = {
        "current_serial": device.current_serial if serial_hex is None else serial_hex, "status": status,
        "updated_at": utcnow(), "declared_mos": device.declared_mos if mos is None else mos,
        "features": device.features if features is None else features}
    defer_update(session, _ENROLLED, {"device_id": device.id, **{f"new_{k}": v for k, v in values.items()}})
    if device in session:
        session.expunge(device)
    for name, value in values.items():
        set_committed_value(device, name, value)
