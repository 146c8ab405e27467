"""Image-folder datasets (``root/<class>/<image>``) that skip unreadable images instead of crashing.

Reading goes through torchvision's folder scanning and PIL; a file that cannot be decoded is
replaced (training) or dropped (evaluation) by the collate function, and counted, so a few corrupt
files in a large tree cost a warning rather than a crashed epoch.

:func:`open_image` is the one place an image file becomes a PIL image: it refuses images above a pixel limit
(``UNIREPLKNET_MAX_IMAGE_PIXELS``, default Pillow's decompression-bomb limit) with an ``OSError`` like any
other unreadable file, and scales 16-bit grey images to 8 bits instead of letting PIL clip them to 255.
"""
from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from ..checkpoint import require_regular_file
from .batch import Batch  # the one batch type: .inputs (the images), .targets, .unreadable

__all__ = [
    "DataError",
    "IMAGE_EXTENSIONS",
    "ImageTooLargeError",
    "UNREADABLE_IMAGE_ERRORS",
    "max_image_pixels",
    "open_image",
    "Batch",
    "SafeImageFolder",
    "collate_drop_unreadable",
    "collate_replace_unreadable",
    "find_image_folders",
    "scan_image_folder",
]

_logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """The data given cannot be used; the message names the problem and the fix.

    Raised inside a DataLoader worker process, PyTorch re-creates the error in the main process with the
    worker's whole traceback as its message; that is cut back to the original message here, so that
    ``--workers 2`` reports a bad file exactly as ``--workers 0`` does.
    """

    def __init__(self, *args: Any):
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith("Caught ") \
                and "\nOriginal Traceback" in args[0]:
            text, marker = args[0].rstrip(), f"{type(self).__name__}: "
            if marker in text:
                args = (text[text.rindex(marker) + len(marker):] + " (in a data-loading worker)",)
        super().__init__(*args)


class ImageTooLargeError(OSError):
    """An image with more pixels than the limit (a decompression bomb, or simply too large to load safely)."""


MAX_IMAGE_PIXELS_ENV = "UNIREPLKNET_MAX_IMAGE_PIXELS"
# Pillow refuses (DecompressionBombError) above twice its MAX_IMAGE_PIXELS; that is the default limit here too.
DEFAULT_MAX_IMAGE_PIXELS = 2 * 89_478_485

MAX_ASPECT_RATIO_ENV = "UNIREPLKNET_MAX_ASPECT_RATIO"
# Resizing keeps the aspect ratio (short side -> input size), so a 1×1,000,000 strip of 1 KB would become a
# 256×256,000,000 picture of several GB; panoramas stay far below 50:1.
DEFAULT_MAX_ASPECT_RATIO = 50

#: What reading one image may raise; every one of them means "skip and count this file" (or, in predict, a
#: per-file error). SyntaxError and ValueError come from some of PIL's decoders on malformed headers.
UNREADABLE_IMAGE_ERRORS = (OSError, ValueError, SyntaxError)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def max_image_pixels() -> int:
    """The largest image (width × height) that is read: ``UNIREPLKNET_MAX_IMAGE_PIXELS`` or 178,956,970."""
    from ..limits import env_limit

    try:
        return int(env_limit(MAX_IMAGE_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS, "pixels"))
    except ValueError as e:
        raise DataError(str(e)) from None


def max_aspect_ratio() -> float:
    """The most elongated image (long side / short side) that is read: ``UNIREPLKNET_MAX_ASPECT_RATIO`` or 50."""
    from ..limits import env_limit

    try:
        return env_limit(MAX_ASPECT_RATIO_ENV, DEFAULT_MAX_ASPECT_RATIO, "long side / short side", integer=False)
    except ValueError as e:
        raise DataError(str(e)) from None


def open_image(path: Union[str, Path], mode: str = "RGB") -> Any:
    """Read ``path`` as a PIL image in ``mode``, upright (its EXIF orientation applied); every failure is an
    ``OSError`` subclass or in :data:`UNREADABLE_IMAGE_ERRORS`, with the path in the message. Only a regular file
    is opened (a FIFO or device raises :class:`~unireplknet.guards.NotARegularFileError`).

    Images over :func:`max_image_pixels` raise :class:`ImageTooLargeError` before their pixels are decoded.
    16-bit grey images (PNG/TIFF ``I;16``) are mapped to 0..255 by /257, the exact rescaling of 0..65535; PIL's
    own ``convert`` would clip every value above 255, turning almost the whole image white.
    """
    import numpy as np
    from PIL import Image

    from PIL import ImageOps

    require_regular_file(path, "image")  # a FIFO would block Image.open forever
    limit = max_image_pixels()
    saved = Image.MAX_IMAGE_PIXELS
    try:
        # Pillow's own check would refuse above twice its limit even when ours is higher; ours runs below.
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as e:  # raised by Pillow where another thread restored its check
        raise ImageTooLargeError(f"{path}: image too large to read safely ({e}); raise the limit with "
                                 f"{MAX_IMAGE_PIXELS_ENV}=<pixels> if the file is trusted") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    with img:
        if img.width * img.height > limit:
            raise ImageTooLargeError(
                f"{path}: {img.width}x{img.height} = {img.width * img.height:,} pixels, over the limit of "
                f"{limit:,}; raise it with {MAX_IMAGE_PIXELS_ENV}=<pixels> if the file is trusted")
        ratio, most = max(img.size) / max(1, min(img.size)), max_aspect_ratio()
        if ratio > most:  # checked before decoding: resizing keeps the ratio, so the result would be huge
            raise ImageTooLargeError(
                f"{path}: {img.width}x{img.height} pixels, an aspect ratio of {ratio:,.0f}:1, over the limit of "
                f"{most:g}:1 (resizing it would take {ratio:,.0f} times the memory of a square image); crop it, "
                f"or raise the limit with {MAX_ASPECT_RATIO_ENV}=<ratio> if the file is trusted")
        # A phone stores a portrait photo sideways with an EXIF orientation tag: turn it upright, as every
        # viewer does, or it is classified lying on its side.
        upright = ImageOps.exif_transpose(img)
        if upright.mode in _SIXTEEN_BIT_MODES:
            grey = np.asarray(upright, dtype=np.float64) / 257.0
            return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L").convert(mode)
        return upright.convert(mode)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def scan_image_folder(root: Path, class_names: Optional[Sequence[str]] = None) -> Tuple[List[str], List[Tuple[str, int]]]:
    """Class names (sorted sub-folder names, or ``class_names``) and (path, class index) samples of ``root``.

    Raises :class:`DataError` for a missing folder, a folder without class sub-folders, and a tree without images.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; pass the folder that holds one sub-folder per class")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder; pass the folder that holds one sub-folder per class")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        loose = [p for p in root.iterdir() if p.is_file() and _is_image(p)]
        if loose:
            raise DataError(
                f"{root} holds {len(loose)} images but no class sub-folders; put each class's images in "
                f"{root}/<class name>/ (e.g. {root}/cat/1.jpg, {root}/dog/2.jpg)"
            )
        raise DataError(f"data folder {root} is empty; it needs one sub-folder of images per class")
    if class_names is None:
        class_names = found
    else:
        class_names = list(class_names)
        extra = sorted(set(found) - set(class_names))
        if extra:
            raise DataError(
                f"{root} has class folders that the training set does not have: {', '.join(extra[:10])}; "
                "every split needs the same class sub-folders"
            )
    samples: List[Tuple[str, int]] = []
    empty: List[str] = []
    for idx, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        found_here = [(str(path), idx) for path in sorted(folder.rglob("*")) if path.is_file() and _is_image(path)]
        if not found_here:
            empty.append(name)
        samples.extend(found_here)
    if not samples:
        raise DataError(
            f"no images found under {root} (looked for {', '.join(IMAGE_EXTENSIONS)} files in its class sub-folders)"
        )
    if empty:
        # An empty folder would silently become a class the model can never learn or be scored on.
        raise DataError(
            f"class folder{'s' if len(empty) > 1 else ''} {', '.join(str(root / n) for n in empty[:5])} "
            f"hold{'' if len(empty) > 1 else 's'} no images (looked for {', '.join(IMAGE_EXTENSIONS)}); "
            "add images or remove the folder"
        )
    return list(class_names), samples


def find_image_folders(root: Path) -> Tuple[Path, Optional[Path]]:
    """``(train folder, val folder or None)``: ``root/train`` + ``root/val`` when present, else ``root`` alone."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; pass the folder that holds one sub-folder per class")
    train, val = root / "train", root / "val"
    if train.is_dir():
        if not val.is_dir():
            alt = root / "validation"
            val = alt if alt.is_dir() else None
        return train, val
    return root, None


class SafeImageFolder(Dataset):
    """An image-folder dataset whose items are ``(image, target, path)``; ``image`` is None when unreadable.

    Args:
        root: folder with one sub-folder per class.
        transform: applied to the PIL image (e.g. a timm transform).
        class_names: fix the class order (e.g. the training set's) instead of the sorted sub-folder names.
        samples: use these (path, target) pairs instead of scanning (for split subsets).
        mode: PIL mode to convert to (``"RGB"`` or ``"L"`` for one-channel models).
    """

    def __init__(
        self,
        root: Path,
        transform: Optional[Callable[[Any], torch.Tensor]] = None,
        class_names: Optional[Sequence[str]] = None,
        samples: Optional[List[Tuple[str, int]]] = None,
        mode: str = "RGB",
    ):
        self.root = Path(root)
        if samples is None:
            self.classes, self.samples = scan_image_folder(self.root, class_names)
        else:
            self.classes, self.samples = list(class_names or []), list(samples)
        self.targets = [t for _, t in self.samples]
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[Optional[torch.Tensor], int, str]:
        path, target = self.samples[index]
        try:
            img = open_image(path, self.mode)
        except DataError:
            raise  # a setting that is wrong for every file (the pixel limit), not a bad file
        except UNREADABLE_IMAGE_ERRORS as e:
            # A truncated or non-image file: leave it to the collate function to skip and count.
            _logger.debug("unreadable image %s: %s", path, e)
            return None, target, path
        if self.transform is not None:
            img = self.transform(img)
        return img, target, path


def _split_items(items: Sequence[Tuple[Any, ...]]) -> Tuple[List[Tuple[torch.Tensor, int]], List[str]]:
    good, bad = [], []
    for item in items:
        img, target = item[0], item[1]
        if img is None:
            bad.append(item[2] if len(item) > 2 else "?")
        else:
            good.append((img, target))
    return good, bad


def collate_drop_unreadable(items: Sequence[Tuple[Any, ...]]) -> Batch:
    """Evaluation collate: unreadable images are left out (the batch may shrink, even to zero)."""
    good, bad = _split_items(items)
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), len(bad), bad)
    images = torch.stack([g[0] for g in good])
    targets = torch.tensor([g[1] for g in good], dtype=torch.long)
    return Batch(images, targets, len(bad), bad)


def collate_replace_unreadable(items: Sequence[Tuple[Any, ...]]) -> Batch:
    """Training collate: each unreadable image is replaced by a readable one of the same batch.

    Keeping the batch size fixed keeps mixup (even batches) and the ranks of a distributed run in step.
    """
    good, bad = _split_items(items)
    if not good:
        raise DataError(
            f"every image of a batch is unreadable ({', '.join(bad[:3])} …); check the data folder "
            "(e.g. `python -c 'from PIL import Image; Image.open(PATH).load()'`) or remove the broken files"
        )
    rng = random.Random(len(items) * 7919 + len(bad))  # deterministic choice of stand-ins
    while len(good) < len(items):
        good.append(good[rng.randrange(len(good))])
    images = torch.stack([g[0] for g in good])
    targets = torch.tensor([g[1] for g in good], dtype=torch.long)
    return Batch(images, targets, len(bad), bad)


def collate_tensors(items: Sequence[Tuple[torch.Tensor, int]]) -> Batch:
    """Collate for in-memory tensor datasets (never unreadable)."""
    images = torch.stack([i[0] for i in items])
    targets = torch.tensor([int(i[1]) for i in items], dtype=torch.long)
    return Batch(images, targets, 0, [])
