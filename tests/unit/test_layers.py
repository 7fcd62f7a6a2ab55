"""The package's layers: nothing imports upward, and no module imports itself round a cycle.

Every ``import`` and ``from ... import`` in ``src/tabpipe`` counts, wherever it stands (a function-level
import is still a dependency); only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
A module's layer is that of the longest prefix in LAYERS that names it (docs/architecture.md).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

LAYERS: dict[str, int] = {
    # L0 foundations: no tabpipe imports but each other
    "tabpipe": 0, "tabpipe.errors": 0, "tabpipe.config_base": 0, "tabpipe.stages": 0, "tabpipe.edge": 0,
    "tabpipe.moved": 0, "tabpipe.jsonable": 0, "tabpipe.ranked": 0,
    # L1 the data contract and the shipped model object
    "tabpipe.schema": 1, "tabpipe.privacy": 1, "tabpipe.model": 1,
    "tabpipe.orchestration.spec": 1,   # a config section the Airflow venv reads without tabpipe's dependencies
    # L2 backends and pure building blocks
    "tabpipe.sources": 2, "tabpipe.registry": 2, "tabpipe.executors": 2, "tabpipe.drift": 2, "tabpipe.reports": 2,
    # L3 the validated settings (they embed the sources' and the registry's sections)
    "tabpipe.config": 3,
    # L4 the history store and its log
    "tabpipe.history": 4,
    # L5 training and scoring
    "tabpipe.training": 5, "tabpipe.scoring": 5,
    # L6 after deployment
    "tabpipe.monitoring": 6,
    # L7 the edges: command line, web service, schedulers
    "tabpipe.cli": 7, "tabpipe.serving": 7, "tabpipe.orchestration": 7,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.joinpath("tabpipe").rglob("*.py") if "migrations" not in p.parts}


def layer_of(module: str) -> int:
    """The layer of the longest LAYERS prefix naming ``module``."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"{module} is in no layer: add its package to LAYERS")


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return skipped


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The tabpipe modules that module ``name`` imports (submodules resolved, TYPE_CHECKING left out)."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tabpipe":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "tabpipe")
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    missing = []
    for name in _modules():
        try:
            layer_of(name)
        except KeyError as exc:
            missing.append(str(exc))
    assert not missing, "\n".join(missing)


def test_nothing_imports_upward():
    upward = [f"{name} (L{layer_of(name)}) imports {dep} (L{layer_of(dep)})"
              for name, deps in sorted(_graph().items()) for dep in sorted(deps) if layer_of(dep) > layer_of(name)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    # a package and its own submodules (an __init__ re-exporting them) do not count as a cycle
    graph = {name: {d for d in deps if not d.startswith(name + ".") and not name.startswith(d + ".")}
             for name, deps in _graph().items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
])
def test_find_cycle_finds_a_cycle(graph, expected):
    assert find_cycle(graph) == expected


def test_layer_of_uses_the_longest_prefix():
    assert layer_of("tabpipe.orchestration.spec") == 1
    assert layer_of("tabpipe.orchestration.airflow") == 7
    assert layer_of("tabpipe.training.search.schedule") == 5
