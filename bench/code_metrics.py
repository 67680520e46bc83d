"""The size figures of issue 18, over the tree: modules over 400 lines, classes
over 25 methods, functions over 60 lines, the ``job[...]``/``params[...]``
look-ups left outside the tests and benchmarks, and import circles (between
any two modules, top-level files included, by their module-level imports:
import-linter's contracts see packages only).

    python bench/code_metrics.py [ROOT]

Prints one line per module, class or function over its limit (none is the
target), ``mongo_manager.py``'s length, and the count of look-ups.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

SKIP = {"tests", "bench", ".git", "contents", "docs", "models"}


def main(root: Path) -> None:
    lookups = 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIP & set(rel.parts):
            continue
        text = path.read_text()
        if text.count("\n") > 400:
            print(f"module over 400 lines: {rel} ({text.count(chr(10))})")
        lookups += len(re.findall(r"\b(job|params)\[", text))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                methods = [b for b in node.body
                           if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))]
                if len(methods) > 25:
                    print(f"class over 25 methods: {rel}:{node.name} ({len(methods)})")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    print(f"function over 60 lines: {rel}:{node.name} ({length})")
    print(f"mongo_manager.py: {(root / 'mongo_manager.py').read_text().count(chr(10))} lines")
    print(f"job[...]/params[...] look-ups outside tests and bench: {lookups}")
    graph = import_graph(root)
    print(f"import circles among {len(graph)} modules: {circles(graph) or 0}")


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module -> the modules of the tree it imports at module level
    (imports under ``if TYPE_CHECKING:`` and inside functions left out)."""
    files = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for p in root.rglob("*.py") if not SKIP & set(p.relative_to(root).parts)}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, round (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve())
