"""The shape of the package (docs/architecture.md): modules of at most ~500 lines, no import cycle,
no private name imported from another module, every rule's paths from lzflow.layout."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import lzflow

PACKAGE = Path(lzflow.__file__).resolve().parent
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Import edges between lzflow modules (at any level, also inside functions) and the private
    names imported from another module: (importer, module, name)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("lzflow"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges[name].add(sub if sub in modules else target)
                if sub not in modules and alias.name.startswith("_") and not alias.name.startswith("__"):
                    private.append((name, target, alias.name))
    return edges, private


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search; a package's edge to itself is not a cycle)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == node:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_module_over_500_lines():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_no_import_cycle():
    edges, _ = _imports()
    assert _cycle(edges) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check can fail


def test_no_private_name_imported_across_modules():
    _, private = _imports()
    assert private == []


def test_rules_take_paths_from_layout(repo):
    """No artefact path is written out in a rule file: outputs, logs and benchmarks go through
    out()/study_out()/log_path()/bench_path() (lzflow.layout)."""
    for smk in (repo / "workflow" / "rules").glob("*.smk"):
        if smk.name == "common.smk":
            continue
        literal = [line for line in smk.read_text().splitlines()
                   if re.search(r"""["'][^"']*\.(json|npz|root|csv|png|md|html|log|tsv)["']""", line)
                   and "caption=" not in line]
        assert literal == [], f"{smk.name}: paths written out: {literal}"
