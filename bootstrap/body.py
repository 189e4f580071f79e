"""Request bodies: the base of every body model and the one mapping of its errors to a 400.

Bodies are pydantic models (bootstrap.web.bodies, bootstrap.services.profile_spec,
bootstrap.factory.types): unknown members are refused and the first
problem becomes an :class:`~bootstrap.errors.InvalidRequest` naming the field by
its path (``items.3.dev_id``), which the web layer answers as a problem+json 400.
"""

from __future__ import annotations

import re
from typing import Annotated, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bootstrap.errors import InvalidRequest

__all__ = ["INTEGER", "NO_NUL", "Body", "JsonInt", "invalid_request", "validate"]

#: Free text in a body: no NUL (PostgreSQL cannot store it; the NUL guard refuses it first).
NO_NUL = r"^[^\x00]*$"

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
    detail = f"{'.'.join(loc) or 'body'}: {first['msg']}"
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
