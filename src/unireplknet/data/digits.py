"""The embedded UCI optical handwritten digits (1,797 images of 8×8 pixels, 10 classes).

The images ship inside the package (``digits.npz``, ~45 KB; see ``ATTRIBUTION.md``), so
``unireplknet train`` works with no download. The network needs at least 32×32 pixels, so each
image is upsampled (bilinear) to ``image_size`` once, when the dataset is built.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "DIGITS_CLASS_NAMES",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "DigitsDataset",
    "digits_split_indices",
    "load_digits",
    "write_digits_image_folder",
]

DIGITS_CLASS_NAMES: List[str] = [str(d) for d in range(10)]
#: Normalisation of the [0, 1] pixel values (a fixed 0.5/0.5, so image files normalise the same way).
DIGITS_MEAN: Tuple[float] = (0.5,)
DIGITS_STD: Tuple[float] = (0.5,)
#: Seed of the fixed train/held-out split (independent of the training seed, so the held-out set never moves).
_SPLIT_SEED = 20240101


def load_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The raw arrays: images uint8 (1797, 8, 8) with values 0…16 and labels uint8 (1797,)."""
    with resources.files(__package__).joinpath("digits.npz").open("rb") as f:
        with np.load(f) as npz:
            return npz["images"].copy(), npz["labels"].copy()


def digits_split_indices(val_fraction: float = 0.2) -> Tuple[np.ndarray, np.ndarray]:
    """A fixed stratified split: (train indices, held-out indices), ``val_fraction`` of each class held out."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    _, labels = load_digits()
    rng = np.random.default_rng(_SPLIT_SEED)
    train, val = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def digit_counts_to_input(counts: Union[np.ndarray, torch.Tensor], image_size: int = 32) -> torch.Tensor:
    """UCI-style 8×8 ink counts (values 0…16) → the network's input: [0, 1], bilinear to ``image_size``, normalised.

    The one final step shared by the training data (:class:`DigitsDataset`) and image files
    (:func:`digit_image_to_input`). ``counts`` is (8, 8) or (N, 8, 8); the result is (1, S, S) or (N, 1, S, S).
    """
    x = torch.as_tensor(counts)
    single = x.dim() == 2
    x = x.float().div(16.0).reshape(-1, 1, *x.shape[-2:])
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x - DIGITS_MEAN[0]) / DIGITS_STD[0]
    return x[0] if single else x


class DigitsDataset(Dataset):
    """The embedded digits as 1×``image_size``×``image_size`` float tensors, normalised with DIGITS_MEAN/STD.

    Args:
        split: ``"train"``, ``"val"`` (the fixed held-out part) or ``"all"``.
        image_size: side after bilinear upsampling (>= 32, the network's minimum).
        transform: optional callable applied to each (already upsampled, normalised) image tensor.
        val_fraction: share of every class held out for ``"val"``.
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 32,
        transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        val_fraction: float = 0.2,
    ):
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        if image_size < 32:
            raise ValueError(f"image_size must be at least 32 (the network's minimum input), got {image_size}")
        images, labels = load_digits()
        if split != "all":
            train_idx, val_idx = digits_split_indices(val_fraction)
            keep = train_idx if split == "train" else val_idx
            images, labels = images[keep], labels[keep]
        # Upsample once here rather than per sample: the whole set is ~7 MB at 32×32.
        self.images = digit_counts_to_input(torch.from_numpy(images), image_size)
        self.targets = torch.from_numpy(labels.astype(np.int64))
        self.transform = transform
        self.classes = list(DIGITS_CLASS_NAMES)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        img = self.images[index]
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[index])


def write_digits_image_folder(root: Path, split: str = "all", limit_per_class: Optional[int] = None) -> Path:
    """Write the digits as 8×8 grey PNG files in ``root/<digit>/<index>.png`` (an image-folder tree).

    Handy for trying the image-folder path of ``unireplknet train`` / ``predict`` on real data.
    """
    from PIL import Image

    images, labels = load_digits()
    if split != "all":
        train_idx, val_idx = digits_split_indices()
        keep = train_idx if split == "train" else val_idx
        images, labels, index = images[keep], labels[keep], keep
    else:
        index = np.arange(len(labels))
    root = Path(root)
    written = {c: 0 for c in range(10)}
    for img, label, i in zip(images, labels, index):
        if limit_per_class is not None and written[int(label)] >= limit_per_class:
            continue
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (img.astype(np.float32) * (255.0 / 16.0)).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{int(i):04d}.png")
        written[int(label)] += 1
    return root
