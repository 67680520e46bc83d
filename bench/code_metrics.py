"""The size figures of issue 18, over the tree: modules over 400 lines, classes
over 25 methods, functions over 60 lines, and the ``job[...]``/``params[...]``
look-ups left outside the tests and benchmarks.

    python bench/code_metrics.py [ROOT]

Prints one line per module, class or function over its limit (none is the
target), ``mongo_manager.py``'s length, and the count of look-ups.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

SKIP = {"tests", "bench", ".git", "contents"}


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


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve())
