"""The package's import graph: file I/O in a leaf, no circle between the model's modules, data below modalities.

Every relative import counts, also one inside a function (a lazy import hides a circle, it does not remove it);
imports under ``if TYPE_CHECKING:`` are for the type checker only and are left out.
"""
import ast
from pathlib import Path
from typing import Dict, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "unireplknet"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> Set[str]:
    """Package modules that ``path`` imports (absolute names), outside TYPE_CHECKING blocks."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    type_checking = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking or not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
        if node.module:
            found.add(target)
        else:  # from . import fast, reparam: the submodules, not the package's __init__
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _graph() -> Dict[str, Set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {t for t in _imports(path) if t in modules and t != name} for name, path in modules.items()}


GRAPH = _graph()
CORE = ["unireplknet.model", "unireplknet.fast", "unireplknet.checkpoint", "unireplknet.checkpoint_io",
        "unireplknet.zoo", "unireplknet.reparam", "unireplknet.ops", "unireplknet.ops.cpu"]


def _reaches(start: str, goal: str) -> bool:
    seen, stack = set(), [start]
    while stack:
        for nxt in GRAPH.get(stack.pop(), ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def test_file_io_is_a_leaf():
    assert GRAPH["unireplknet.checkpoint_io"] == set()


@pytest.mark.parametrize("module", CORE)
def test_no_import_circle_through_the_model_modules(module):
    assert not _reaches(module, module), f"{module} imports itself through {sorted(GRAPH[module])}"


def test_model_and_fast_import_only_downwards():
    assert GRAPH["unireplknet.model"] <= {"unireplknet.fast", "unireplknet.reparam",
                                          "unireplknet.checkpoint_io", "unireplknet.ops", "unireplknet.ops.cpu"}
    assert not _reaches("unireplknet.fast", "unireplknet.model")


def test_generated_point_clouds_need_nothing_from_the_modalities_layer():
    assert not _reaches("unireplknet.data.pointcloud.shapes", "unireplknet.modalities.pointcloud")
    assert not _reaches("unireplknet.data.pointcloud.shapes", "unireplknet.modalities")
