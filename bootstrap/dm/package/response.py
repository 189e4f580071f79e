"""Package 3, :class:`Response` (``application/vnd.oma.dm.response+json``), device -> server.

``Status`` and ``Alert`` lists, with ``urn:oma:at:dm:2.0:BootstrapComplete``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bootstrap.dm.package._json import PackageError, dump, json_array, json_text, kind, load_object
from bootstrap.dm.package.alert import BOOTSTRAP_COMPLETE, Alert, parse_alert

__all__ = ["RESPONSE_MEDIA_TYPE", "Response", "Status", "parse_response"]

RESPONSE_MEDIA_TYPE = "application/vnd.oma.dm.response+json"
_MAX_STATUSES = 256


@dataclass(frozen=True)
class Status:
    """``{"sc": <status code>, "URI": [ClientURI, ...]}``: the result of commands on those URIs."""

    sc: int
    uris: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.sc < 300

    def to_json(self) -> dict[str, Any]:
        return {"sc": self.sc, "URI": list(self.uris)}


@dataclass(frozen=True)
class Response:
    """Package 3: the statuses of package 2's commands and the device's alerts."""

    statuses: tuple[Status, ...] = ()
    alerts: tuple[Alert, ...] = ()

    @property
    def bootstrap_complete(self) -> bool:
        """The device sent ``urn:oma:at:dm:2.0:BootstrapComplete``."""
        return any(a.alert_type == BOOTSTRAP_COMPLETE for a in self.alerts)

    @property
    def failures(self) -> tuple[Status, ...]:
        return tuple(s for s in self.statuses if not s.ok)

    def encode(self) -> bytes:
        return dump({"Status": [s.to_json() for s in self.statuses], "Alert": [a.to_json() for a in self.alerts]})


def parse_response(body: bytes | str) -> Response:
    """Read package 3; unknown members are ignored.

    Raises:
        PackageError: What is wrong, with a JSON Pointer to it (``/Status/0/sc``).
    """
    doc = load_object(body, "package 3")
    statuses = tuple(_status(s, f"/Status/{i}")
                     for i, s in enumerate(json_array(doc.get("Status", []), "/Status", _MAX_STATUSES)))
    alerts = tuple(parse_alert(a, f"/Alert/{i}") for i, a in enumerate(json_array(doc.get("Alert", []), "/Alert", 64)))
    return Response(statuses=statuses, alerts=alerts)


def _status(value: object, pointer: str) -> Status:
    if not isinstance(value, dict):
        raise PackageError(pointer, f"must be an object {{sc, URI}}, not {kind(value)}")
    sc = value.get("sc")
    if not isinstance(sc, int) or isinstance(sc, bool) or not 100 <= sc <= 599:
        raise PackageError(f"{pointer}/sc", "must be a status code, an integer from 100 to 599")
    uris = value.get("URI", [])
    if isinstance(uris, str):  # ours: a lone URI is taken as a one-element list
        uris = [uris]
    texts = tuple(json_text(u, f"{pointer}/URI/{j}") for j, u in enumerate(json_array(uris, f"{pointer}/URI", 256)))
    return Status(sc=sc, uris=texts)
