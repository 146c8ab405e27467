"""Draw predicted boxes and masks (detector) and label maps (segmenter) on held-out generated scenes.

    python scripts/make_dense_picture.py --det runs/det/deploy.safetensors --seg runs/seg/deploy.safetensors -o docs/img/dense_scenes.png

Rows (labelled): the scenes with ground-truth outlines; the detector's boxes, class names, scores and masks
(score ≥ --threshold, at most --top-k per image); the segmenter's label map. Columns are held-out scenes, with
pixel axes; a legend names the class colours. Pillow draws the tiles, matplotlib (the ``plot`` extra) lays them
out; a few seconds on one core once the two runs exist (≈ 5 CPU-minutes each, docs/dense.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_modality_figures import figure_class, save  # noqa: E402  one figure style and writer for docs/

from unireplknet.data import scenes  # noqa: E402
from unireplknet.tasks.dense.task import load_dense_model  # noqa: E402

COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48)]  # per class (1-based for shapes)
SCALE = 3


def _up(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img).resize((img.shape[1] * SCALE, img.shape[0] * SCALE), Image.NEAREST)


def _overlay(base: Image.Image, mask: np.ndarray, color, alpha: float = 0.45) -> Image.Image:
    m = Image.fromarray((mask * int(255 * alpha)).astype(np.uint8)).resize(base.size, Image.NEAREST)
    return Image.composite(Image.new("RGB", base.size, color), base, m)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--det", required=True, help="deploy.safetensors of a det-train run on the scenes")
    p.add_argument("--seg", default=None, help="deploy.safetensors of a seg-train run on the scenes")
    p.add_argument("--num", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--top-k", type=int, default=None, help="draw only the k best detections per image")
    p.add_argument("-o", "--output", default="docs/img/dense_scenes.png")
    args = p.parse_args()

    Figure = figure_class()  # fail before loading anything when matplotlib is missing
    det, _, _ = load_dense_model(Path(args.det))
    seg = load_dense_model(Path(args.seg))[0] if args.seg else None
    names = list(scenes.SCENE_CLASSES)
    tiles = []
    for i in range(args.num):
        s = scenes.make_scene(i, seed=args.seed, split="val")
        x = torch.from_numpy(s.image).permute(2, 0, 1).float() / 255
        truth = _up(s.image)
        d = ImageDraw.Draw(truth)
        for box, label in zip(s.boxes, s.labels):
            d.rectangle([v * SCALE for v in box], outline=COLORS[label - 1], width=2)
        with torch.no_grad():
            out = det([x])[0]
        pred = _up(s.image)
        keep = out["scores"] >= args.threshold
        if args.top_k is not None:
            keep &= torch.arange(len(keep)) < args.top_k  # detections come sorted by score
        for mask, label in zip(out.get("masks", torch.zeros(0, 1, 1, 1))[keep], out["labels"][keep]):
            pred = _overlay(pred, (mask[0] > 0.5).numpy(), COLORS[int(label) - 1])
        d = ImageDraw.Draw(pred)
        for box, label, score in zip(out["boxes"][keep], out["labels"][keep], out["scores"][keep]):
            c = COLORS[int(label) - 1]
            d.rectangle([float(v) * SCALE for v in box], outline=c, width=2)
            d.text((float(box[0]) * SCALE + 2, float(box[1]) * SCALE + 1), f"{names[int(label) - 1]} {score:.2f}",
                   fill=(255, 255, 255))
        column = [truth, pred]
        if seg is not None:
            mean = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)
            std = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)
            with torch.no_grad():
                labels = seg(((x - mean) / std)[None]).argmax(1)[0].numpy()
            lab = _up(s.image)
            for c in range(1, len(names) + 1):
                lab = _overlay(lab, labels == c, COLORS[c - 1], alpha=0.7)
            column.append(lab)
        tiles.append(column)

    from matplotlib.patches import Patch

    rows = ["ground truth", f"detector\n(score ≥ {args.threshold:g})", "segmenter\n(label map)"][:len(tiles[0])]
    side = tiles[0][0].size[0] // SCALE  # scene side in pixels
    fig = Figure(figsize=(1.75 * len(tiles) + 0.8, 1.75 * len(rows) + 0.7), layout="constrained")
    axes = fig.subplots(len(rows), len(tiles), squeeze=False, sharex=True, sharey=True)
    for c, column in enumerate(tiles):
        for r, tile in enumerate(column):
            ax = axes[r, c]
            ax.imshow(np.asarray(tile), extent=(0, side, side, 0), interpolation="nearest")
            ax.set_xticks([0, side // 2, side])
            ax.set_yticks([0, side // 2, side])
            ax.tick_params(labelsize=6, length=2)
            if r == 0:
                ax.set_title(f"held-out scene {c}")
            if c == 0:
                ax.set_ylabel(f"{rows[r]}\ny (px)")
            if r == len(rows) - 1:
                ax.set_xlabel("x (px)")
    fig.legend(handles=[Patch(color=np.array(COLORS[k]) / 255, label=name) for k, name in enumerate(names)],
               loc="outside lower center", ncol=len(names), frameon=False, title="class (box, mask and label colour)")
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    save(fig, path)


if __name__ == "__main__":
    main()
