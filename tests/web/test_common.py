"""The web helpers live in one module (bootstrap/web/common.py): no copies under bootstrap/web."""

from __future__ import annotations

import ast
from pathlib import Path

import bootstrap.web

# Helpers that were defined again in many handler modules, by name (a literal list).
HELPERS = {"runtime_of", "_runtime", "request_id", "_request_id", "request_id_of", "read_json", "parse_json",
           "media_type", "_int", "_int_param", "read_model"}


def test_web_helpers_are_defined_once() -> None:
    root = Path(bootstrap.web.__file__).parent
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in HELPERS:
                found.setdefault(node.name, []).append(str(path.relative_to(root)))
    copies = {name: where for name, where in found.items() if where != ["common.py"]}
    assert copies == {}
