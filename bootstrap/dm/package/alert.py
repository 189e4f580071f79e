"""The DM 2.0 ``Alert`` object, sent by the device in package 1 and in package 3."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bootstrap.dm.package._json import PackageError, dump, json_text, kind

__all__ = ["BOOTSTRAP_COMPLETE", "CLIENT_INITIATED", "Alert", "parse_alert"]

BOOTSTRAP_COMPLETE = "urn:oma:at:dm:2.0:BootstrapComplete"
CLIENT_INITIATED = "urn:oma:at:dm:2.0:ClientInitiatedMgmt"

_ALERT_MEMBERS = {"AlertType": "alert_type", "SourceURI": "source_uri", "TargetURI": "target_uri",
                  "Mark": "mark", "DataType": "data_type", "Data": "data"}


@dataclass(frozen=True)
class Alert:
    """One alert: AlertType and the optional SourceURI, TargetURI, Mark, DataType, Data."""

    alert_type: str
    source_uri: str | None = None
    target_uri: str | None = None
    mark: str | None = None
    data_type: str | None = None
    data: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {member: getattr(self, attr) for member, attr in _ALERT_MEMBERS.items()
                if getattr(self, attr) is not None}


def parse_alert(value: object, pointer: str) -> Alert:
    if not isinstance(value, dict):
        raise PackageError(pointer, f"must be an object, not {kind(value)}")
    if "AlertType" not in value:
        raise PackageError(f"{pointer}/AlertType", "required member missing")
    fields_: dict[str, str | None] = {}
    for member, attr in _ALERT_MEMBERS.items():
        item = value.get(member)
        if item is None:
            fields_[attr] = None
        elif member == "Data" and not isinstance(item, str):
            fields_[attr] = dump(item).decode("utf-8")  # ours: non-text Data is kept as its JSON text
        else:
            fields_[attr] = json_text(item, f"{pointer}/{member}")
    alert_type = fields_.pop("alert_type")
    assert alert_type is not None  # noqa: S101 - checked present above; json_text refuses empty
    return Alert(alert_type=alert_type, **fields_)
