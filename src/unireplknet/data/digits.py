"""The embedded UCI optical handwritten digits (1,797 images of 8×8 pixels, 10 classes).

The images ship inside the package (``digits.npz``, ~45 KB; see ``ATTRIBUTION.md``), so
``unireplknet train`` works with no download. The network needs at least 32×32 pixels, so each
image is upsampled (bilinear) to ``image_size`` once, when the dataset is built.

The UCI images are not photographs: Alpaydin & Kaynak normalised each handwritten digit to fill a 32×32
bitmap (light ink, dark ground) and counted the ink pixels in each 4×4 block, giving 8×8 values 0…16.
:func:`digit_image_to_counts` does the same to any image file (dark-on-light or light-on-dark, margins,
off-centre, any size), so a model trained on the embedded set can read a digit a person drew;
:func:`digit_image_to_input` adds the final step the training data takes (:func:`digit_counts_to_input`).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Union

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "DIGITS_CLASS_NAMES",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "DigitImageTransform",
    "DigitsDataset",
    "digit_counts_to_input",
    "digit_image_to_counts",
    "digit_image_to_input",
    "digits_split_indices",
    "load_digits",
    "write_digits_image_folder",
]

DIGITS_CLASS_NAMES: List[str] = [str(d) for d in range(10)]
#: Normalisation of the [0, 1] pixel values (a fixed 0.5/0.5, so image files normalise the same way).
DIGITS_MEAN: Tuple[float] = (0.5,)
DIGITS_STD: Tuple[float] = (0.5,)
#: Side of the bitmaps the UCI counts were made from, and of one count block.
DIGITS_FRAME = 32
_BLOCK = DIGITS_FRAME // 8
#: The normalised frame is built at this many times the UCI resolution so stroke thickening can be fine-grained.
_OVERSAMPLE = 4
#: Share of the 32×32 frame covered by ink: 0.18-0.42 in the embedded digits (median 0.31, 1st percentile
#: 0.245). A thinner drawing (a fine pen on a large canvas) is thickened until it covers this much.
_MIN_INK_COVERAGE = 0.24
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


def _otsu_threshold(values: np.ndarray) -> float:
    """The threshold between two classes of ``values`` (in [0, 1]) that maximises the between-class variance."""
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    p = hist.astype(np.float64) / max(1, hist.sum())
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    between = (m0[-1] * w0 - m0) ** 2 / np.clip(w0 * (1.0 - w0), 1e-12, None)
    return float(edges[int(np.argmax(between)) + 1])


def _grey_array(image: Any) -> np.ndarray:
    """A PIL image or an array (H×W, H×W×C) as float64 grey values in [0, 1]."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(image.convert("F"), dtype=np.float64)
            top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
            return np.clip(arr / top, 0.0, 1.0)
        if "A" in image.getbands() or "transparency" in image.info:  # a transparent ground is white paper
            paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(paper, image.convert("RGBA"))
        return np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(-1) if arr.shape[-1] >= 3 else arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"a digit image must be H×W or H×W×C, got an array of shape {arr.shape}")
    top = arr.max()
    return arr / (255.0 if top > 1.0 else 1.0)


def _border(a: np.ndarray) -> np.ndarray:
    """The pixels of the outer ring (about 4 % of the short side, at least one pixel wide)."""
    k = max(1, int(round(0.04 * min(a.shape))))
    return np.concatenate([a[:k].ravel(), a[-k:].ravel(), a[k:-k, :k].ravel(), a[k:-k, -k:].ravel()])


def _drop_isolated(mask: np.ndarray) -> np.ndarray:
    """``mask`` without the pixels that have no set 8-neighbour (specks of noise; strokes are never one pixel)."""
    p = np.pad(mask, 1)
    neighbours = sum(p[1 + dy:p.shape[0] - 1 + dy, 1 + dx:p.shape[1] - 1 + dx].astype(np.int32)
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
    return mask & (neighbours > 0)


def _thicken(frame: np.ndarray) -> np.ndarray:
    """One step of grey dilation (the largest value of each 3×3 neighbourhood)."""
    p = np.pad(frame, 1)
    h, w = frame.shape
    return np.max([p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)


def digit_image_to_counts(image: Any) -> np.ndarray:
    """One digit in an image → UCI-style 8×8 ink counts (float32, 0…16), the way the embedded digits were made.

    Steps: grey (a transparent ground counts as white); the border decides the polarity (a light border → the
    image is inverted so ink is light); ink is measured from the background level (the median of the border's
    non-ink pixels) to the ink level (a high percentile of the pixels above Otsu's threshold), pixels within the
    background's noise (and lone specks) set to 0; the ink's bounding box is scaled to fit the 32×32 frame keeping
    its aspect ratio and centred (the UCI bitmaps fill their frame); too thin strokes are thickened to the
    embedded digits' ink coverage; 4×4 blocks are averaged to 0…16. A blank image warns and gives zeros.

    An 8×8 image of UCI counts (light on dark, values ×255/16) and a UCI digit upsampled by whole blocks come back
    unchanged. Works for one digit per image: several digits or heavy clutter fill the box with other things.
    """
    grey = _grey_array(image)
    border = _border(grey)
    if np.median(border) > 0.5 * (float(grey.min()) + float(grey.max())):
        grey, border = 1.0 - grey, 1.0 - border  # a light ground: invert so ink is light, as in the UCI digits
    threshold = _otsu_threshold(grey) if grey.max() > grey.min() else float(grey.max())
    # The ground is measured on the border pixels that are not ink (a digit may touch the border).
    ground = border[border <= threshold] if (border <= threshold).any() else border
    background = float(np.median(ground))
    # An image of at most 16 pixels a side is a count image like the UCI 8×8 files: every value above the ground
    # is ink. A larger one is a drawing or a photo whose ground has noise (its robust standard deviation).
    count_image = min(grey.shape) <= 16
    noise = 0.0 if count_image else 1.4826 * float(np.median(np.abs(ground - background)))
    ink_side = grey[grey > threshold]
    ink_level = float(np.percentile(ink_side, 99, method="higher")) if ink_side.size else float(grey.max())
    contrast = ink_level - background
    ink = np.clip((grey - background) / max(contrast, 1e-12), 0.0, 1.0)
    support = ink > 4.0 * noise / max(contrast, 1e-12)
    if not count_image:  # lone pixels are noise
        support = _drop_isolated(support)
    if contrast <= max(4.0 * noise, 1.0 / 64) or not support.any():
        warnings.warn("the image holds no digit (no ink stands out from the background); its 8×8 counts are all 0",
                      stacklevel=2)
        return np.zeros((8, 8), np.float32)
    ink = np.where(support, ink, 0.0)
    rows, cols = np.flatnonzero(support.any(1)), np.flatnonzero(support.any(0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    from PIL import Image

    side = DIGITS_FRAME * _OVERSAMPLE
    h, w = ink.shape
    scale = side / max(h, w)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    # BOX: each output pixel is the ink area it covers (the UCI count), exact for whole-number factors.
    scaled = np.asarray(Image.fromarray(ink.astype(np.float32)).resize((new_w, new_h), Image.BOX))
    frame = np.zeros((side, side), np.float32)
    top, left = (side - new_h) // 2, (side - new_w) // 2
    frame[top:top + new_h, left:left + new_w] = np.clip(scaled, 0.0, 1.0)
    for _ in range(side):  # a bounded loop; each step widens every stroke by 2 fine pixels (half a UCI pixel)
        if frame.mean() >= _MIN_INK_COVERAGE:
            break
        frame = _thicken(frame)
    block = _BLOCK * _OVERSAMPLE
    return (frame.reshape(8, block, 8, block).mean(axis=(1, 3)) * 16.0).astype(np.float32)


def digit_image_to_input(image: Any, image_size: int = 32) -> torch.Tensor:
    """An image file's digit → the (1, S, S) input of a digits model: :func:`digit_image_to_counts`, then the
    same upsampling and normalisation as the embedded training data (:func:`digit_counts_to_input`)."""
    return digit_counts_to_input(digit_image_to_counts(image), image_size)


class DigitImageTransform:
    """:func:`digit_image_to_input` as a dataset transform (the evaluation transform of a digits model)."""

    def __init__(self, image_size: int = 32):
        self.image_size = int(image_size)

    def __call__(self, image: Any) -> torch.Tensor:
        return digit_image_to_input(image, self.image_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size})"


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
        # Upsample once here rather than per sample: the whole set is ~7 MB at 32×32 (and 57 TB at 100000×100000,
        # which is refused here, before it is allocated).
        from ..limits import check_memory

        check_memory(4 * len(images) * image_size ** 2, f"the digits at {image_size}×{image_size} pixels "
                     f"({len(images)} images)", "choose a smaller --input-size")
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
