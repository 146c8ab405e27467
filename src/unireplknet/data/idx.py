"""The MNIST-family IDX format (MNIST, Fashion-MNIST, KMNIST, EMNIST), read natively, and its small-image transform.

An IDX file is a big-endian header — a magic number whose third byte is the element type (``0x08``: unsigned
byte) and whose fourth is the number of dimensions, then one 32-bit size per dimension — followed by the
elements. Images are ``0x00000803`` (count × rows × columns), labels ``0x00000801`` (count). Files may be
gzip-compressed (``.gz``). The elements are viewed with :func:`numpy.frombuffer`: no copy of the payload and
nothing unpickled.

A folder is an IDX folder when it holds the four standard files (raw or ``.gz``)::

    train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

``train`` is the training data (a validation split is held out of it), ``t10k`` the test split.

Class names: ``--class-names`` takes a comma list or a known set's name (:data:`KNOWN_CLASS_NAMES`). Without
it, the rule is one test on the folder's path: a path that contains ``fashion`` (any case) gets the
Fashion-MNIST names; any other folder gets the label numbers ``"0"``, ``"1"``, … .
"""
from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .folder import DataError

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "IDX_SPLITS", "KNOWN_CLASS_NAMES", "IdxSplit", "IdxDataset",
           "SmallGreyTransform", "read_idx", "is_idx_folder", "load_idx_split",
           "resolve_class_names", "pixel_mean_std"]

_logger = logging.getLogger(__name__)

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions: count, rows, columns
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension: count
IDX_SPLITS = ("train", "t10k")
_FILE_STEMS = {"images": "{split}-images-idx3-ubyte", "labels": "{split}-labels-idx1-ubyte"}

#: The class names of the known IDX data sets, in label order.
KNOWN_CLASS_NAMES: Dict[str, Tuple[str, ...]] = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "mnist": tuple(str(d) for d in range(10)),
    # KMNIST (Clanuwat et al., 2018): the romanised hiragana of its ten classes
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}


def _open(path: Path):
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist; an IDX folder holds train-images-idx3-ubyte, "
                        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each raw or "
                        ".gz), as MNIST and Fashion-MNIST are distributed")
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _read_bytes(path: Path, magic: int) -> bytes:
    """The header and at most the payload it announces (+1 byte, to notice extra data): a gzip file that would
    expand beyond that (a decompression bomb) is never inflated further, and an announced size over the memory
    limit is refused before it is read."""
    from ..limits import check_memory

    header = 4 + 4 * (magic & 0xFF)
    try:
        with _open(path) as f:
            head = f.read(header)
            if len(head) == header and int.from_bytes(head[:4], "big") == magic:
                count = int(np.prod([int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big")
                                     for i in range(magic & 0xFF)], dtype=np.int64))
                check_memory(count, f"{path} (an IDX header announcing {count:,} bytes)",
                             "check that the file is the data set's own, or use a smaller data set")
                return head + f.read(count + 1)
            return head
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        raise DataError(f"{path} cannot be read as {'gzip' if path.suffix == '.gz' else 'a file'} ({e}); the file "
                        "is damaged or truncated: download or copy it again") from None


def read_idx(path: Union[str, Path], magic: int) -> np.ndarray:
    """The elements of the IDX file ``path`` (raw or ``.gz``) as a read-only uint8 array of the header's shape.

    ``magic``: :data:`IDX_IMAGES_MAGIC` or :data:`IDX_LABELS_MAGIC`. Raises :class:`DataError` naming the file
    for a missing file, another magic number, or a payload shorter than the header announces.
    """
    path = Path(path)
    data = _read_bytes(path, magic)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    what = "images (idx3)" if magic == IDX_IMAGES_MAGIC else "labels (idx1)"
    if len(data) < 4:
        raise DataError(f"{path} is {len(data)} bytes long, shorter than an IDX header; the file is truncated: "
                        "download or copy it again")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path} starts with the magic number 0x{found:08X}, but IDX {what} start with "
                        f"0x{magic:08X}; the file is not an IDX {what} file (a train/t10k or images/labels file "
                        "swapped, or another format): use the file of that name from the data set's distribution")
    if len(data) < header:
        raise DataError(f"{path} is {len(data)} bytes long, shorter than its {header}-byte IDX header; the file is "
                        "truncated: download or copy it again")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    payload = len(data) - header
    if payload < expected:
        raise DataError(f"{path} holds {payload:,} bytes of data but its header announces {' x '.join(map(str, shape))}"
                        f" = {expected:,}; the file is truncated: download or copy it again")
    if payload > expected:  # trailing bytes are harmless (only the first is read); say so rather than fail
        _logger.warning("%s: data after the %s elements its header announces is ignored", path,
                        " x ".join(map(str, shape)))
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(shape)


def is_idx_folder(root: Union[str, Path, None]) -> bool:
    """Whether ``root`` holds the files of the train split of an IDX data set (the test files may be missing,
    which :func:`load_idx_split` then names)."""
    if root is None:
        return False
    root = Path(root)
    return root.is_dir() and any((root / f"train-images-idx3-ubyte{gz}").is_file() for gz in ("", ".gz"))


@dataclass
class IdxSplit:
    """One split of an IDX data set: ``images`` (N, rows, columns) and ``labels`` (N,), uint8 and read-only."""

    images: np.ndarray
    labels: np.ndarray
    images_path: Path
    labels_path: Path

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_idx_split(root: Union[str, Path], split: str) -> IdxSplit:
    """The ``split`` (``"train"`` or ``"t10k"``) of the IDX folder ``root``, with the count of labels checked
    against the count of images."""
    if split not in IDX_SPLITS:
        raise ValueError(f"an IDX split is one of {', '.join(IDX_SPLITS)}, got {split!r}")
    root = Path(root)
    paths = {}
    for kind, stem in _FILE_STEMS.items():
        name = stem.format(split=split)
        paths[kind] = next((p for p in (root / name, root / f"{name}.gz") if p.is_file()), root / f"{name}.gz")
    images = read_idx(paths["images"], IDX_IMAGES_MAGIC)
    labels = read_idx(paths["labels"], IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{paths['labels']} holds {labels.shape[0]:,} labels but {paths['images']} holds "
                        f"{images.shape[0]:,} images; the two files must come from the same split of the same "
                        "data set (one of them is from another download or was cut short)")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"{paths['images']} holds no image (its header announces {images.shape}); use the file "
                        "of the data set's distribution")
    return IdxSplit(images, labels, paths["images"], paths["labels"])


def resolve_class_names(spec: Optional[str], root: Union[str, Path], num_classes: int) -> List[str]:
    """The class names of an IDX data set of ``num_classes`` classes (one more than its largest label).

    ``spec``: a known set's name (:data:`KNOWN_CLASS_NAMES`), a comma-separated list, or None: the Fashion-MNIST
    names when ``root``'s path contains ``fashion`` (any case), else ``"0"``, ``"1"``, … .
    """
    if spec is None:
        if "fashion" in str(Path(root).resolve()).lower():
            names: Sequence[str] = KNOWN_CLASS_NAMES["fashion-mnist"]
            source = "the Fashion-MNIST names (the folder's path contains 'fashion')"
        else:
            return [str(i) for i in range(num_classes)]
    elif spec.strip().lower() in KNOWN_CLASS_NAMES:
        names, source = KNOWN_CLASS_NAMES[spec.strip().lower()], f"--class-names {spec.strip()}"
    else:
        names = [n.strip() for n in spec.split(",")]
        source = "--class-names"
        if len(names) < 2 or any(not n for n in names):
            raise DataError(f"--class-names {spec!r}: give a known set ({', '.join(KNOWN_CLASS_NAMES)}) or a comma "
                            "list of at least two non-empty names, one per label in label order")
        if len(set(names)) != len(names):
            raise DataError(f"--class-names {spec!r} names a class twice; every label needs its own name")
    if len(names) != num_classes:
        raise DataError(f"{source} gives {len(names)} class names but the labels of {root} go from 0 to "
                        f"{num_classes - 1} ({num_classes} classes); give --class-names with {num_classes} names "
                        "(comma-separated, in label order)")
    return list(names)


def pixel_mean_std(images: np.ndarray, chunk: int = 4096) -> Tuple[float, float]:
    """Mean and standard deviation of the pixels of ``images`` (uint8) scaled to [0, 1], in float64 chunks."""
    total = total_sq = 0.0
    count = 0
    flat = images.reshape(len(images), -1)
    for start in range(0, len(flat), chunk):
        part = flat[start:start + chunk].astype(np.float64) / 255.0
        total += float(part.sum())
        total_sq += float(np.square(part).sum())
        count += part.size
    mean = total / count
    return mean, float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))


# ----------------------------------------------------------------------------------------------- transform
class SmallGreyTransform:
    """Small grey images (28×28 IDX digits or clothes) to a normalised ``(1, size, size)`` tensor.

    ``fit="pad"`` centres the image on a ``size × size`` canvas of background (pixel 0), which keeps every pixel
    as it is (UniRepLKNet needs at least 32×32: its stem and stages divide the side by 32); ``fit="resize"``
    resizes it bilinearly to ``size × size``. With ``train`` the standard Fashion-MNIST augmentation follows
    (Zhong et al., random erasing, 2020; the published WRN rows): a random crop of the canvas after padding it by
    ``crop_padding`` pixels, a horizontal flip with probability ``hflip``, and random erasing of a rectangle with
    probability ``reprob`` (``remode``: ``"pixel"``, per-pixel normal noise, or ``"const"``, zeros after
    normalisation).

    Takes a uint8 array or tensor ``(rows, columns)`` / ``(1, rows, columns)`` or a PIL image (converted to grey
    and, when its side is not ``source_size``, resized to ``source_size`` first, so that a photo of any size
    reaches the network at the scale of the training images).
    """

    def __init__(self, size: int, mean: float, std: float, source_size: int = 28, fit: str = "pad",
                 train: bool = False, crop_padding: int = 4, hflip: float = 0.5, reprob: float = 0.0,
                 remode: str = "pixel"):
        if fit not in ("pad", "resize"):
            raise ValueError(f"fit must be 'pad' or 'resize', got {fit!r}")
        if fit == "pad" and size < source_size:
            raise DataError(f"--input-size {size} is smaller than the {source_size}×{source_size} images, which "
                            f"padding cannot shrink; use --input-size {source_size} or more, or --fit resize")
        if remode not in ("pixel", "const"):
            raise ValueError(f"random erasing mode must be 'pixel' or 'const', got {remode!r}")
        self.size, self.mean, self.std, self.source_size, self.fit = int(size), float(mean), float(std), \
            int(source_size), fit
        self.train, self.crop_padding, self.hflip, self.reprob, self.remode = bool(train), int(crop_padding), \
            float(hflip), float(reprob), remode

    def _as_tensor(self, image: Any) -> torch.Tensor:
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.array(image, copy=True))  # a copy: the split's arrays are read-only
        if not isinstance(image, torch.Tensor):  # a PIL image
            grey = image.convert("L")
            if grey.size != (self.source_size, self.source_size):
                from PIL import Image

                grey = grey.resize((self.source_size, self.source_size), Image.BILINEAR)
            image = torch.from_numpy(np.asarray(grey, dtype=np.uint8).copy())
        if image.dim() == 2:
            image = image[None]
        return image.to(torch.float32) / 255.0

    def __call__(self, image: Any) -> torch.Tensor:
        import torch.nn.functional as F

        x = self._as_tensor(image)
        if self.fit == "resize":
            x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=True)[0]
        else:
            h, w = x.shape[-2:]
            top, left = (self.size - h) // 2, (self.size - w) // 2
            x = F.pad(x, (left, self.size - w - left, top, self.size - h - top))
        if self.train:
            if self.crop_padding > 0:
                p = self.crop_padding
                x = F.pad(x, (p, p, p, p))
                i, j = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
                x = x[:, i:i + self.size, j:j + self.size]
            if self.hflip > 0 and float(torch.rand(())) < self.hflip:
                x = x.flip(-1)
        x = (x - self.mean) / self.std
        if self.train and self.reprob > 0:
            from torchvision.transforms import v2

            # values drawn after normalisation, as timm's RandomErasing: noise (pixel) or the mean (const)
            value = "random" if self.remode == "pixel" else 0.0
            x = v2.RandomErasing(p=self.reprob, scale=(0.02, 1 / 3), ratio=(0.3, 3.3), value=value)(x)
        return x

    def __repr__(self) -> str:
        aug = (f", crop_padding={self.crop_padding}, hflip={self.hflip}, reprob={self.reprob}" if self.train else "")
        return f"{type(self).__name__}(size={self.size}, fit={self.fit}{aug})"


class IdxDataset(Dataset):
    """``(image, target)`` items of an IDX split (or a subset given by ``indices``), the transform applied to the
    uint8 image tensor ``(1, rows, columns)``."""

    def __init__(self, split: IdxSplit, transform: Any, indices: Optional[Sequence[int]] = None,
                 class_names: Sequence[str] = ()):
        self.split, self.transform = split, transform
        self.indices = np.arange(len(split)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.classes = list(class_names)
        self.targets = split.labels[self.indices].astype(np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        i = int(self.indices[index])
        image = torch.from_numpy(self.split.images[i].copy())  # a copy: the file's buffer is read-only
        return self.transform(image), int(self.split.labels[i])
