"""A generated scene set for detection and segmentation: coloured shapes on textured backgrounds.

Every scene is drawn on the fly from ``(seed, index)`` with numpy, so the set costs no disk space, is the
same on every machine and can be as large as wanted. A scene holds 1 … ``max_objects`` shapes of three
classes (rectangle, ellipse, triangle) in random colours — the class is the *shape*, not the colour — on a
background of low-contrast stripes and noise. Later shapes occlude earlier ones; instance masks and boxes
describe the visible part only, and shapes hidden below ``min_visible_pixels`` are dropped.

The same scenes can be written to disk in the two layouts real data comes in:

* COCO (:func:`write_coco`): ``<root>/<split>/<id>.png`` and ``<root>/annotations/instances_<split>.json``
  with boxes (x, y, w, h), uncompressed-RLE instance masks, areas and category ids 1 … 3;
* ADE20K (:func:`write_ade20k`): ``<root>/images/<split>/<name>.png`` and
  ``<root>/annotations/<split>/<name>.png`` with 0 = unlabelled, 1 = background, 2 … 4 = the shapes, i.e. the
  labels that ``reduce_zero_label`` turns into 0 = background, 1 … 3 = shapes (255 ignored).

Only numpy and Pillow are needed (no pycocotools to write).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

__all__ = [
    "SCENE_CLASSES",
    "SCENE_STYLES",
    "Scene",
    "make_scene",
    "mask_to_rle",
    "rle_to_mask",
    "write_coco",
    "write_ade20k",
    "ADE20K_SPLITS",
    "scene_class_names",
    "scene_stats",
]

#: Object classes; in COCO files their category ids are 1, 2, 3 in this order.
SCENE_CLASSES: Tuple[str, ...] = ("rectangle", "ellipse", "triangle")

#: Scene styles (:func:`make_scene`): shapes in flat saturated colours (the demo) or in background-like textures.
SCENE_STYLES: Tuple[str, ...] = ("flat", "textured")

#: ADE20K folder names of the training and held-out splits.
ADE20K_SPLITS: Dict[str, str] = {"train": "training", "val": "validation"}

# Seeds of the train and val splits are far apart so the two sets never share a scene.
_SPLIT_OFFSET = {"train": 0, "val": 1_000_003}


@dataclass
class Scene:
    """One generated scene.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        boxes: (N, 4) float32 boxes (x0, y0, x1, y1) in pixels, x1/y1 exclusive (COCO/torchvision convention).
        labels: (N,) int64 class ids 1 … 3 (index into :data:`SCENE_CLASSES` plus one).
        masks: (N, H, W) bool visible-part instance masks.
        semantic: (H, W) uint8 — 0 background, 1 … 3 the shape classes.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    semantic: np.ndarray


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-contrast oriented stripes plus pixel noise around a random dull base colour."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(60, 190, size=3)
    img = np.tile(base, (size, size, 1)).astype(np.float32)
    for _ in range(2):
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(0.15, 0.6)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        img += wave[..., None] * rng.uniform(8, 22, size=3)
    img += rng.normal(0, 6, size=img.shape)
    return img


def _shape_mask(rng: np.random.Generator, cls: int, size: int, min_extent: int, max_extent: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    w, h = rng.integers(min_extent, max_extent + 1, size=2)
    x0 = rng.uniform(0, size - w)
    y0 = rng.uniform(0, size - h)
    if cls == 0:  # axis-aligned rectangle
        return (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
    if cls == 1:  # ellipse inscribed in the box
        cx, cy = x0 + w / 2, y0 + h / 2
        return ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1.0
    # triangle: apex on the top edge, base on the bottom edge (point-in-triangle by edge signs)
    apex = (x0 + rng.uniform(0.2, 0.8) * w, y0)
    pts = [apex, (x0 + w, y0 + h), (x0, y0 + h)]
    signs = []
    for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1]):
        signs.append((bx - ax) * (yy - ay) - (by - ay) * (xx - ax))
    signs = np.stack(signs)
    return np.all(signs >= 0, axis=0) | np.all(signs <= 0, axis=0)


def make_scene(
    index: int,
    seed: int = 0,
    size: int = 64,
    max_objects: int = 3,
    min_visible_pixels: int = 30,
    split: str = "train",
    style: str = "flat",
) -> Scene:
    """Draw scene ``index`` of the set ``(seed, split)``: deterministic, independent of every other scene.

    ``style='flat'`` (the demo's): every shape in one saturated colour (one channel at 15 or 240), which sets it
    apart from the dull background — a colour threshold finds the shapes. ``style='textured'``: every shape is
    filled with a texture drawn from the *background's own* distribution (dull base colour, two stripe patterns,
    pixel noise), so no pixel's colour tells shape from background; only the change of texture at the outline
    does. Boxes, masks and labels are made the same way in both styles; the flat scenes are unchanged by the option.
    """
    if size < 32:
        raise ValueError(f"scene size must be at least 32 pixels (the network's stride), got {size}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"split must be one of {sorted(_SPLIT_OFFSET)}, got {split!r}")
    if style not in SCENE_STYLES:
        raise ValueError(f"scene style must be one of {', '.join(SCENE_STYLES)}, got {style!r}")
    rng = np.random.default_rng([seed, _SPLIT_OFFSET[split] + index])
    img = _background(rng, size)
    min_extent, max_extent = max(6, size // 6), max(8, size // 2)
    n = int(rng.integers(1, max_objects + 1))
    owner = np.full((size, size), -1, dtype=np.int64)  # which object each pixel shows
    classes = []
    for k in range(n):
        cls = int(rng.integers(0, len(SCENE_CLASSES)))
        mask = _shape_mask(rng, cls, size, min_extent, max_extent)
        if style == "textured":  # a texture of the background's own kind: only its outline tells it apart
            img[mask] = _background(rng, size)[mask]
        else:
            # A saturated colour far from the background's: the shape must stand out, its colour says nothing.
            color = rng.uniform(0, 255, size=3)
            color[rng.integers(0, 3)] = rng.choice([15.0, 240.0])
            img[mask] = color + rng.normal(0, 4, size=(int(mask.sum()), 3))
        owner[mask] = k
        classes.append(cls)
    boxes, labels, masks = [], [], []
    semantic = np.zeros((size, size), dtype=np.uint8)
    for k, cls in enumerate(classes):
        visible = owner == k
        if visible.sum() < min_visible_pixels:
            continue  # almost hidden: neither an object nor a semantic label of its class
        ys, xs = np.nonzero(visible)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels.append(cls + 1)
        masks.append(visible)
        semantic[visible] = cls + 1
    image = np.clip(img, 0, 255).astype(np.uint8)
    return Scene(
        image=image,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        masks=np.asarray(masks, dtype=bool).reshape(-1, size, size),
        semantic=semantic,
    )


# ----------------------------------------------------------------------------------------------- RLE
def mask_to_rle(mask: np.ndarray) -> Dict[str, Any]:
    """COCO *uncompressed* RLE of a 2-D bool mask: run lengths in column-major order, starting with zeros."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts  # RLE always starts with a run of zeros
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """Decode an uncompressed RLE dict back to a (H, W) bool mask."""
    h, w = rle["size"]
    counts = rle["counts"]
    if not isinstance(counts, list):
        raise ValueError("rle_to_mask decodes uncompressed RLE (a list of counts); use pycocotools for compressed RLE")
    if sum(counts) != h * w:
        raise ValueError(f"RLE counts sum to {sum(counts)}, but the mask size {h}x{w} needs {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T


# ----------------------------------------------------------------------------------------------- writers
def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    from ..checkpoint import atomic_write  # the one writer: a killed run leaves no half-written image

    atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def write_coco(
    root: Union[str, Path],
    split: str = "train",
    num_images: int = 200,
    seed: int = 0,
    size: int = 64,
    max_objects: int = 3,
    style: str = "flat",
) -> Path:
    """Write ``num_images`` scenes as a COCO detection / instance-segmentation set; returns the annotation file."""
    root = Path(root)
    images, annotations = [], []
    ann_id = 1
    for i in range(num_images):
        scene = make_scene(i, seed=seed, size=size, max_objects=max_objects, split=split, style=style)
        file_name = f"{i:06d}.png"
        _save_png(root / split / file_name, scene.image)
        images.append({"id": i + 1, "file_name": file_name, "height": size, "width": size})
        for box, label, mask in zip(scene.boxes, scene.labels, scene.masks):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append({
                "id": ann_id, "image_id": i + 1, "category_id": int(label),
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(mask.sum()), "iscrowd": 0,
                "segmentation": mask_to_rle(mask),
            })
            ann_id += 1
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SCENE_CLASSES)]
    ann_file = root / "annotations" / f"instances_{split}.json"
    from ..checkpoint import atomic_write_bytes

    atomic_write_bytes(ann_file, json.dumps({
        "info": {"description": f"unireplknet generated scenes, seed {seed}, split {split}, style {style}"},
        "images": images, "annotations": annotations, "categories": categories,
    }).encode("utf-8"))
    return ann_file


def write_ade20k(
    root: Union[str, Path],
    split: str = "train",
    num_images: int = 200,
    seed: int = 0,
    size: int = 64,
    max_objects: int = 3,
    style: str = "flat",
) -> Path:
    """Write ``num_images`` scenes in the ADE20K layout (labels shifted by one: 0 stays 'unlabelled')."""
    root = Path(root)
    folder = ADE20K_SPLITS.get(split, split)
    for i in range(num_images):
        scene = make_scene(i, seed=seed, size=size, max_objects=max_objects, split=split, style=style)
        name = f"scene_{split}_{i:06d}"
        _save_png(root / "images" / folder / f"{name}.png", scene.image)
        _save_png(root / "annotations" / folder / f"{name}.png", (scene.semantic + 1).astype(np.uint8))
    from ..checkpoint import atomic_write_bytes

    atomic_write_bytes(root / "classes.json", json.dumps(["background", *SCENE_CLASSES]).encode("utf-8"))
    return root


def scene_class_names(with_background: bool = False) -> List[str]:
    """The class names, optionally with 'background' first (the semantic-segmentation label set)."""
    return (["background"] if with_background else []) + list(SCENE_CLASSES)


def scene_stats(num_images: int, seed: int = 0, size: int = 64, split: str = "train",
                max_objects: Optional[int] = 3) -> Dict[str, float]:
    """Objects per image and the pixel share of every semantic class (for docs and sanity checks)."""
    objects, counts = 0, np.zeros(len(SCENE_CLASSES) + 1)
    for i in range(num_images):
        s = make_scene(i, seed=seed, size=size, split=split, max_objects=max_objects or 3)
        objects += len(s.labels)
        counts += np.bincount(s.semantic.ravel(), minlength=len(counts))
    share = counts / counts.sum()
    return {"objects_per_image": objects / num_images,
            **{f"pixels_{n}": float(p) for n, p in zip(scene_class_names(True), share)}}
