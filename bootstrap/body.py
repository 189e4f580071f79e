"""Request bodies: the base of every body model and the one mapping of its errors to a 400.

Bodies are pydantic models (bootstrap.web.bodies, bootstrap.services.profile_spec,
bootstrap.factory.types): unknown members are refused and the first
problem becomes an :class:`~bootstrap.errors.InvalidRequest` naming the field by
its path (``items.3.dev_id``), which the web layer answers as a problem+json 400.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bootstrap.errors import InvalidRequest

__all__ = ["FINGERPRINT", "INTEGER", "MOID", "NAME", "NODE", "NO_NUL", "PATTERN_TEXT", "PRINTABLE", "URL", "Body",
           "JsonInt", "invalid_request", "validate"]

#: Free text in a body: no NUL (PostgreSQL cannot store it; the NUL guard refuses it first).
NO_NUL = r"^[^\x00]*$"
#: A name of ours (profiles, servers, repositories, CAs): letters, digits, ``.``, ``_``, ``-``.
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: Printable ASCII without spaces: DMAcc SrvID, DevID (pki.identity).
PRINTABLE = r"^[!-~]{1,128}$"
#: urn:<NID>:<NSS>, the NSS printable ASCII without / ? # (RFC 8141 as MOIDs use it).
MOID = r"^[uU][rR][nN]:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[!\"$-.0->@-~]+$"
#: A DM 1.x node name: no / ? # or white space.
NODE = r"^[^/?#\s\x00]{1,64}$"
#: https, a host name or IPv4 address, a port, then printable ASCII (the service parses the rest).
URL = r"^https://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?(:[0-9]{1,5})?([/?#][!-~]*)?$"
#: sha256:<64 hex digits> (the service lower-cases it).
FINGERPRINT = r"^[sS][hH][aA]256:[0-9A-Fa-f]{64}$"

#: What each pattern means, for the error a person reads (pydantic would print the regex).
PATTERN_TEXT = {
    NO_NUL: "text without NUL characters",
    NAME: "a name of letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)",
    PRINTABLE: "printable ASCII without spaces, 1 to 128 characters",
    MOID: "a MOID such as urn:oma:mo:oma-dm-devinfo:1.0",
    NODE: "a node name without '/', '?', '#' or spaces, 1 to 64 characters",
    URL: "an https URL: https://host[:port][/path]",
    FINGERPRINT: "sha256: followed by 64 hexadecimal digits",
}

M = TypeVar("M", bound=BaseModel)


def _json_integer(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


#: An integer as JSON Schema has it: 7 and 7.0 are the same number; true, "7" and 7.5 are not integers.
#: Put it after a Field's range (``Annotated[int, Field(ge=1), INTEGER]``): the schema keeps the range.
INTEGER = BeforeValidator(_json_integer)
JsonInt = Annotated[int, INTEGER]


class Body(BaseModel):
    """A JSON request body: unknown members refused, values frozen once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def invalid_request(exc: ValidationError, *, where: str = "") -> InvalidRequest:
    """``exc`` as an InvalidRequest: its first problem, naming the field; how many more there are."""
    errors = exc.errors(include_url=False)
    first = errors[0] if errors else {"loc": (), "msg": "invalid"}
    # pydantic names union branches in the location ("constrained-str", "list[str]"): not members
    loc = [str(part) for part in (where, *first["loc"]) if part != "" and not re.search(r"[-\[]", str(part))]
    message = first["msg"]
    if first.get("type") == "string_pattern_mismatch":
        context: Any = first.get("ctx") if isinstance(first, dict) else None
        pattern = str(context.get("pattern", "")) if isinstance(context, dict) else ""
        message = f"must be {PATTERN_TEXT.get(pattern, 'of the documented form (pattern ' + pattern + ')')}"
    detail = f"{'.'.join(loc) or 'body'}: {message}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    while loc and loc[-1].isdigit():  # the field is the member; which element is wrong, the detail says
        loc.pop()
    return InvalidRequest(detail, field=".".join(loc) or "body")


def validate(model: type[M], document: object, *, where: str = "") -> M:
    """``document`` (decoded JSON) validated by ``model``.

    Raises:
        InvalidRequest: naming the first member that is wrong.
    """
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise invalid_request(exc, where=where) from None
