"""The package's layers, read from its source: no import circle, no task code in the engine, imports only downwards.

The import graph is built with ``ast`` from every ``.py`` file under ``src/unireplknet``, without importing it:

* every import counts, at module level and inside functions (a lazy import hides a circle, it does not remove
  it); imports under ``if TYPE_CHECKING:`` are for the type checker only and are left out;
* relative imports are resolved against the importing module's package, and absolute ``unireplknet.…`` ones too;
* importing a package is importing its ``__init__``; ``from pkg import name`` where ``name`` is a submodule also
  imports that submodule, and where ``name`` is one of the package's lazy exports (an ``_EXPORTS`` table that
  its ``__getattr__`` resolves on first use) it imports the module the table names;
* the top-level ``unireplknet/__init__.py`` is the facade over every layer (its lazy table names tasks as well
  as the model): it is left out of the layer order, and an import of it counts as an import of what it names.

Layers, lowest first — a module may import only from its own layer or a lower one:

0. ``_runtime``, ``ops``, ``reparam``, ``checkpoint``, ``guards``, ``limits`` — probes, kernels, the math, files, limits
1. ``model``, ``fast`` — the network and its fused inference path
2. ``zoo``, ``factory``, ``loading``, ``deploy``, ``export``, ``analysis`` — building, converting, exporting,
   measuring models
3. ``data``, ``modalities`` — datasets, readers and signal → image transforms: used by the tasks, need neither
   the engine nor a task
4. ``engine`` — the one training loop, its options, run checkpoints
5. ``tasks`` — one subpackage per task
6. ``cli``, ``analysis.erf_cli`` — the command line (command modules are found by name, not imported)
"""
import ast
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "unireplknet"

#: Module-name prefix -> layer (the longest matching prefix decides).
LAYERS: Dict[str, int] = {
    "unireplknet._runtime": 0, "unireplknet.ops": 0, "unireplknet.reparam": 0, "unireplknet.checkpoint": 0,
    "unireplknet.guards": 0, "unireplknet.limits": 0, "unireplknet._files": 0,
    "unireplknet.model": 1, "unireplknet.fast": 1,
    "unireplknet.zoo": 2, "unireplknet.factory": 2, "unireplknet.loading": 2, "unireplknet.deploy": 2,
    "unireplknet.export": 2, "unireplknet.analysis": 2,
    "unireplknet.data": 3, "unireplknet.modalities": 3,
    "unireplknet.engine": 4,
    "unireplknet.tasks": 5,
    "unireplknet.cli": 6, "unireplknet.analysis.erf_cli": 6,
}


# ----------------------------------------------------------------------------------------------- the graph
def module_files(package_dir: Path) -> Dict[str, Path]:
    """Dotted module name -> file, for every module of the package rooted at ``package_dir``."""
    root = package_dir.parent
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def lazy_exports(init_file: Path) -> Dict[str, str]:
    """A package's ``_EXPORTS`` table (public name -> submodule, relative), evaluated from its source."""
    for node in ast.parse(init_file.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            table = eval(compile(ast.Expression(node.value), str(init_file), "eval"), {"__builtins__": {}, "dict": dict})
            return {name: module.lstrip(".") for name, module in table.items()}
    return {}


def _type_checking_only(tree: ast.AST) -> Set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` bodies (their ``else`` runs for real)."""
    skipped: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for statement in node.body:
                skipped.update(id(n) for n in ast.walk(statement))
    return skipped


def import_graph(package_dir: Path) -> Dict[str, Set[str]]:
    """Module -> the package modules it imports (see the module docstring for what counts)."""
    modules = module_files(package_dir)
    root = package_dir.name
    exports = {name: lazy_exports(path) for name, path in modules.items() if path.name == "__init__.py"}

    def targets_of(base: str, names: List[str]) -> Set[str]:
        found = {base}
        for name in names:
            if f"{base}.{name}" in modules:
                found.add(f"{base}.{name}")
            elif name in exports.get(base, {}):
                found.add(f"{base}.{exports[base][name]}")
        return found

    graph: Dict[str, Set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        skipped = _type_checking_only(tree)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: Set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.split(".")[0] == root)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
                elif node.module and node.module.split(".")[0] == root:
                    base = node.module
                else:
                    continue
                found |= targets_of(base, [alias.name for alias in node.names])
        # the facade: an import of the top-level package counts as an import of what it names, not of itself
        graph[module] = {t for t in found if t in modules and t != module and (t != root or module == root)}
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import circle as a path ``[a, b, …, a]``, or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def layer_of(module: str, layers: Dict[str, int]) -> Optional[int]:
    matches = [prefix for prefix in layers if module == prefix or module.startswith(prefix + ".")]
    return layers[max(matches, key=len)] if matches else None


def upward_imports(graph: Dict[str, Set[str]], layers: Dict[str, int]) -> List[str]:
    """``a (layer i) -> b (layer j)`` for every import of a higher layer."""
    found = []
    for module in sorted(graph):
        own = layer_of(module, layers)
        for target in sorted(graph[module]):
            theirs = layer_of(target, layers)
            if own is not None and theirs is not None and theirs > own:
                found.append(f"{module} (layer {own}) -> {target} (layer {theirs})")
    return found


def unplaced(graph: Dict[str, Set[str]], layers: Dict[str, int], root: str) -> List[str]:
    return sorted(m for m in graph if m != root and layer_of(m, layers) is None)


GRAPH = import_graph(PACKAGE)


# ----------------------------------------------------------------------------------------------- the package
def test_every_module_has_a_layer():
    assert unplaced(GRAPH, LAYERS, "unireplknet") == [], "add the new module's folder to LAYERS"


def test_no_import_circle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_engine_holds_no_task():
    offending = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if m.startswith("unireplknet.engine")
                       for t in targets if t.startswith("unireplknet.tasks"))
    assert offending == []


def test_imports_go_only_downwards():
    violations = upward_imports(GRAPH, LAYERS)
    assert violations == [], "imports of a higher layer:\n" + "\n".join(violations)


def test_the_checkpoint_package_and_probes_import_nothing_above_them():
    """The file layer imports no model code; the runtime probes import nothing of the package at all."""
    assert GRAPH["unireplknet._runtime"] == set() and GRAPH["unireplknet._files"] == set()
    for module, targets in GRAPH.items():
        if module.startswith("unireplknet.checkpoint"):  # _files: the torch-free regular-file check, a leaf
            assert all(t.startswith("unireplknet.checkpoint") or t == "unireplknet._files" for t in targets), (
                module, targets)


def _reaches(start: str, goal: str) -> bool:
    seen, stack = set(), [start]
    while stack:
        for nxt in GRAPH.get(stack.pop(), ()):
            if nxt == goal or nxt.startswith(goal + "."):
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def test_generated_point_clouds_need_nothing_from_the_modalities():
    assert _reaches("unireplknet.tasks.pointcloud.cli", "unireplknet.data.pointcloud.shapes")  # the walk finds paths
    assert not _reaches("unireplknet.data.pointcloud.shapes", "unireplknet.modalities")


# ----------------------------------------------------------------------------------------------- the checker
def _write(root: Path, files: Dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_checker_finds_a_lazy_circle_and_ignores_type_checking_imports(tmp_path):
    package = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from .high import High  # the type checker's only
            def f():
                from .mid import g  # lazy, still an import
                return g
        """,
        "pkg/mid.py": "from pkg.sub import deep\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "from ..low import f\n",
        "pkg/high.py": "from . import low\n",
    })
    graph = import_graph(package)
    assert graph["pkg.low"] == {"pkg.mid"}
    assert graph["pkg.mid"] == {"pkg.sub", "pkg.sub.deep"}
    assert graph["pkg.high"] == {"pkg.low"}
    assert find_cycle(graph) == ["pkg.low", "pkg.mid", "pkg.sub.deep", "pkg.low"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_checker_finds_an_upward_import_through_a_lazy_export_table(tmp_path):
    package = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/engine/__init__.py": '_EXPORTS = {**dict.fromkeys(("fit", "Config"), "loop")}\n',
        "pkg/engine/loop.py": "def fit():\n    from ..tasks.image import Task\n",
        "pkg/tasks/__init__.py": "",
        "pkg/tasks/image.py": "from ..engine import fit\nclass Task: ...\n",
    })
    graph = import_graph(package)
    assert graph["pkg.tasks.image"] == {"pkg.engine", "pkg.engine.loop"}
    layers = {"pkg.engine": 1, "pkg.tasks": 2}
    assert upward_imports(graph, layers) == ["pkg.engine.loop (layer 1) -> pkg.tasks.image (layer 2)"]
    assert find_cycle(graph) == ["pkg.engine.loop", "pkg.tasks.image", "pkg.engine.loop"]
    assert unplaced(graph, {"pkg.engine": 1}, "pkg") == ["pkg.tasks", "pkg.tasks.image"]


@pytest.mark.parametrize("module", ["unireplknet.model", "unireplknet.fast", "unireplknet.checkpoint.layouts"])
def test_the_graph_of_the_package_is_not_empty(module):
    """The checker reads real imports of the package (a parser that found none would pass every rule)."""
    assert "unireplknet.checkpoint.io" in GRAPH[module] or "unireplknet._runtime" in GRAPH[module]
