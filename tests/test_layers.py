"""The layer contract: each package imports only from the layers below it (function-local and
type-only imports count), siblings of a layer not from each other, the demo only from the CLI
and the flows, and no two modules import each other, however long the loop. Read from the
source with `ast`, so it needs nothing installed and sees the editable install's mapped
directories as they are."""
from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.waiting import ROOT

LAYERS = (
    ("core",),
    ("lake",),
    ("ingestion",),
    ("features",),
    ("models",),
    ("monitoring", "streaming", "discovery"),
    ("serving",),
    ("tasks",),
    ("flows",),
    ("deployments",),
)
"""Lowest first: a package imports from its own package and the layers before its own."""
APART = {"demo": ("deployments", "flows")}
"""Packages outside the layers -> the only packages that may import them."""
NAMESPACE = "tideline"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the installed namespace -> its file, by pyproject's package-dir map."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = config["package-dir"]
    found = {}
    for package in config["packages"]:
        parent = max((p for p in mapped if package == p or package.startswith(f"{p}.")), key=len)
        directory = Path(mapped[parent], *package[len(parent):].split(".")[1:])
        for path in sorted((root / directory).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The namespace's modules that `name` imports (anywhere in it), with the line."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target, node.lineno


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph() -> dict[str, dict[str, int]]:
    known = modules()
    return {name: dict(imports(name, path, known)) for name, path in known.items()}


def test_every_package_has_a_place() -> None:
    placed = {p for layer in LAYERS for p in layer} | set(APART)
    packages = {package_of(m) for m in modules()} - {""}
    assert packages == placed, "place new packages in LAYERS (or APART) of this test"


def test_no_package_imports_upward_sideways_or_into_the_demo() -> None:
    rank = {package: k for k, layer in enumerate(LAYERS) for package in layer}
    wrong = []
    for module, targets in graph().items():
        mine = package_of(module)
        for target, line in targets.items():
            theirs = package_of(target)
            if theirs == mine or not theirs:
                continue
            if theirs in APART:
                allowed = mine in APART[theirs]
            elif mine in APART:
                allowed = True
            else:
                allowed = rank[theirs] < rank[mine]
            if not allowed:
                wrong.append(f"{module} (line {line}) imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    edges = graph()
    cycles = [sorted(part) for part in strongly_connected(edges) if len(part) > 1]
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def strongly_connected(edges: dict[str, dict[str, int]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(edges.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    part.add(member)
                    if member == node:
                        break
                found.append(part)
    return found


@pytest.mark.parametrize("edges, cycle", [
    ({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}, {"a", "b", "c"}),
    ({"a": {"b": 1}, "b": {"c": 1}, "c": {}}, None),
])
def test_the_cycle_finder_finds_long_loops_and_only_loops(edges: dict, cycle: set | None
                                                          ) -> None:
    parts = [p for p in strongly_connected(edges) if len(p) > 1]
    assert parts == ([cycle] if cycle else [])
