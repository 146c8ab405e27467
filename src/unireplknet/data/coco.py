"""COCO-format detection data for torchvision's detectors: the dataset (boxes, labels, masks) with clear errors
for bad annotation files, and the collate function. The detectors and COCO AP are in
:mod:`unireplknet.tasks.dense.detection`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DetectionDataError", "CocoDetectionDataset", "detection_collate", "require_pycocotools", "DetrStyleCrop"]

PathLike = Union[str, Path]


class DetectionDataError(ValueError):
    """A detection data set or its annotation file cannot be used; the message says what to fix."""


def require_pycocotools() -> None:
    """Raise an ImportError naming the pip extra when pycocotools (masks, COCO AP) is missing."""
    try:
        from pycocotools import mask as mask_utils  # noqa: F401
        from pycocotools.coco import COCO  # noqa: F401
        from pycocotools.cocoeval import COCOeval  # noqa: F401
    except ImportError:
        raise ImportError(
            "COCO masks and mAP need pycocotools: pip install 'unireplknet[detection]'"
        ) from None


# ----------------------------------------------------------------------------------------------- COCO data
class CocoDetectionDataset(torch.utils.data.Dataset):
    """A COCO-format detection set: ``(image float CHW in [0, 1], target dict)`` pairs for torchvision detectors.

    Targets hold ``boxes`` (N, 4) x0 y0 x1 y1, ``labels`` (N,) contiguous 1 … K in the order of the file's
    categories, ``masks`` (N, H, W) uint8 (with ``masks=True``; polygons and RLE, via pycocotools) and
    ``image_id``. Crowd annotations and boxes without area are left out of training targets (kept for
    evaluation by pycocotools). ``hflip`` > 0 flips images with their targets (training augmentation).
    """

    def __init__(
        self,
        image_dir: PathLike,
        ann_file: PathLike,
        masks: bool = True,
        num_classes: Optional[int] = None,
        hflip: float = 0.0,
        seed: int = 0,
    ):
        self.image_dir, self.ann_file = Path(image_dir), Path(ann_file)
        self.masks, self.hflip = masks, hflip
        self._rng = np.random.default_rng(seed)
        data = _read_coco_json(self.ann_file)
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.cat_ids = [int(c["id"]) for c in cats]
        self.class_names = [str(c.get("name", c["id"])) for c in cats]
        if num_classes is not None and num_classes < len(cats):
            raise DetectionDataError(
                f"{self.ann_file} has {len(cats)} categories but the model has num_classes={num_classes}; "
                f"build the model with num_classes={len(cats)}"
            )
        self.cat_to_label = {cid: i + 1 for i, cid in enumerate(self.cat_ids)}
        self.images = sorted(data["images"], key=lambda im: im["id"])
        image_ids = {im["id"] for im in self.images}
        self.anns: Dict[int, List[Dict[str, Any]]] = {im["id"]: [] for im in self.images}
        for ann in data["annotations"]:
            cid = ann.get("category_id")
            if cid not in self.cat_to_label:
                raise DetectionDataError(
                    f"{self.ann_file}: annotation {ann.get('id')} has category_id {cid}, which is not among the "
                    f"file's categories {self.cat_ids}; fix the annotation or add the category"
                )
            if ann.get("image_id") not in image_ids:
                raise DetectionDataError(
                    f"{self.ann_file}: annotation {ann.get('id')} refers to image_id {ann.get('image_id')}, "
                    "which is not in 'images'"
                )
            bbox = ann.get("bbox")
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
                raise DetectionDataError(
                    f"{self.ann_file}: annotation {ann.get('id')} has bbox {bbox!r}; COCO boxes are [x, y, width, height]"
                )
            self.anns[ann["image_id"]].append(ann)
        if masks:
            require_pycocotools()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def load_image(self, index: int) -> torch.Tensor:
        from PIL import Image

        info = self.images[index]
        path = self.image_dir / info["file_name"]
        if not path.exists():
            raise DetectionDataError(f"image {path} (image_id {info['id']} of {self.ann_file}) does not exist")
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        h, w = arr.shape[:2]
        if ("height" in info and info["height"] != h) or ("width" in info and info["width"] != w):
            raise DetectionDataError(
                f"{path} is {h}x{w} pixels but {self.ann_file} says {info.get('height')}x{info.get('width')}"
            )
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)

    def _mask(self, ann: Dict[str, Any], h: int, w: int) -> np.ndarray:
        from pycocotools import mask as mask_utils

        segm = ann.get("segmentation")
        if segm is None or segm == []:
            raise DetectionDataError(
                f"{self.ann_file}: annotation {ann.get('id')} has no segmentation; train a box-only detector "
                "(fasterrcnn/retinanet/fcos) or add masks"
            )
        if isinstance(segm, list):  # polygons
            rles = mask_utils.frPyObjects(segm, h, w)
            return mask_utils.decode(mask_utils.merge(rles)).astype(np.uint8)
        size = list(segm.get("size", []))
        if size != [h, w]:
            raise DetectionDataError(
                f"{self.ann_file}: the mask of annotation {ann.get('id')} is {size[0] if size else '?'}x"
                f"{size[1] if len(size) > 1 else '?'} but its image is {h}x{w}; masks must have the image's size"
            )
        rle = mask_utils.frPyObjects(segm, h, w) if isinstance(segm["counts"], list) else segm
        return mask_utils.decode(rle).astype(np.uint8)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        info = self.images[index]
        image = self.load_image(index)
        h, w = image.shape[1:]
        boxes, labels, masks = [], [], []
        for ann in self.anns[info["id"]]:
            if ann.get("iscrowd", 0):
                continue
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))
            if x1 <= x0 or y1 <= y0:
                continue  # no area inside the image
            boxes.append([x0, y0, x1, y1])
            labels.append(self.cat_to_label[ann["category_id"]])
            if self.masks:
                masks.append(self._mask(ann, h, w))
        target: Dict[str, torch.Tensor] = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": torch.tensor(int(info["id"])),
        }
        if self.masks:
            target["masks"] = torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, h, w), dtype=torch.uint8)
        if self.hflip > 0 and self._rng.random() < self.hflip:
            image = image.flip(-1)
            b = target["boxes"].clone()
            target["boxes"] = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)
            if self.masks:
                target["masks"] = target["masks"].flip(-1)
        return image, target


def _read_coco_json(path: Path) -> Dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    text = path.read_text()
    if not text.strip():
        raise DetectionDataError(f"COCO annotation file {path} is empty; expected a JSON object with "
                                 "'images', 'annotations' and 'categories'")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DetectionDataError(f"COCO annotation file {path} is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise DetectionDataError(f"COCO annotation file {path} holds a {type(data).__name__}, not a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DetectionDataError(f"COCO annotation file {path} has no '{key}' list")
    if not data["images"]:
        raise DetectionDataError(f"COCO annotation file {path} lists no images")
    if not data["categories"]:
        raise DetectionDataError(f"COCO annotation file {path} lists no categories")
    if not data["annotations"]:
        raise DetectionDataError(f"COCO annotation file {path} has no annotations: there is nothing to learn or score")
    # Every entry is an object with the fields it is looked up by (a number instead of an object, or a category
    # without an id, would end in a KeyError/TypeError deep in the loader).
    required = {"images": ("id",), "annotations": ("image_id", "category_id"), "categories": ("id",)}
    for key, fields in required.items():
        for index, entry in enumerate(data[key]):
            if not isinstance(entry, dict):
                raise DetectionDataError(f"COCO annotation file {path}: {key}[{index}] is a {type(entry).__name__} "
                                         f"({str(entry)[:40]}), not an object with {', '.join(fields)}; fix the file")
            missing = [f for f in fields if f not in entry]
            if missing:
                raise DetectionDataError(f"COCO annotation file {path}: {key}[{index}] has no {', '.join(missing)}; "
                                         "every entry needs it — fix the file")
            bad = [f for f in fields if isinstance(entry[f], bool) or not isinstance(entry[f], int)]
            if bad:
                raise DetectionDataError(f"COCO annotation file {path}: {key}[{index}].{bad[0]} is "
                                         f"{entry[bad[0]]!r}, not a whole number; fix the file")
    return data


def detection_collate(batch: Sequence[Tuple[torch.Tensor, Dict[str, torch.Tensor]]]):
    """Lists of images and targets (torchvision detectors take images of different sizes)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


class DetrStyleCrop(torch.utils.data.Dataset):
    """The crop branch of the recipe's DETR-style augmentation around a detection data set.

    The official training pipeline (mmdet ``AutoAugment``) picks one of two policies per image with equal
    probability: (a) multi-scale resize, shorter side 480 … 800 step 32; (b) resize the shorter side to 400, 500
    or 600 (longer side ≤ 1333), crop a random ``crop_range`` (384 … 600 pixels, ``absolute_range``) window —
    boxes clipped to it, boxes left without area dropped, an image may keep no box (``allow_negative_crop``) —
    then the same multi-scale resize. The multi-scale resize of both is the detector's transform
    (``train_min_sizes``); this wrapper does (b)'s resize and crop with probability ``p``. Items are
    ``(image C×H×W float, target)`` with ``boxes``, ``labels`` and optional ``masks`` (N×H×W).
    """

    def __init__(self, dataset: Any, p: float = 0.5, resize_min_sizes: Sequence[int] = (400, 500, 600),
                 crop_range: Tuple[int, int] = (384, 600), max_size: int = 1333, seed: int = 0):
        import numpy as np

        self.dataset, self.p = dataset, float(p)
        self.resize_min_sizes, self.crop_range, self.max_size = tuple(resize_min_sizes), crop_range, max_size
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # class_names, num_classes … of the wrapped set
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Tuple[Tensor, Dict[str, Tensor]]:
        image, target = self.dataset[index]
        if self._rng.random() >= self.p:
            return image, target
        return self.resize_and_crop(image, target)

    def resize_and_crop(self, image: Tensor, target: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
        target = dict(target)
        h, w = image.shape[-2:]
        short = int(self._rng.choice(self.resize_min_sizes))
        scale = min(short / min(h, w), self.max_size / max(h, w))
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
        target["boxes"] = target["boxes"] * torch.tensor([nw / w, nh / h, nw / w, nh / h])
        if "masks" in target and len(target["masks"]):
            target["masks"] = F.interpolate(target["masks"][None].float(), size=(nh, nw), mode="nearest")[0].to(
                target["masks"].dtype)
        elif "masks" in target:
            target["masks"] = target["masks"].new_zeros((0, nh, nw))
        lo, hi = self.crop_range
        ch = int(self._rng.integers(min(nh, lo), min(nh, hi) + 1))
        cw = int(self._rng.integers(min(nw, lo), min(nw, hi) + 1))
        y0, x0 = int(self._rng.integers(0, nh - ch + 1)), int(self._rng.integers(0, nw - cw + 1))
        image = image[:, y0:y0 + ch, x0:x0 + cw]
        boxes = target["boxes"] - torch.tensor([x0, y0, x0, y0], dtype=target["boxes"].dtype)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, cw)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, ch)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        target["boxes"], target["labels"] = boxes[keep], target["labels"][keep]
        if "masks" in target:
            target["masks"] = target["masks"][keep][:, y0:y0 + ch, x0:x0 + cw]
        return image, target
