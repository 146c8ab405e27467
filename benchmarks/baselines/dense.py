"""Dense-scene baselines: a per-pixel foreground model, colour-connected regions and a logistic regression on
region shape descriptors (``det-scenes``, ``seg-scenes``)."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ._common import fit_logistic_regression

log = logging.getLogger("classical_baselines")


# The generated scenes of `det-train` / `seg-train --data scenes` (unireplknet.data.scenes): one to three shapes
# (rectangle, ellipse, triangle: the class is the shape, the colour is random) in flat, saturated colours (one
# channel at 15 or 240) on low-contrast striped, noisy backgrounds; later shapes occlude earlier ones. The
# classical pipeline, fitted on the task's own training scenes and scored by the task's own evaluators:
#   1. foreground pixels: a logistic regression on per-pixel colour features (sorted channels, their squares and
#      products — "one channel far from mid-grey" is not linear in the colour — and the 3x3 colour spread);
#   2. regions: 4-connected foreground pixels whose colours differ by less than REGION_COLOUR_STEP per channel
#      (objects are flat colours, so touching objects of different colours become different regions);
#   3. per region, shape descriptors (fill of a 4x4 grid over its box, row widths at five heights, extent,
#      aspect, size, outline length, how much of the outline borders other regions or the image edge —
#      occlusion cues) and a logistic regression over {no object, rectangle, ellipse, triangle} trained on the
#      training scenes' regions, labelled by the majority ground-truth class of their pixels;
#   4. segmentation: every region's pixels get its most likely class; detection: every region is a box and a
#      mask with one detection per object class, scored by that class's probability (as a detector's
#      per-class scores).
# ``--scenes-style textured`` (shapes filled with background-like textures): no pixel's colour tells shape from
# background, so step 1 is skipped (every pixel is a candidate) and step 2 alone cuts the scene where the colour
# jumps (the 'no object' class of step 3 then takes the background's regions). Its colour step was chosen on the
# *training* scenes of seed 0 (ground-truth objects matched by one region at IoU > 0.7, of 73 in 40 scenes, for
# steps 14 / 17 / 20 / 24 / 30: 44 / 57 / 55 / 47 / 42; 20 gives 16 regions per scene where 17 gives 71).
REGION_COLOUR_STEP = 24.0  # flat: colour noise inside an object is N(0, 4) per channel, neighbours differ by < 24
TEXTURED_COLOUR_STEP = 20.0
MIN_REGION_PIXELS = 8


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def pixel_features(image: np.ndarray) -> np.ndarray:
    """(H*W, 10) per-pixel features of an (H, W, 3) uint8 image: sorted channels, their squares and pairwise
    products (centred at mid-grey), and the mean 3x3 neighbourhood standard deviation of the colour."""
    img = image.astype(np.float64) / 255.0
    h, w, _ = img.shape
    s = np.sort(img, axis=-1).reshape(-1, 3) - 0.5
    quad = np.stack([s[:, 0] ** 2, s[:, 1] ** 2, s[:, 2] ** 2, s[:, 0] * s[:, 2], s[:, 0] * s[:, 1],
                     s[:, 1] * s[:, 2]], axis=1)
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    win = np.stack([pad[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])  # (9, H, W, 3)
    spread = win.std(0).mean(-1).reshape(-1, 1)
    return np.concatenate([s, quad, spread], axis=1)


def colour_regions(image: np.ndarray, foreground: np.ndarray, step: float = REGION_COLOUR_STEP) -> np.ndarray:
    """(H, W) int region ids (-1 outside the foreground): 4-connected foreground pixels whose colours differ by
    less than ``step`` in every channel, by min-label propagation; ids are 0 … n-1 in raster order."""
    img = image.astype(np.float64)
    h, w = foreground.shape
    right = foreground[:, :-1] & foreground[:, 1:] & (np.abs(img[:, :-1] - img[:, 1:]).max(-1) < step)
    down = foreground[:-1] & foreground[1:] & (np.abs(img[:-1] - img[1:]).max(-1) < step)
    big = h * w
    lab = np.where(foreground, np.arange(big).reshape(h, w), big)
    while True:
        new = lab.copy()
        np.minimum(new[:, :-1], np.where(right, lab[:, 1:], big), out=new[:, :-1])
        np.minimum(new[:, 1:], np.where(right, lab[:, :-1], big), out=new[:, 1:])
        np.minimum(new[:-1], np.where(down, lab[1:], big), out=new[:-1])
        np.minimum(new[1:], np.where(down, lab[:-1], big), out=new[1:])
        new = np.where(foreground, new.reshape(-1)[np.minimum(new, big - 1).reshape(-1)].reshape(h, w), big)
        if np.array_equal(new, lab):
            break
        lab = new
    out = np.full((h, w), -1, dtype=np.int64)
    roots = np.unique(lab[foreground])
    out[foreground] = np.searchsorted(roots, lab[foreground])
    return out


def region_descriptor(mask: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Shape descriptors of one region (``mask``) in its scene's region map (see the block comment)."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = mask[y0:y1, x0:x1].astype(np.float64)
    bh, bw = crop.shape
    grid = [crop[int(i * bh / 4):max(int((i + 1) * bh / 4), int(i * bh / 4) + 1),
                 int(j * bw / 4):max(int((j + 1) * bw / 4), int(j * bw / 4) + 1)].mean()
            for i in range(4) for j in range(4)]
    rows = [crop[min(bh - 1, int(f * bh))].mean() for f in (0.1, 0.3, 0.5, 0.7, 0.9)]
    # the outline as pixel sides between the region and a 4-neighbour outside it; where that neighbour lies
    pad = np.pad(mask, 1)
    other = np.pad((regions >= 0) & ~mask, 1)
    edge_img = np.pad(np.zeros_like(mask), 1, constant_values=True)
    outline, touching, at_edge = 0, 0, 0
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nb = (slice(1 + dy, pad.shape[0] - 1 + dy), slice(1 + dx, pad.shape[1] - 1 + dx))
        boundary = mask & ~pad[nb]
        outline += boundary.sum()
        touching += (boundary & other[nb]).sum()
        at_edge += (boundary & edge_img[nb]).sum()
    area = mask.sum()
    return np.array([*grid, *rows, area / (bh * bw), np.log(bw / bh), np.log(area), touching / outline,
                     at_edge / outline, outline / np.sqrt(area)])


def scene_regions(image: np.ndarray, fg_model: Optional[Tuple[np.ndarray, ...]]
                  ) -> Tuple[List[np.ndarray], np.ndarray]:
    """The scene's region masks (foreground classifier + colour regions, tiny regions dropped) and region map;
    ``fg_model=None`` (textured scenes): every pixel is foreground and the colour step is the textured one."""
    h, wd = image.shape[:2]
    if fg_model is None:
        fg, step = np.ones((h, wd), dtype=bool), TEXTURED_COLOUR_STEP
    else:
        mean, std, w, b = fg_model
        fg = (softmax(((pixel_features(image) - mean) / std) @ w + b)[:, 1] > 0.5).reshape(h, wd)
        step = REGION_COLOUR_STEP
    regions = colour_regions(image, fg, step)
    masks = [regions == k for k in range(regions.max() + 1)]
    return [m for m in masks if m.sum() >= MIN_REGION_PIXELS], regions


class ClassicalScenes(torch.nn.Module):
    """The fitted classical pipeline, shaped as the task's models so the task's own evaluators score it:
    ``mode='detection'`` takes a list of (3, H, W) images in [0, 1] and returns torchvision detector outputs;
    ``mode='segmentation'`` takes an ImageNet-normalised batch and returns (N, 4, H, W) one-hot logits."""

    def __init__(self, fg_model, region_model, region_norm, mode: str):
        super().__init__()
        self.fg_model, self.region_model, self.region_norm, self.mode = fg_model, region_model, region_norm, mode

    def analyse(self, image: np.ndarray) -> Tuple[List[np.ndarray], np.ndarray]:
        masks, regions = scene_regions(image, self.fg_model)
        if not masks:
            return [], np.zeros((0, 4))
        desc = np.stack([region_descriptor(m, regions) for m in masks])
        mean, std = self.region_norm
        w, b = self.region_model
        return masks, softmax(((desc - mean) / std) @ w + b)

    def forward(self, images):  # a batch tensor (segmentation) or a list of images (detection)
        from unireplknet.data.ade20k import ADE20KDataset

        if self.mode == "segmentation":
            mean = torch.tensor(ADE20KDataset.MEAN).view(1, 3, 1, 1)
            std = torch.tensor(ADE20KDataset.STD).view(1, 3, 1, 1)
            pixels = ((images * std + mean) * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
            out = torch.zeros(len(pixels), 4, *pixels.shape[1:3])
            out[:, 0] = 1.0
            for n, image in enumerate(pixels):
                masks, probs = self.analyse(image)
                for m, p in zip(masks, probs):
                    out[n, :, torch.from_numpy(m)] = torch.nn.functional.one_hot(
                        torch.tensor(int(p.argmax())), 4).float()[:, None]
            return out
        results = []
        for img in images:
            image = (img * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
            masks, probs = self.analyse(image)
            boxes, scores, labels, out_masks = [], [], [], []
            for m, p in zip(masks, probs):
                ys, xs = np.nonzero(m)
                for cls in (1, 2, 3):
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                    scores.append(p[cls])
                    labels.append(cls)
                    out_masks.append(m)
            h, w = image.shape[:2]
            results.append(dict(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                scores=torch.tensor(scores, dtype=torch.float32),
                                labels=torch.tensor(labels, dtype=torch.int64),
                                masks=torch.tensor(np.array(out_masks), dtype=torch.float32).reshape(-1, 1, h, w)))
        return results


def fit_classical_scenes(num_train: int, seed: int = 0, size: int = 64, fg_scenes: int = 100,
                         mode: str = "detection", style: str = "flat") -> ClassicalScenes:
    """Fit both logistic regressions on training scenes ``0 … num_train-1`` of ``seed`` (the task's own)."""
    from unireplknet.data.scenes import make_scene

    rng = np.random.default_rng(seed)
    scenes = [make_scene(i, seed=seed, size=size, split="train", style=style) for i in range(num_train)]
    feats, fg = [], []
    for s in scenes[:fg_scenes if style == "flat" else 0]:
        feats.append(pixel_features(s.image))
        fg.append((s.semantic > 0).reshape(-1))
    fg_model = None
    if style == "flat":
        x, y = np.concatenate(feats), np.concatenate(fg).astype(np.int64)
        keep = rng.choice(len(x), size=min(len(x), 100_000), replace=False)
        x, y = x[keep], y[keep]
        mean, std = x.mean(0), x.std(0) + 1e-8
        fg_model = (mean, std, *fit_logistic_regression((x - mean) / std, y, 2, l2=1e-5))
    desc, labels = [], []
    for s in scenes:
        masks, regions = scene_regions(s.image, fg_model)
        for m in masks:
            desc.append(region_descriptor(m, regions))
            labels.append(int(np.bincount(s.semantic[m], minlength=4).argmax()))
    d = np.stack(desc)
    norm = (d.mean(0), d.std(0) + 1e-8)
    region_model = fit_logistic_regression((d - norm[0]) / norm[1], np.array(labels), 4, l2=1e-4)
    return ClassicalScenes(fg_model, region_model, norm, mode)


def detection_scenes_baseline(seed: int = 0, num_train: int = 640, num_val: int = 100,
                              size: int = 64, style: str = "flat") -> Dict[str, float]:
    """COCO box / mask AP of the classical pipeline on the detection demo's held-out scenes (task evaluator)."""
    import tempfile

    from unireplknet.data.scenes import write_coco
    from unireplknet.tasks.dense.detection import CocoDetectionDataset, coco_evaluate

    model = fit_classical_scenes(num_train, seed, size, mode="detection", style=style)
    with tempfile.TemporaryDirectory() as root:
        ann = write_coco(root, "val", num_val, seed=seed, size=size, style=style)
        val = CocoDetectionDataset(f"{root}/val", ann, masks=False)
        with torch.no_grad():
            return {k: v for k, v in coco_evaluate(model, val).items() if isinstance(v, float)}


def segmentation_scenes_baseline(seed: int = 0, num_train: int = 1600, num_val: int = 100,
                                 size: int = 64, style: str = "flat") -> Dict[str, float]:
    """mIoU / mAcc / aAcc of the classical pipeline on the segmentation demo's held-out scenes (task evaluator)."""
    import tempfile

    from unireplknet.data.scenes import write_ade20k
    from unireplknet.data.ade20k import ADE20KDataset
    from unireplknet.tasks.dense.segmentation import evaluate_miou

    model = fit_classical_scenes(num_train, seed, size, mode="segmentation", style=style)
    with tempfile.TemporaryDirectory() as root:
        write_ade20k(root, "val", num_val, seed=seed, size=size, style=style)
        val = ADE20KDataset(root, "validation", num_classes=4)
        m = evaluate_miou(model, val, 4)
    return {k: float(v) for k, v in m.items() if isinstance(v, float)}
