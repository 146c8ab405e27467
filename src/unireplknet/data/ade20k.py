"""ADE20K-format semantic-segmentation data: the dataset (images + label maps, the recipe's training crops) with
clear errors for bad files, and the collate function. The segmenter and mIoU are in
:mod:`unireplknet.tasks.dense.segmentation`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "SegmentationDataError", "ADE20KDataset", "segmentation_collate"]

_logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: Label value that neither counts in the loss nor in mIoU (mmseg's ``ignore_index``/``seg_pad_val``).
IGNORE_INDEX = 255


class SegmentationDataError(ValueError):
    """A segmentation data set cannot be used; the message says what to fix."""


# ----------------------------------------------------------------------------------------------- data
class ADE20KDataset(torch.utils.data.Dataset):
    """ADE20K layout: ``<root>/images/<split>/<name>.<ext>`` + ``<root>/annotations/<split>/<name>.png``.

    ``split`` is ``training`` / ``validation`` (``train`` / ``val`` accepted). With ``reduce_zero_label``
    (the ADE20K convention) label 0 ("other") becomes 255 (ignored) and 1 … K become 0 … K−1. Items are
    ``(image float CHW normalised with ImageNet mean/std, label LongTensor HW)``. Training options:
    ``crop_size`` (random crop, labels padded with 255), ``hflip`` probability and ``scale_range`` (random
    resize of the whole sample before the crop, as the recipe's ratio range 0.5–2.0). ``short_side`` resizes
    every sample (training and held-out) so its shorter side has that length first (the recipe's scale
    (2048, 512) keeps the ratio, which for ADE20K's images means a shorter side of 512).
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, root: PathLike, split: str = "training", num_classes: Optional[int] = None,
                 reduce_zero_label: bool = True, crop_size: Optional[int] = None, hflip: float = 0.0,
                 scale_range: Optional[Tuple[float, float]] = None, short_side: Optional[int] = None,
                 seed: int = 0):
        root = Path(root)
        split = {"train": "training", "val": "validation"}.get(split, split)
        image_dir, ann_dir = root / "images" / split, root / "annotations" / split
        for d in (image_dir, ann_dir):
            if not d.is_dir():
                raise SegmentationDataError(
                    f"{d} is not a folder; the ADE20K layout is <root>/images/{split}/ and <root>/annotations/{split}/"
                )
        anns = {p.stem: p for p in ann_dir.iterdir() if p.suffix.lower() == ".png"}
        exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
        self.samples = sorted((p, anns[p.stem]) for p in image_dir.iterdir()
                              if p.suffix.lower() in exts and p.stem in anns)
        if not self.samples:
            raise SegmentationDataError(
                f"no image in {image_dir} has a label map of the same name in {ann_dir} (label maps are .png)"
            )
        missing = sum(1 for p in image_dir.iterdir() if p.suffix.lower() in exts and p.stem not in anns)
        if missing:
            _logger.warning("%d images in %s have no label map and are left out", missing, image_dir)
        self.num_classes, self.reduce_zero_label = num_classes, reduce_zero_label
        self.crop_size, self.hflip, self.scale_range = crop_size, hflip, scale_range
        self.short_side = short_side
        self._rng = np.random.default_rng(seed)
        names_file = root / "classes.json"
        self.class_names: Optional[List[str]] = json.loads(names_file.read_text()) if names_file.exists() else None
        # classes.json names the labels 1 … K of the files (ADE20K's objectInfo150 order), i.e. the classes
        # 0 … K-1 after reduce_zero_label; without it, label 0 is the unlabelled class.
        if self.class_names is not None and not reduce_zero_label:
            self.class_names = ["unlabelled", *self.class_names]

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        img_path, ann_path = self.samples[index]
        with Image.open(img_path) as im:
            image = np.asarray(im.convert("RGB"))
        with Image.open(ann_path) as an:
            if an.mode not in ("L", "P", "I", "I;16"):
                raise SegmentationDataError(f"label map {ann_path} has mode {an.mode}; expected one channel of class ids")
            label = np.asarray(an).astype(np.int64)
        if label.shape != image.shape[:2]:
            raise SegmentationDataError(
                f"label map {ann_path} is {label.shape[0]}x{label.shape[1]} but its image {img_path.name} is "
                f"{image.shape[0]}x{image.shape[1]}; a label map must have its image's size"
            )
        if self.reduce_zero_label:
            label = np.where(label == 0, IGNORE_INDEX, label - 1)
            label[label == IGNORE_INDEX - 1] = IGNORE_INDEX  # 255 stays ignored
        if self.num_classes is not None:
            bad = (label != IGNORE_INDEX) & (label >= self.num_classes)
            if bad.any():
                raise SegmentationDataError(
                    f"label map {ann_path} holds class {int(label[bad].max())} but the model has "
                    f"{self.num_classes} classes (0 … {self.num_classes - 1}"
                    f"{' after reduce_zero_label' if self.reduce_zero_label else ''}); raise num_classes or fix the map"
                )
        return image, label

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image, label = self.load(index)
        img = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(255)
        lab = torch.from_numpy(label)
        s = 1.0 if self.short_side is None else self.short_side / min(img.shape[1:])
        if self.scale_range is not None:
            s *= float(self._rng.uniform(*self.scale_range))
        if s != 1.0:
            size = (max(1, round(img.shape[1] * s)), max(1, round(img.shape[2] * s)))
            img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
            lab = F.interpolate(lab[None, None].float(), size=size, mode="nearest")[0, 0].long()
        if self.crop_size is not None:
            img, lab = self._crop(img, lab, self.crop_size)
        if self.hflip > 0 and self._rng.random() < self.hflip:
            img, lab = img.flip(-1), lab.flip(-1)
        mean = torch.tensor(self.MEAN).view(3, 1, 1)
        std = torch.tensor(self.STD).view(3, 1, 1)
        return (img - mean) / std, lab

    def _crop(self, img: torch.Tensor, lab: torch.Tensor, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        h, w = lab.shape
        ph, pw = max(size - h, 0), max(size - w, 0)
        if ph or pw:  # pad (images with 0, labels with ignore) so a full crop fits
            img = F.pad(img, (0, pw, 0, ph))
            lab = F.pad(lab, (0, pw, 0, ph), value=IGNORE_INDEX)
            h, w = lab.shape
        y = int(self._rng.integers(0, h - size + 1))
        x = int(self._rng.integers(0, w - size + 1))
        return img[:, y:y + size, x:x + size], lab[y:y + size, x:x + size]


def segmentation_collate(batch: Sequence[Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack a batch, padding images (0) and labels (255) to the largest size in it."""
    h = max(img.shape[1] for img, _ in batch)
    w = max(img.shape[2] for img, _ in batch)
    images = torch.stack([F.pad(img, (0, w - img.shape[2], 0, h - img.shape[1])) for img, _ in batch])
    labels = torch.stack([F.pad(lab, (0, w - lab.shape[1], 0, h - lab.shape[0]), value=IGNORE_INDEX)
                          for _, lab in batch])
    return images, labels
