"""The layer order of the code, and no import cycles: read from the source, not imported.

Every ``import`` counts, at module level or inside a function (a deferred import is
still a dependency), under ``TYPE_CHECKING`` too. A module may import its own layer
and the layers below it; the packages of one layer (``dm | store``) do not import each
other. Within a layer no two modules import each other, directly or round a longer loop.

Layers, lowest first (what each may build on is everything above it in this list)::

    pki                      the CA as a pure library: no bootstrap, no HTTP, no database
    errors files settings metrics logs server_port    the service's plain foundations
    secrets                  SecretStore: embedded keystore, Vault (secrets.vault)
    dm | store               the OMA DM model; tables, sessions, migrations
    auth                     authentication primitives: principals, schemes, attestation
    services                 use cases: issuance, enrollment, audit, admins, tokens ...
    factory                  factory lines: stations, batches, registration, the client
    runtime monitoring       the wiring of services for one process; fleet gauges
    web                      Starlette routes, middleware, console
    app asgi server          the ASGI application and the uvicorn server
    cli __main__             the ``dmboot`` command
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pki", "bootstrap")

#: Lowest first. A layer is a list of independent parts; a part is a list of module prefixes.
LAYERS: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("pki",),),
    (("bootstrap", "bootstrap.errors", "bootstrap.files", "bootstrap.settings", "bootstrap.metrics",
      "bootstrap.logs", "bootstrap.server_port"),),
    (("bootstrap.secrets",),),
    (("bootstrap.dm",), ("bootstrap.store",)),
    (("bootstrap.auth",),),
    (("bootstrap.services",),),
    (("bootstrap.factory",),),
    (("bootstrap.runtime", "bootstrap.monitoring"),),
    (("bootstrap.web",),),
    (("bootstrap.app", "bootstrap.asgi", "bootstrap.server"),),
    (("bootstrap.cli", "bootstrap.__main__"),),
)

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> Graph:
    """Module -> the project modules it imports (``from pkg import sub`` points at ``pkg.sub``)."""
    files = {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))
             if "migrations" not in p.parts}
    graph: Graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    targets.add(sub if sub in files else module)
        graph[name] = {_known(t, files) for t in targets} - {"", name}
    return graph


def _known(target: str, modules: Mapping[str, Path]) -> str:
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target


def _place(module: str, layers: tuple[tuple[tuple[str, ...], ...], ...]) -> tuple[int, int] | None:
    """(layer, part) of the longest prefix that names ``module``."""
    best: tuple[int, tuple[int, int]] | None = None
    for i, layer in enumerate(layers):
        for j, part in enumerate(layer):
            for prefix in part:
                if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), (i, j))
    return best[1] if best else None


def layer_violations(graph: Graph, layers: tuple[tuple[tuple[str, ...], ...], ...] = LAYERS) -> list[str]:
    """Every import that reaches up a layer or across to an independent part, as ``a -> b``."""
    found = []
    for module, targets in sorted(graph.items()):
        here = _place(module, layers)
        if here is None:
            found.append(f"{module} is in no layer")
            continue
        for target in sorted(targets):
            there = _place(target, layers)
            if there is None or there[0] > here[0] or (there[0] == here[0] and there[1] != here[1]):
                found.append(f"{module} -> {target}")
    return found


def cycles(graph: Graph) -> list[list[str]]:
    """The import cycles: strongly connected sets of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT)


def test_every_import_follows_the_layer_order(graph: Graph) -> None:
    assert layer_violations(graph) == []


def test_there_is_no_import_cycle(graph: Graph) -> None:
    assert cycles(graph) == []


def test_the_graph_sees_deferred_and_submodule_imports(graph: Graph) -> None:
    # hand-picked edges the checks rely on seeing: a plain import, a `from pkg import sub`,
    # and one inside a function body
    assert "bootstrap.services.audit" in graph["bootstrap.services.tokens"]
    assert "bootstrap.web.dm1" in graph["bootstrap.web.dm2"]
    assert "bootstrap.cli.main" in graph["bootstrap.cli"]
    assert len(graph) > 150


def _tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


#: A small project of four layers, lowest first, with ``dm | store`` independent.
_TOY_LAYERS = ((("toy.pki",),), (("toy.dm",), ("toy.store",)), (("toy.services",),), (("toy.web",),))
_TOY = {
    "toy/__init__.py": "",
    "toy/pki.py": "import hashlib\n",
    "toy/dm.py": "from toy import pki\n",
    "toy/store.py": "from toy.pki import x\n",
    "toy/services/__init__.py": "",
    "toy/services/a.py": "from toy import dm, store\n",
    "toy/services/b.py": "from toy.services import a\n",
    "toy/web.py": "def f():\n    from toy.services.b import g\n",
}


def _toy_layers() -> tuple[tuple[tuple[str, ...], ...], ...]:
    return ((("toy",),), *_TOY_LAYERS)


def test_a_clean_toy_tree_passes(tmp_path: Path) -> None:
    graph = import_graph(_tree(tmp_path, _TOY), ["toy"])
    assert layer_violations(graph, _toy_layers()) == []
    assert cycles(graph) == []


@pytest.mark.parametrize(("added", "violation", "cycle"), [
    pytest.param({"toy/pki.py": "def f():\n    from toy import web\n"}, "toy.pki -> toy.web",
                 ["toy.dm", "toy.pki", "toy.services.a", "toy.services.b", "toy.store", "toy.web"],
                 id="pki-reaches-up-to-web"),
    pytest.param({"toy/store.py": "from toy.dm import y\n"}, "toy.store -> toy.dm", None, id="store-imports-dm"),
    pytest.param({"toy/services/a.py": "from toy import dm, store\nfrom toy.services.b import z\n"}, None,
                 ["toy.services.a", "toy.services.b"], id="cycle-inside-a-layer"),
    pytest.param({"toy/dm.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.services import a\n"},
                 "toy.dm -> toy.services.a", ["toy.dm", "toy.services.a"], id="type-checking-import"),
])
def test_an_added_import_fails_the_checks(tmp_path: Path, added: dict[str, str], violation: str | None,
                                           cycle: list[str] | None) -> None:
    graph = import_graph(_tree(tmp_path, {**_TOY, **added}), ["toy"])
    violations = layer_violations(graph, _toy_layers())
    found = cycles(graph)
    if violation is not None:
        assert violation in violations
    if cycle is not None:
        assert sorted(cycle) in found
    assert violations or found
