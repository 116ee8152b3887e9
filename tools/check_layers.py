"""Check lt-noise's import graph: no cycle, and no import from a lower layer into a higher one.

    python tools/check_layers.py            # prints the layers and "OK", or every offending import; exit 1

Every module of ``lt_noise/`` is parsed with :mod:`ast` (nothing is imported or run), and every import
statement counts, wherever it stands: at module level, inside a function (a deferred import that dodges
a cycle is still an arrow), under ``if TYPE_CHECKING``. Importing ``a.b.c`` also runs the packages
``a.b`` and ``a``, so an import is an arrow to the module and to each of its packages, except the
importer's own packages (Python has already started those).

The layers are DESIGN.md §1's ("cli/tools -> methods -> models, losses, callbacks -> data and the shared
modules"), top first. A module may import from its own layer or a lower one; callbacks sit above models
and losses, which they use (DRW's class-balanced weights, the curriculum's soft margin) and which never
use them. An import of an ``lt_noise`` module that does not exist is reported too (a stale re-export).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "lt_noise"
ROOT = Path(__file__).resolve().parents[1]

# (layer name, module prefixes), top first. The longest matching prefix decides a module's layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("lt_noise.cli", "lt_noise.cli_errors", "lt_noise.sweep", "lt_noise.sweep_plots")),
    ("methods", ("lt_noise.methods",)),
    ("callbacks", ("lt_noise.callbacks",)),
    ("models, losses", ("lt_noise.models", "lt_noise.losses", "lt_noise.prototypes", "lt_noise.weighting",
                        "lt_noise.metrics", "lt_noise.optim")),
    ("data", ("lt_noise.data",)),
    ("shared", ("lt_noise.validation", "lt_noise.distributed", "lt_noise.seeding", "lt_noise")),
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {module_name(path, root): path for path in sorted((root / PACKAGE).rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index into LAYERS (0 = top) of the longest prefix that matches ``module``."""
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    if best is None:
        raise ValueError(f"Module {module} is in no layer: add it to LAYERS in {Path(__file__).name}")
    return best


def _imported(node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """The dotted names an import statement names, with its line."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, node.lineno
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against the importer's package
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            # `from pkg import submodule` imports the submodule; `from module import name` the module.
            yield (candidate if candidate in modules else base), node.lineno


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported lt_noise module -> first line}, with the packages each import runs."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1 + is_package)}
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for name, line in _imported(node, module, is_package, modules):
                if name != PACKAGE and not name.startswith(PACKAGE + "."):
                    continue
                parts = name.split(".")
                for i in range(1, len(parts) + 1):
                    target = ".".join(parts[:i])
                    if target != module and target not in own_packages:
                        edges.setdefault(target, line)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in graph:
                continue
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def check(root: Path = ROOT) -> list[str]:
    """Every problem found, as a line of text (empty when the graph is clean)."""
    modules = discover(root)
    graph = import_graph(modules)
    problems = []
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            where = f"{modules[module].relative_to(root)}:{line}"
            if target not in modules:
                problems.append(f"{where}: {module} imports {target}, which does not exist")
            elif layer_of(target) < layer_of(module):
                problems.append(
                    f"{where}: {module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                    f"({LAYERS[layer_of(target)][0]}), a higher layer"
                )
    for component in cycles(graph):
        problems.append("import cycle among: " + ", ".join(component))
    return problems


def main() -> int:
    modules = discover(ROOT)
    edges = sum(len(e) for e in import_graph(modules).values())
    print("layers, top first (a module may import its own layer or a lower one):")
    for name, prefixes in LAYERS:
        print(f"  {name:15s} {', '.join(prefixes)}")
    problems = check(ROOT)
    print(f"{len(modules)} modules, {edges} imports between them")
    for problem in problems:
        print(problem)
    print("OK: no cycle, every import points down" if not problems else f"FAILED: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
