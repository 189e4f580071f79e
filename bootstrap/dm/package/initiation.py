"""Package 1, :class:`Initiation` (``application/vnd.oma.dm.initiation+json``), device -> server.

The ``OMADM-DevID`` header, the ``MOS`` list (DM-HLF-001), the ``Alert`` list and - ours -
``Features`` and the ``ext-dmboot`` member (:mod:`bootstrap.dm.package.extension`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bootstrap.dm.ddf import node_name_error
from bootstrap.dm.package._json import PackageError, dump, json_array, json_moid, json_text, kind, load_object
from bootstrap.dm.package.alert import Alert, parse_alert
from bootstrap.dm.package.extension import EXTENSION, parse_extension
from pki.identity import check_dev_id

__all__ = ["FEATURES", "INITIATION_MEDIA_TYPE", "MAX_FEATURES", "MAX_MIIDS", "MAX_MOS", "DeclaredMo", "Initiation",
           "declared_json", "parse_initiation"]

INITIATION_MEDIA_TYPE = "application/vnd.oma.dm.initiation+json"
#: Ours: the package 1 member with the device's features, a flat JSON object.
FEATURES = "Features"
#: Ours: limits on what a device may declare in package 1.
MAX_MOS = 128
MAX_MIIDS = 64
MAX_FEATURES = 64
_MAX_FEATURE_TEXT = 256
_FEATURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


@dataclass(frozen=True)
class DeclaredMo:
    """One entry of package 1's MOS list: an MO type the device supports and its instances."""

    moid: str
    ddf: str | None = None
    miids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The MOS entry as JSON (also the form kept in ``DeviceRow.declared_mos``)."""
        obj: dict[str, Any] = {"MOID": self.moid, "MIID": list(self.miids)}
        if self.ddf is not None:
            obj = {"DDF": self.ddf, **obj}
        return obj


@dataclass(frozen=True)
class Initiation:
    """Package 1: who the device is, what it supports, and - ours - its certification request."""

    dev_id: str
    mos: tuple[DeclaredMo, ...]
    #: DER PKCS#10 request (ours: ``ext-dmboot.CSR``); None when the device sent none (the
    #: specification's package 1 has no CSR: the profile may then generate the key).
    csr: bytes | None = field(repr=False)
    #: Ours: flat JSON object of feature name -> scalar (not null) or list of scalars.
    features: Mapping[str, Any] = field(default_factory=dict)
    #: Ours: a one-time enrollment token in the body (``ext-dmboot.Token``), for stacks that
    #: cannot set the Authorization header.
    token: str | None = field(default=None, repr=False)
    #: The package 1 ``Alert`` list (ClientInitiatedMgmt, ...).
    alerts: tuple[Alert, ...] = ()
    #: Ours: round 2 of TPM attestation (``ext-dmboot.TPM``, docs/tpm.md): member -> base64 or text.
    tpm: Mapping[str, str] | None = field(default=None, repr=False)

    @property
    def declared_moids(self) -> frozenset[str]:
        return frozenset(m.moid for m in self.mos)

    def encode(self) -> bytes:
        """The package 1 body (the DevID travels in the ``OMADM-DevID`` header, not here)."""
        ext: dict[str, Any] = {}
        if self.csr is not None:
            ext["CSR"] = base64.b64encode(self.csr).decode("ascii")
        if self.token is not None:
            ext["Token"] = self.token
        if self.tpm is not None:
            ext["TPM"] = dict(self.tpm)
        doc: dict[str, Any] = {"MOS": [m.to_json() for m in self.mos]}
        if self.alerts:
            doc["Alert"] = [a.to_json() for a in self.alerts]
        if self.features:
            doc[FEATURES] = dict(self.features)
        if ext:
            doc[EXTENSION] = ext
        return dump(doc)


def parse_initiation(body: bytes | str, *, dev_id: str | None) -> Initiation:
    """Read package 1.

    Unknown top-level and MOS-entry members are ignored (DM 2.0 defines members we do not
    know); inside our own ``ext-dmboot`` member nothing unknown is accepted.

    Args:
        body: The request body.
        dev_id: The ``OMADM-DevID`` header.

    Raises:
        PackageError: What is wrong, with a JSON Pointer to it (``/MOS/2/MOID``).
    """
    if dev_id is None:
        raise PackageError("OMADM-DevID", "this header is required: it carries the device's DevID")
    try:
        check_dev_id(dev_id)
    except ValueError as exc:
        raise PackageError("OMADM-DevID", str(exc)) from None
    doc = load_object(body, "package 1")
    if "MOS" not in doc:
        raise PackageError("/MOS", "required member missing: the MO types the device supports")
    mos = tuple(_declared(entry, f"/MOS/{i}") for i, entry in enumerate(json_array(doc["MOS"], "/MOS", MAX_MOS)))
    features = _features(doc.get(FEATURES, {}))
    alerts = tuple(parse_alert(a, f"/Alert/{i}") for i, a in enumerate(json_array(doc.get("Alert", []), "/Alert", 64)))
    csr, token, tpm = parse_extension(doc[EXTENSION]) if EXTENSION in doc else (None, None, None)
    return Initiation(dev_id=dev_id, mos=mos, csr=csr, features=features, token=token, alerts=alerts, tpm=tpm)


def _declared(entry: object, pointer: str) -> DeclaredMo:
    if not isinstance(entry, dict):
        raise PackageError(pointer, f"must be an object {{DDF, MOID, MIID}}, not {kind(entry)}")
    if "MOID" not in entry:
        raise PackageError(f"{pointer}/MOID", "required member missing")
    moid = json_moid(entry["MOID"], f"{pointer}/MOID")
    ddf = None
    if entry.get("DDF") is not None:
        ddf = json_text(entry["DDF"], f"{pointer}/DDF")
        parts = urlsplit(ddf)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PackageError(f"{pointer}/DDF", "must be an absolute http(s) URL")
    miids = []
    for i, miid in enumerate(json_array(entry.get("MIID", []), f"{pointer}/MIID", MAX_MIIDS)):
        text = json_text(miid, f"{pointer}/MIID/{i}", limit=256)
        if reason := node_name_error(text):
            raise PackageError(f"{pointer}/MIID/{i}", reason)
        miids.append(text)
    return DeclaredMo(moid=moid, ddf=ddf, miids=tuple(miids))


def _features(value: object) -> dict[str, Any]:
    pointer = f"/{FEATURES}"
    if not isinstance(value, dict):
        raise PackageError(pointer, f"must be an object, not {kind(value)}")
    if len(value) > MAX_FEATURES:
        raise PackageError(pointer, f"more than {MAX_FEATURES} features")
    for name, item in value.items():
        if not _FEATURE_NAME.fullmatch(name):
            raise PackageError(f"{pointer}/{name}", "a feature name is 1-64 of A-Z a-z 0-9 . _ : -")
        values = item if isinstance(item, list) else [item]
        if len(values) > MAX_FEATURES:
            raise PackageError(f"{pointer}/{name}", f"more than {MAX_FEATURES} values")
        for v in values:
            if not isinstance(v, str | int | float | bool):
                raise PackageError(f"{pointer}/{name}", "a feature is a scalar (not null) or an array of scalars")
            if isinstance(v, str):
                json_text(v, f"{pointer}/{name}", limit=_MAX_FEATURE_TEXT, empty=True)
    return dict(value)


def declared_json(mos: Sequence[DeclaredMo]) -> list[dict[str, Any]]:
    """The MOS list as stored with the device (DM-HLF-008)."""
    return [m.to_json() for m in mos]
