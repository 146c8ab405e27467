#!/usr/bin/env python3
"""Export the generated motion clips as video files and draw the mosaic pictures of docs/video.md.

The embedded motion set is generated on the fly (:class:`unireplknet.data.video.MotionClips`), so nothing
needs to be stored in the repository. This script

* writes ``docs/img/video_mosaic.png`` (one clip per class as the 4×4 frame mosaic the backbone sees) and
  ``docs/img/video_reshape.png`` (the same clips in the official code's memory-reshape layout);
* with ``--export DIR``, writes the clips as ``DIR/{train,val}/<class>/<index>.mp4`` (PyAV), a real-file
  copy of the set for ``unireplknet video-train --data DIR/train --val-data DIR/val``.

Usage::

    python scripts/make_motion_clips.py [--export /tmp/motion_videos --clips-per-class 48]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from unireplknet.data.video import MOTION_CLASS_NAMES, MotionClips
from unireplknet.tasks.video_cli import clip_picture

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


def export(dest: Path, clips_per_class: int, frames: int, size: int) -> None:
    from unireplknet.modalities.video import write_video

    for split, n in (("train", clips_per_class), ("val", max(1, clips_per_class // 4))):
        ds = MotionClips(split, n, frames, size)
        for i in range(len(ds)):
            clip, _, label = ds.render(i)
            write_video(dest / split / MOTION_CLASS_NAMES[label] / f"{i:05d}.mp4", clip)
        print(f"{dest / split}: {len(ds)} clips")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", default=str(ROOT / "docs" / "img"), help="where the pictures go")
    p.add_argument("--export", default=None, help="also write the clips as .mp4 files under this folder")
    p.add_argument("--clips-per-class", type=int, default=48)
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    args = p.parse_args()
    out = Path(args.docs)
    out.mkdir(parents=True, exist_ok=True)
    pictures(out, args.size, args.num_frames, scale=2)
    if args.export:
        export(Path(args.export), args.clips_per_class, args.num_frames, args.size)


if __name__ == "__main__":
    main()
