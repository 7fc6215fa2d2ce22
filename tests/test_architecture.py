"""The layering of the package (docs/architecture.md), checked on the source: no import circle,
the engine and the checks know no built-in step kind, modules stay small."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "lollms_runtime"
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(test)


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import, at module level or inside functions (a lazy import still makes a circle of
    dependencies), except those only for the type checker."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def imports_of(name: str) -> set[str]:
    """The package's modules that module ``name`` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module or ""
            root = f"{base}.{module}".strip(".") if node.level else module
            # "from . import x": x may be a module of the package, else a name in it.
            targets = [
                f"{root}.{alias.name}" if f"{root}.{alias.name}" in MODULES else root
                for alias in node.names
            ]
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(GRAPH[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                group.append(item)
                if item == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return groups


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        for nxt in GRAPH[pending.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                pending.append(nxt)
    return seen


def test_the_import_graph_is_read() -> None:
    # The test below means something only if imports are found, lazy ones included.
    assert "lollms_runtime.context" in GRAPH["lollms_runtime.engine"]
    assert "lollms_runtime.default_plugins.steps" in GRAPH["lollms_runtime.runtime"]  # lazy
    assert "lollms_runtime.backends.base" in GRAPH["lollms_runtime.contracts"]


def test_no_import_circle_in_the_package() -> None:
    assert cycles() == []


def test_the_cycle_finder_finds_a_circle() -> None:
    GRAPH["lollms_runtime.contracts"].add("lollms_runtime.engine")
    try:
        assert any("lollms_runtime.engine" in group for group in cycles())
    finally:
        GRAPH["lollms_runtime.contracts"].discard("lollms_runtime.engine")


def test_the_engine_and_the_checks_import_nothing_from_the_built_in_plugins() -> None:
    for name in ("engine", "context", "pipeline", "checks", "loader", "contracts", "plugins"):
        found = sorted(m for m in reachable(f"lollms_runtime.{name}") if ".default_plugins" in m)
        assert found == [], f"lollms_runtime.{name} reaches {found}"


BUILTIN_KINDS = {
    "generate",
    "condition",
    "post_process",
    "text_to_image",
    "reply",
    "set",
    "loop",
    "for_each",
    "call",
}
# Modules that write personality files as text (the format names its kinds).
NAMES_ALLOWED = {
    "lollms_runtime.scaffold": "the template of a new personality file",
    "lollms_runtime.importers": "importers write personality files",
}


def named_kinds(path: Path) -> set[tuple[str, int]]:
    """Built-in kind names written as string constants (docstrings aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        (node.value, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in BUILTIN_KINDS
        and id(node) not in docstrings
    }


def test_no_module_outside_the_built_in_plugins_names_a_built_in_kind() -> None:
    found = {}
    for name, path in MODULES.items():
        if ".default_plugins" in name or any(
            name == allowed or name.startswith(allowed + ".") for allowed in NAMES_ALLOWED
        ):
            continue
        names = named_kinds(path)
        if name == "lollms_runtime.checks":
            names = {(n, line) for n, line in names if n != "loop"}  # Jinja's {% for %} loop
        if names:
            found[name] = sorted(names)
    assert found == {}


def test_every_module_is_under_600_lines() -> None:
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) >= MAX_LINES
    }
    assert long == {}
