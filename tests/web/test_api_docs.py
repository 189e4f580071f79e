"""docs/api.md lists every admin route the service serves (the table once left out certificates,
tokens, audit and admins); the full reference is generated from the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route

from bootstrap.app import create_app
from bootstrap.runtime import Runtime

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _documented() -> set[tuple[str, str]]:
    """(METHOD, path) pairs of the route tables' first cells (`GET`, `PUT /x`, `GET /x?query`) and of
    the headings of the sections a route has to itself (`## Batches: `POST /api/v1/factory/batches``)."""
    found = set()
    for name in ("api.md", "factory.md", "dm1x.md"):
        text = (DOCS / name).read_text()
        cells = re.findall(r"^\| `([^|]+)` \|", text, flags=re.M) + re.findall(r"^#+ .*`([A-Z]+ /[^`]+)`", text,
                                                                               flags=re.M)
        for cell in cells:
            methods = re.findall(r"\b(GET|POST|PUT|PATCH|DELETE)\b", cell)
            for path in re.findall(r"(/[^\s`?,]*)", cell):
                found |= {(m, path) for m in methods}
    return found


def test_every_api_route_is_in_the_route_table(runtime: Runtime) -> None:
    documented = _documented()
    missing = []
    for route in create_app(runtime=runtime).routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/v1/"):
            continue
        path = re.sub(r"\{([a-z_]+)(:[a-z]+)?\}", r"{\1}", route.path.removeprefix("/api/v1"))
        path = path.replace("{id}", "{server_id}") if path.startswith("/dm-servers") else path
        path = path.replace("{id}", "{name}") if path.startswith("/data-repositories") else path
        for method in sorted((route.methods or set()) - {"HEAD"}):
            if (method, path) not in documented and (method, "/api/v1" + path) not in documented:
                missing.append(f"{method} {path}")
    assert not missing, f"not in docs/api.md's route table: {missing}"
