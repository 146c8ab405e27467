#!/usr/bin/env python3
"""Export the generated shapes in ModelNet-40 layouts and draw the projection pictures of docs/pointcloud.md.

The embedded shapes set is generated on the fly (:class:`unireplknet.data.pointcloud.GeneratedShapes`), so
nothing needs to be stored. This script

* writes ``docs/img/pointcloud_projection.png``: one shape per class (rows) seen from the four official
  views (columns) by the fixed depth projection — red = occupancy, green = mean nearness, blue = soft
  front-surface nearness;
* writes ``docs/img/pointcloud_scans.png``: one test scan of each of the sixteen classes of the hard demo
  (:class:`unireplknet.data.pointcloud.GeneratedScans`) through the same four views, labelled;
* with ``--export DIR``, writes ``DIR/<class>/{train,test}/<class>_NNNN.off`` meshes (the original
  ModelNet-40 layout) so ``unireplknet points-train --data DIR`` reads real files.

Usage::

    python scripts/make_shapes.py [--export /tmp/shapes_modelnet --shapes-per-class 32]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from unireplknet.data.pointcloud import SHAPE_CLASS_NAMES, GeneratedShapes
from unireplknet.data.pointcloud.shapes import SHAPE_SPLIT_SEEDS, random_rotation, shape_mesh
from unireplknet.data.pointcloud.modelnet import write_off
from unireplknet.tasks.pointcloud.cli import projection_picture

ROOT = Path(__file__).resolve().parents[1]


def picture(out_dir: Path, num_points: int = 2048, image_size: int = 64) -> None:
    import torch

    ds = GeneratedShapes("val", 1, num_points)
    pic = projection_picture(torch.stack([ds[i][0] for i in range(len(ds))]), 4, image_size)
    path = out_dir / "pointcloud_projection.png"
    pic.save(path, optimize=True)
    print(f"{path}: rows {', '.join(SHAPE_CLASS_NAMES)}; columns the four official views")


def scans_picture(out_dir: Path, num_points: int = 1024, image_size: int = 64, scale: int = 2) -> None:
    """The depth views of one test scan per class, with the class names (rows) and the view numbers (columns)."""
    import torch
    from PIL import Image, ImageDraw

    from unireplknet.data.pointcloud import GeneratedScans

    ds = GeneratedScans("test", 1, num_points)
    grid = projection_picture(torch.stack([ds[i][0] for i in range(len(ds))]), 4, image_size, scale)
    cell, left, top = image_size * scale, 150, 24
    pic = Image.new("RGB", (left + grid.width, top + grid.height), "white")
    pic.paste(grid, (left, top))
    draw = ImageDraw.Draw(pic)
    for v in range(4):
        draw.text((left + v * cell + cell // 2 - 20, 6), f"view {v}", fill="black")
    for row, name in enumerate(ds.classes):
        draw.text((8, top + row * cell + cell // 2 - 6), name.replace("_", " "), fill="black")
    path = out_dir / "pointcloud_scans.png"
    pic.save(path, optimize=True)
    print(f"{path}: one test scan per class (rows) through the four official views (columns); red = occupancy, "
          "green = mean nearness, blue = front-surface nearness")


def export(dest: Path, shapes_per_class: int) -> None:
    for split, seed_split, n in (("train", "train", shapes_per_class), ("test", "val", max(1, shapes_per_class // 4))):
        for i in range(n * len(SHAPE_CLASS_NAMES)):
            label = i % len(SHAPE_CLASS_NAMES)
            rng = np.random.default_rng([SHAPE_SPLIT_SEEDS[seed_split], 0, i])
            v, f = shape_mesh(SHAPE_CLASS_NAMES[label])
            v = (v * rng.uniform(0.7, 1.3, size=3)) @ random_rotation(rng).T
            name = SHAPE_CLASS_NAMES[label]
            folder = dest / name / split
            folder.mkdir(parents=True, exist_ok=True)
            write_off(folder / f"{name}_{i:04d}.off", v, f)
        print(f"{dest}: {n} {split} meshes per class")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", default=str(ROOT / "docs" / "img"), help="where the picture goes")
    p.add_argument("--export", default=None, help="also write the shapes as .off meshes under this folder")
    p.add_argument("--shapes-per-class", type=int, default=32)
    args = p.parse_args()
    out = Path(args.docs)
    out.mkdir(parents=True, exist_ok=True)
    picture(out)
    scans_picture(out)
    if args.export:
        export(Path(args.export), args.shapes_per_class)


if __name__ == "__main__":
    main()
