"""``GET /api/v1/reference``: the API reference, rendered as Markdown from the OpenAPI document.

Generated on each request from the same document as ``/api/v1/openapi.json``, so it
lists every route (certificates, tokens, audit, admins...) and never goes stale.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bootstrap.web.openapi import API_PREFIX, build_document, operation

__all__ = ["render_markdown", "routes"]


def render_markdown(document: dict[str, Any]) -> str:
    """The reference: one section per tag, one entry per operation (permission, parameters, bodies)."""
    info = document["info"]
    lines = [f"# {info['title']} {info['version']}", "", info.get("description", ""), ""]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append((path, method, op))
    lines += ["| Method | Path | Permission | Summary |", "|---|---|---|---|"]
    lines += [f"| {m.upper()} | `{p}` | {op.get('x-permission') or 'public'} | {op['summary']} |"
              for tag in sorted(by_tag) for p, m, op in by_tag[tag]]
    for tag in sorted(by_tag):
        lines += ["", f"## {tag}"]
        for path, method, op in by_tag[tag]:
            lines += ["", f"### {method.upper()} `{path}`", "", op["summary"]]
            if op.get("description"):
                lines += ["", op["description"]]
            lines += ["", f"Permission: {op.get('x-permission') or 'none (public)'}"]
            for param in op.get("parameters", []):
                lines.append(f"- {param['in']} parameter `{param['name']}`"
                             f"{' (required)' if param.get('required') else ''}: {param.get('description', '')}")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                name = str(body.get("$ref", "")).rsplit("/", 1)[-1]
                schema = document["components"]["schemas"].get(name, body) if name else body
                title = f"Request body (`{name}`):" if name else "Request body:"
                lines += ["", title, "", "```json", json.dumps(schema, indent=1), "```"]
            answers = ", ".join(f"{code} {r['description']}" for code, r in op["responses"].items())
            lines += ["", f"Responses: {answers}"]
    return "\n".join(lines) + "\n"


@operation(permission=None, tags=["meta"], responses={200: "this reference, as Markdown"})
async def reference(request: Request) -> Response:
    """The API reference as Markdown, generated from the OpenAPI document."""
    settings = request.app.state.runtime.settings
    document = build_document(list(request.app.routes), server_url=settings.public_url)
    return Response(render_markdown(document), media_type="text/markdown; charset=utf-8")


def routes() -> list[Route]:
    return [Route(f"{API_PREFIX}/reference", reference, methods=["GET"])]
