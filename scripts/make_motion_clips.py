#!/usr/bin/env python3
"""Export the generated motion clips as video files and draw the mosaic pictures of docs/video.md.

The embedded motion set is generated on the fly (:class:`unireplknet.data.video.MotionClips`), so nothing
needs to be stored in the repository. This script

* writes ``docs/img/video_mosaic.png`` (one clip per class as the 4×4 frame mosaic the backbone sees) and
  ``docs/img/video_reshape.png`` (the same clips in the official code's memory-reshape layout);
* with ``--export DIR``, writes the clips as ``DIR/{train,val}/<class>/<index>.mp4`` (PyAV), a real-file
  copy of the set for ``unireplknet video-train --data DIR/train --val-data DIR/val``.

Usage::

    python scripts/make_motion_clips.py [--export /tmp/motion_videos --clips-per-class 48 [--difficulty hard]]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from unireplknet.data.video import HARD_MOTION_CLASS_NAMES, MOTION_CLASS_NAMES, MotionClips
from unireplknet.tasks.video.cli import clip_picture

ROOT = Path(__file__).resolve().parents[1]


def pictures(out_dir: Path, size: int = 32, frames: int = 16, scale: int = 1) -> None:
    ds = MotionClips("val", 1, frames, size)
    for layout in ("mosaic", "reshape"):
        tiles = [clip_picture(ds.render(i)[0], layout, scale) for i in range(len(MOTION_CLASS_NAMES))]
        gap = 6
        w, h = tiles[0].size
        sheet = Image.new("RGB", (3 * w + 2 * gap, 2 * h + gap), (255, 255, 255))
        for i, t in enumerate(tiles):
            sheet.paste(t, ((i % 3) * (w + gap), (i // 3) * (h + gap)))
        path = out_dir / f"video_{layout}.png"
        # A 64-colour palette keeps the noisy frames under 100 KB without visible change at this size.
        sheet.quantize(colors=64).save(path, optimize=True)
        print(f"{path}: classes left to right, top to bottom: {', '.join(MOTION_CLASS_NAMES)}")


def hard_picture(out_dir: Path, size: int = 32, scale: int = 3) -> None:
    """Two rows of six hard clips (one per class): objects of the training split, then of the test split."""
    from PIL import ImageDraw

    gap, label_h = 8, 14
    rows = [MotionClips(split, 1, 4, size, difficulty="hard") for split in ("train", "test")]
    tiles = [[clip_picture(ds.render(i)[0], "mosaic", scale) for i in range(len(ds))] for ds in rows]
    w, h = tiles[0][0].size
    sheet = Image.new("RGB", (6 * w + 5 * gap, label_h + 2 * h + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(HARD_MOTION_CLASS_NAMES):
        draw.text((c * (w + gap) + 2, 1), name, fill=(0, 0, 0))
        for r in range(2):
            sheet.paste(tiles[r][c], (c * (w + gap), label_h + r * (h + gap)))
    path = out_dir / "video_hard_mosaic.png"
    sheet.quantize(colors=128).save(path, optimize=True)
    print(f"{path}: columns {', '.join(HARD_MOTION_CLASS_NAMES)}; top row training objects, bottom row test objects")


def export(dest: Path, clips_per_class: int, frames: int, size: int, difficulty: str = "easy") -> None:
    from unireplknet.data.video import write_video

    splits = [("train", clips_per_class), ("val", max(1, clips_per_class // 4))]
    if difficulty == "hard":
        splits.append(("test", max(1, clips_per_class // 4)))
    for split, n in splits:
        ds = MotionClips(split, n, frames, size, difficulty=difficulty)
        for i in range(len(ds)):
            clip, _, label = ds.render(i)
            write_video(dest / split / ds.classes[label] / f"{i:05d}.mp4", clip)
        print(f"{dest / split}: {len(ds)} clips")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", default=str(ROOT / "docs" / "img"), help="where the pictures go")
    p.add_argument("--export", default=None, help="also write the clips as .mp4 files under this folder")
    p.add_argument("--clips-per-class", type=int, default=48)
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--difficulty", default="easy", choices=("easy", "hard"), help="which set --export writes")
    args = p.parse_args()
    out = Path(args.docs)
    out.mkdir(parents=True, exist_ok=True)
    pictures(out, args.size, args.num_frames, scale=2)
    hard_picture(out, args.size)
    if args.export:
        export(Path(args.export), args.clips_per_class, args.num_frames, args.size, args.difficulty)


if __name__ == "__main__":
    main()
