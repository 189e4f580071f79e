"""The OpenAPI 3.1 document of the admin API, built from the app's own routes.

Every route under ``/api/v1`` is described: its summary and description come from
the endpoint's docstring; handlers add what a docstring cannot say (the permission
they check, response schemas) with :func:`operation`, and name the pydantic model of their
JSON body with :func:`request_body`: the requestBody schema is that model's, the one the
handler validates with. Routes added
later by any module appear without further work, so the document never falls
behind the app. The permission an operation needs is ``x-permission`` (see
bootstrap/auth/permissions.py for the role matrix).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from bootstrap import __version__

__all__ = ["API_PREFIX", "PERMISSION_ATTR", "api_routes", "build_document", "operation", "permission_of",
           "request_body", "routes"]

API_PREFIX = "/api/v1"
#: Attribute an endpoint carries: the permission it checks (None: public or own authentication).
PERMISSION_ATTR = "__dmboot_permission__"
_META_ATTR = "__dmboot_openapi__"
#: Attribute an endpoint carries: (model of its JSON body, whether a body is required).
_BODY_ATTR = "__dmboot_body__"
F = TypeVar("F", bound=Callable[..., Any])
#: How handlers check a permission (bootstrap.web.auth.authorize, principals.require); read when
#: no @operation says it - in the handler, or in the module's helpers it calls (two levels deep).
_CHECK = re.compile(r"""\b(?:authorize|require)\([^"'()]*(?:\([^()]*\)[^"'()]*)*,\s*["']([a-z-]+:[a-z-]+)["']""")
_WITH_BODY = {"POST", "PUT", "PATCH"}
#: A path parameter unless the operation says more: names, DevIDs, SrvIDs are printable ASCII.
_PATH_VALUE = {"type": "string", "pattern": "^[!-~]{1,128}$"}
_CALL = re.compile(r"\b(_?[a-z][a-z0-9_]*)\b")

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}, "instance": {"type": "string"}, "field": {"type": "string"},
                   "request_id": {"type": "string"}},
    "required": ["type", "title", "status", "detail"],
}


def operation(*, permission: str | None, responses: dict[int, str | dict[str, Any]] | None = None,
              parameters: list[dict[str, Any]] | None = None, tags: list[str] | None = None) -> Callable[[F], F]:
    """Describe an endpoint for the OpenAPI document (metadata only; the handler still checks).

    Args:
        permission: What the handler requires (``roles:manage``...), or None for public endpoints.
        responses: Status -> description, or -> a JSON schema of a JSON response.
        parameters: OpenAPI parameter objects (query parameters).
        tags: Grouping in the document.
    """

    def mark(func: F) -> F:
        setattr(func, PERMISSION_ATTR, permission)
        setattr(func, _META_ATTR, {"responses": responses or {},
                                   "parameters": parameters or [], "tags": tags or []})
        return func

    return mark


def request_body(model: type[BaseModel], *, required: bool = True) -> Callable[[F], F]:
    """Name the pydantic model an endpoint validates its JSON body with; the document's requestBody
    schema is that model's JSON schema, so the two cannot drift.

    Args:
        model: The body model (bootstrap.web.bodies and the services' body models).
        required: False when an empty body stands for ``{}``.
    """

    def mark(func: F) -> F:
        setattr(func, _BODY_ATTR, (model, required))
        return func

    return mark


def _body_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """A reference to ``model``'s schema, added with the models it refers to under components/schemas."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def permission_of(endpoint: Callable[..., Any]) -> tuple[bool, str | None]:
    """(known, permission) of an endpoint: declared with :func:`operation` or a page decorator,
    else read from its ``authorize(request, "...")`` call (or a helper's); (False, None) when neither says.
    """
    if hasattr(endpoint, PERMISSION_ATTR):
        return True, getattr(endpoint, PERMISSION_ATTR)
    found = _checked_permission(endpoint, depth=2)
    return (True, found) if found else (False, None)


def _checked_permission(func: Callable[..., Any], depth: int) -> str | None:
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return None
    match = _CHECK.search(source)
    if match or depth == 0:
        return match.group(1) if match else None
    names = getattr(func, "__globals__", {})
    for called in dict.fromkeys(_CALL.findall(source.split(":", 1)[-1])):
        helper = names.get(called)
        if inspect.isfunction(helper) and helper is not func:
            found = _checked_permission(helper, depth - 1)
            if found:
                return found
    return None


def api_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    """(full path, route) for every Route of the app under /api/v1, through mounts."""
    for route in routes:
        if isinstance(route, Mount):
            yield from api_routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            path = prefix + route.path_format
            if path.startswith(API_PREFIX):
                yield path, route


def _operation(path: str, method: str, route: Route, components: dict[str, Any]) -> dict[str, Any]:
    endpoint = route.endpoint
    doc = inspect.getdoc(endpoint) or ""
    summary, _, description = doc.partition("\n")
    meta: dict[str, Any] = getattr(endpoint, _META_ATTR, {})
    known, permission = permission_of(endpoint)
    op: dict[str, Any] = {
        "operationId": f"{method.lower()}_{getattr(endpoint, '__name__', 'endpoint')}",
        "summary": summary.strip() or route.name,
        "tags": meta.get("tags") or [path.removeprefix(API_PREFIX).strip("/").split("/")[0] or "api"],
    }
    if description.strip():
        op["description"] = description.strip()
    declared = {p["name"]: p for p in meta.get("parameters", []) if p.get("in") == "path"}
    params = [declared.get(name) or {"name": name, "in": "path", "required": True, "schema": _PATH_VALUE}
              for name in route.param_convertors]
    op["parameters"] = params + [p for p in meta.get("parameters", []) if p.get("in") != "path"]
    body: tuple[type[BaseModel], bool] | None = getattr(endpoint, _BODY_ATTR, None)
    if body is not None and method in _WITH_BODY:
        model, required = body
        content = {"application/json": {"schema": _body_schema(model, components)}}
        op["requestBody"] = {"required": required, "content": content}
    responses: dict[str, Any] = {}
    if not meta.get("responses") and method == "DELETE":  # undeclared: DELETE answers 204 without a body
        responses["204"] = {"description": "deleted"}
    elif not meta.get("responses"):  # undeclared: some 2xx with a JSON body
        responses["2XX"] = {"description": "success", "content": {"application/json": {"schema": {}}}}
    for status, spec in (meta.get("responses") or {}).items():
        if isinstance(spec, dict):
            responses[str(status)] = {"description": spec.get("description", "OK"),
                                      "content": {"application/json": {"schema": spec}}}
        else:
            responses[str(status)] = {"description": spec}
    problem = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if known:
        op["x-permission"] = permission
    if permission:
        op["security"] = [{"bearer": []}]
        responses.setdefault("401", {"description": "no or unknown credentials", **problem})
        responses.setdefault("403", {"description": f"the caller lacks {permission}", **problem})
    responses.setdefault("default", {"description": "an error (RFC 9457 problem)", **problem})
    op["responses"] = responses
    return op


def build_document(routes: list[BaseRoute], *, server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every /api/v1 route in ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    for path, route in sorted(api_routes(routes), key=lambda item: item[0]):
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(path, method, route, schemas)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "dm-bootstrap admin API", "version": __version__,
                 "description": "OMA DM 2.0 bootstrap and credential provisioning: the admin and factory API."
                                " Authenticate with `Authorization: Bearer <API token>` (dmboot token create)."},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": dict(sorted(schemas.items()))},
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


@operation(permission=None, tags=["meta"], responses={200: "this document"})
async def openapi_json(request: Request) -> Response:
    """The OpenAPI document of this API."""
    settings = request.app.state.runtime.settings
    return JSONResponse(build_document(list(request.app.routes), server_url=settings.public_url))


def routes() -> list[Route]:
    return [Route(f"{API_PREFIX}/openapi.json", openapi_json, methods=["GET"])]
