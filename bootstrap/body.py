"""Request bodies: the base of every body model and the one mapping of its errors to a 400.

Bodies are pydantic models (bootstrap.web.bodies, bootstrap.services.profile_spec,
bootstrap.services.factory_types): unknown members are refused and the first
problem becomes an :class:`~bootstrap.errors.InvalidRequest` naming the field by
its path (``items.3.dev_id``), which the web layer answers as a problem+json 400.
"""

from __future__ import annotations

import re
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bootstrap.errors import InvalidRequest

__all__ = ["Body", "invalid_request", "validate"]

M = TypeVar("M", bound=BaseModel)


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
