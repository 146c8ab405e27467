"""One rule for data: ``modalities/`` holds only signal -> image transforms; every dataset and reader is under
``data/``, and the tasks' command lines import no torch when ``unireplknet --help`` reads them.

Checked on the source (the syntax tree), so a dataset pasted back into a transforms module fails here.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "unireplknet"
MODALITIES = sorted((PACKAGE / "modalities").glob("*.py"))


def _classes_deriving_from(tree: ast.AST, base: str):
    return [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            and any(ast.unparse(b).split(".")[-1] == base for b in node.bases)]


def _relative_import_targets(path: Path):
    tree = ast.parse(path.read_text())
    return [("." * node.level) + (node.module or "") for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level]


@pytest.mark.parametrize("path", MODALITIES, ids=lambda p: p.name)
def test_modalities_hold_no_dataset(path):
    tree = ast.parse(path.read_text())
    assert _classes_deriving_from(tree, "Dataset") == [], f"{path.name}: datasets belong under unireplknet/data/"


@pytest.mark.parametrize("path", MODALITIES, ids=lambda p: p.name)
def test_modalities_read_no_files(path):
    """No reader in the transforms: file formats (wave, soundfile, PyAV, csv, OFF) are read under data/."""
    source = path.read_text()
    tree = ast.parse(source)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not imported & {"wave", "soundfile", "av", "csv"}, f"{path.name} imports {imported & {'wave', 'soundfile', 'av', 'csv'}}"
    defined = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert not {n for n in defined if n.startswith(("read_", "load_", "write_", "scan_"))}, path.name


def test_datasets_use_the_transforms_not_the_other_way_round():
    """data/ may import modalities/ (a dataset applies a transform); no transform imports a dataset module."""
    dataset_modules = ("data.audio", "data.video", "data.pointcloud.modelnet", "data.coco", "data.ade20k")
    for path in MODALITIES:
        for target in _relative_import_targets(path):
            assert not target.lstrip(".").startswith(dataset_modules), f"{path.name} imports {target}"
    # and the moved readers really sit on top of the transforms they apply
    assert "...modalities.audio" in _relative_import_targets(PACKAGE / "data" / "audio" / "clips.py")
    assert "...modalities.video" in _relative_import_targets(PACKAGE / "data" / "video" / "clips.py")
