"""What every DM 2.0 package parser shares: the errors, strict JSON in, compact JSON out, checked values.

Each checker raises :class:`PackageError` with a JSON Pointer to the value it refused.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeAlias

from bootstrap import strict_json
from bootstrap.errors import ConfigurationError, InvalidRequest
from bootstrap.strict_json import StrictJsonError

__all__ = ["Json", "PackageBuildError", "PackageError", "dump", "json_array", "json_moid", "json_text", "kind",
           "load_object"]

_MAX_TEXT = 2048  # a DDF URL, an MIID, a feature value, a URI in a Status
_MOID = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[^\s/?#]+", re.IGNORECASE)

Json: TypeAlias = Any


class PackageError(InvalidRequest):
    """A DM 2.0 package that is not valid JSON or breaks a package rule; ``field`` is a JSON Pointer."""

    def __init__(self, pointer: str, reason: str) -> None:
        super().__init__(f"{pointer or '/'}: {reason}", field=pointer or "/")
        self.pointer = pointer
        self.reason = reason


class PackageBuildError(ConfigurationError):
    """Bootstrap content that cannot become a valid package 2: a server-side fault, not the device's."""


def load_object(body: bytes | str, what: str) -> dict[str, Any]:
    try:
        doc = strict_json.loads(body)
    except StrictJsonError as exc:
        raise PackageError("", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PackageError("", f"{what} must be a JSON object, not {kind(doc)}")
    return doc


def dump(doc: Json) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def json_text(value: object, pointer: str, *, limit: int = _MAX_TEXT, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise PackageError(pointer, f"must be a string, not {kind(value)}")
    if not value and not empty:
        raise PackageError(pointer, "must not be empty")
    if len(value) > limit:
        raise PackageError(pointer, f"longer than {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PackageError(pointer, "is not valid Unicode (a lone surrogate)") from None
    return value


def json_array(value: object, pointer: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise PackageError(pointer, f"must be an array, not {kind(value)}")
    if len(value) > limit:
        raise PackageError(pointer, f"more than {limit} entries")
    return value


def json_moid(value: object, pointer: str) -> str:
    text = json_text(value, pointer, limit=256)
    if not _MOID.fullmatch(text):
        raise PackageError(pointer, f"{text!r} is not an MO id (urn:<nid>:<nss>, without '/')")
    return text
