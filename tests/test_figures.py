"""The documentation figure scripts: a clear error without the plot extra, and byte-identical output without
metadata (so that re-drawing a figure changes the repository only when its content changes)."""
from __future__ import annotations

import sys

import pytest
from conftest import load_repo_script


def _load(name: str):
    return load_repo_script(f"scripts/{name}.py")


def test_modality_figures_without_matplotlib_name_the_extra(monkeypatch):
    figures = _load("make_modality_figures")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    monkeypatch.setattr(sys, "argv", ["make_modality_figures.py"])
    with pytest.raises(SystemExit) as e:
        figures.main()
    assert "pip install 'unireplknet[plot]'" in str(e.value)


def test_dense_picture_without_matplotlib_names_the_extra(monkeypatch):
    picture = _load("make_dense_picture")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(sys, "argv", ["make_dense_picture.py", "--det", "missing.safetensors"])
    with pytest.raises(SystemExit) as e:
        picture.main()
    assert "pip install 'unireplknet[plot]'" in str(e.value)


def test_saved_figure_is_deterministic_small_and_without_metadata(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    figures = _load("make_modality_figures")
    Figure = figures.figure_class()
    paths = []
    for k in range(2):
        fig = Figure(figsize=(3, 2))
        ax = fig.subplots()
        ax.plot([0, 1, 2], [1, 3, 2], label="a line")
        ax.set_xlabel("x (unit)")
        ax.legend()
        paths.append(tmp_path / f"f{k}.png")
        figures.save(fig, paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with Image.open(paths[0]) as im:
        assert im.size == (3 * figures.DPI, 2 * figures.DPI)
        assert im.mode == "P" and not im.text  # 256-colour palette, no tEXt chunks (no software, no date)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place
