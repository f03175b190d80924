"""Check that MNIST Live's packages depend on each other one way: protocol <- broker <- {trainer,
viewer}, with no cycle between any two of their sub-packages.

Reads every import statement of the four packages with ``ast`` (nothing is imported or run),
including those inside functions and under ``TYPE_CHECKING``: a dependency is a dependency
wherever it is written. Prints the graph of the top-level packages, then of their
sub-packages, with how many import statements make each edge, and exits 1 listing every
import that goes the wrong way and every cycle. Run it as ``python -m scripts.check_imports``
or ``python scripts/check_imports.py`` from the repository.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"protocol": 0, "broker": 1, "trainer": 2, "viewer": 2}
"""A package may import from a lower layer, never from a higher one or from a peer."""


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    line: int

    @property
    def where(self) -> str:
        return f"{self.module.replace('.', '/')}.py:{self.line}"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str, packages: set[str]) -> str:
    """The innermost package holding ``module`` (a package is a folder of the source tree)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in packages:
            return candidate
    return parts[0]


def imports_of(
    path: Path, root: Path = REPO, known: frozenset[str] | set[str] = frozenset()
) -> list[Import]:
    """Every import in ``path``; ``from a import b`` imports ``a.b`` when that is one of the
    ``known`` modules or packages (``from viewer import sources`` is viewer.sources)."""
    module = module_name(path, root)
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.append(Import(module, name if name in known else base, node.lineno))
    return [i for i in found if i.target.split(".")[0] in LAYERS]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def check(root: Path = REPO) -> tuple[list[str], list[str]]:
    """The graph's lines to print, and the problems found."""
    files = sorted(p for name in LAYERS for p in (root / name).rglob("*.py"))
    packages = {module_name(p.parent / "__init__.py", root) for p in files}
    known = packages | {module_name(p, root) for p in files}
    edges: Counter[tuple[str, str]] = Counter()
    problems: list[str] = []
    by_package: dict[str, set[str]] = defaultdict(set)
    for path in files:
        for imp in imports_of(path, root, known):
            source, target = imp.module.split(".")[0], imp.target.split(".")[0]
            if source != target:
                edges[(source, target)] += 1
                if LAYERS[target] >= LAYERS[source]:
                    problems.append(
                        f"{imp.where}: {source} imports {imp.target}, "
                        f"which is {'a peer' if LAYERS[target] == LAYERS[source] else 'above it'}"
                    )
            inner, outer = package_of(imp.module, packages), package_of(imp.target, packages)
            if inner != outer:
                by_package[inner].add(outer)
    for component in cycles(by_package):
        problems.append("cycle between packages: " + " <-> ".join(component))
    lines = ["packages (an arrow: imports from; the number: names imported)"]
    for name in sorted(LAYERS, key=lambda n: (LAYERS[n], n)):
        targets = sorted((t, n) for (s, t), n in edges.items() if s == name)
        used = ", ".join(f"{t} ({n})" for t, n in targets) or "nothing of ours"
        lines.append(f"  {name} -> {used}")
    lines.append("sub-packages")
    for name in sorted(by_package):
        lines.append(f"  {name} -> {', '.join(sorted(by_package[name]))}")
    return lines, problems


def main() -> int:
    lines, problems = check()
    print("\n".join(lines))
    if problems:
        print(f"\n{len(problems)} problem(s):")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print("\nok: every dependency runs one way (protocol <- broker <- trainer, viewer)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
