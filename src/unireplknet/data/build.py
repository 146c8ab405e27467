"""Build train / held-out datasets and their transforms from a data argument (or the embedded digits)."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from .idx import IdxDataset, SmallGreyTransform, is_idx_folder, load_idx_split, pixel_mean_std, resolve_class_names
from .digits import DIGITS_CLASS_NAMES, DIGITS_MEAN, DIGITS_STD, DigitImageTransform, DigitsDataset
from .folder import (
    DataError,
    SafeImageFolder,
    collate_drop_unreadable,
    collate_replace_unreadable,
    collate_tensors,
    find_image_folders,
    scan_image_folder,
)

__all__ = ["DataBundle", "build_data", "eval_transform", "train_transform", "split_samples", "SkipUnreadable",
           "idx_transform"]

_logger = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """Everything the training loop needs to know about the data."""

    train: Dataset
    val: Optional[Dataset]
    class_names: List[str]
    #: timm-style data config (input_size, interpolation, mean, std, crop_pct) plus ``kind``.
    data_config: Dict[str, Any]
    train_collate: Callable
    eval_collate: Callable
    description: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def in_chans(self) -> int:
        return int(self.data_config["input_size"][0])


def split_samples(
    samples: Sequence[Tuple[str, int]], val_fraction: float, seed: int = 0
) -> Tuple[List[Tuple[str, int]], List[Tuple[str, int]]]:
    """A stratified random split of (path, target) pairs: ``val_fraction`` of every class held out (≥1 each)."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"--val-split must be between 0 and 1 (exclusive), got {val_fraction}")
    by_class: Dict[int, List[Tuple[str, int]]] = {}
    for s in samples:
        by_class.setdefault(s[1], []).append(s)
    rng = random.Random(seed)
    train, val = [], []
    for target in sorted(by_class):
        items = list(by_class[target])
        rng.shuffle(items)
        n_val = max(1, int(round(len(items) * val_fraction))) if len(items) > 1 else 0
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return sorted(train, key=lambda s: s[0]), sorted(val, key=lambda s: s[0])


def _image_data_config(
    input_size: int, in_chans: int, crop_pct: float, interpolation: str,
    mean: Optional[Sequence[float]], std: Optional[Sequence[float]],
) -> Dict[str, Any]:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    if mean is None:
        mean = IMAGENET_DEFAULT_MEAN if in_chans == 3 else (0.5,) * in_chans
    if std is None:
        std = IMAGENET_DEFAULT_STD if in_chans == 3 else (0.5,) * in_chans
    return dict(
        kind="folder",
        input_size=(in_chans, input_size, input_size),
        interpolation=interpolation,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        crop_pct=float(crop_pct),
    )


def eval_transform(data_config: Dict[str, Any]) -> Callable:
    """The evaluation transform of a data config, following the official rule.

    Below 384 pixels: resize the short side to ``size / crop_pct`` then centre-crop; from 384 up the
    official code warps straight to ``size×size`` (no crop), which timm calls crop mode ``squash``.
    A digits model (``kind == "digits"``) reads image files the way its UCI training digits were made
    (:class:`~unireplknet.data.digits.DigitImageTransform`: polarity, ink box, 8×8 counts).
    """
    from timm.data import create_transform

    if data_config.get("kind") == "digits":
        return DigitImageTransform(int(data_config["input_size"][-1]))
    if data_config.get("kind") == "idx":
        return idx_transform(data_config)

    size = int(data_config["input_size"][-1])
    squash = size >= 384 or float(data_config.get("crop_pct", 0.875)) >= 1.0
    return create_transform(
        input_size=tuple(data_config["input_size"]),
        is_training=False,
        interpolation=data_config.get("interpolation", "bicubic"),
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        crop_pct=1.0 if squash else float(data_config.get("crop_pct", 0.875)),
        crop_mode="squash" if squash else "center",
    )


def _posterize_at_least_one_bit(level: float, hparams: Dict[str, Any]) -> Tuple[int]:
    from timm.data.auto_augment import LEVEL_TO_ARG

    (bits,) = LEVEL_TO_ARG["PosterizeIncreasing"](level, hparams)
    return (max(1, bits),)


def _guard_posterize(transform: Any) -> Any:
    """Keep RandAugment's PosterizeIncreasing at >= 1 bit.

    At magnitude 10 (reached by ``rand-m9-mstd0.5``: about 2% of draws) timm asks PIL for a 0-bit posterize,
    which recent Pillow rejects with ``ValueError: bits must be between or equal to 1 and 8`` — a crash in the
    middle of an epoch. One bit is the closest valid strength (0 bits would be a black image anyway).
    """
    from timm.data.auto_augment import RandAugment

    for t in getattr(transform, "transforms", []):
        if isinstance(t, RandAugment):
            for op in t.ops:
                if op.name == "PosterizeIncreasing":
                    op.level_fn = _posterize_at_least_one_bit
    return transform


def train_transform(data_config: Dict[str, Any], aug: Dict[str, Any]) -> Callable:
    """timm's training transform (RandomResizedCrop, flip, RandAugment, random erasing …) for a data config."""
    from timm.data import create_transform

    return _guard_posterize(create_transform(
        input_size=tuple(data_config["input_size"]),
        is_training=True,
        hflip=aug.get("hflip", 0.5),
        color_jitter=aug.get("color_jitter", 0.4),
        auto_augment=aug.get("auto_augment") or None,
        interpolation=aug.get("train_interpolation", "bicubic"),
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        re_prob=aug.get("reprob", 0.25),
        re_mode=aug.get("remode", "pixel"),
        re_count=aug.get("recount", 1),
    ))


class DigitsAugment:
    """Light augmentation for the 8×8 digits: a small random affine (no flips: a mirrored digit is another glyph)."""

    def __init__(self, degrees: float = 10.0, translate: float = 0.1, scale: Tuple[float, float] = (0.9, 1.1)):
        from torchvision.transforms import v2

        # Fill with the normalised background value so shifted-in pixels look like paper, not ink.
        background = (0.0 - DIGITS_MEAN[0]) / DIGITS_STD[0]
        self.affine = v2.RandomAffine(degrees=degrees, translate=(translate, translate), scale=scale, fill=background)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.affine(img)


def build_data(
    data: Optional[str] = None,
    input_size: Optional[int] = None,
    in_chans: int = 3,
    val_split: float = 0.1,
    seed: int = 0,
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    aug: Optional[Dict[str, Any]] = None,
    train_augment: bool = True,
    class_names: Optional[str] = None,
    fit: str = "pad",
) -> DataBundle:
    """Datasets for ``data``: None → the embedded digits; an IDX folder (MNIST, Fashion-MNIST …) → ``train`` less a
    stratified validation split, and ``t10k`` as the test split (``extra["test"]``); an image folder →
    ``train/`` + ``val/`` or a stratified split.

    Args:
        data: None / ``"digits"`` or an image-folder root.
        input_size: side of the network input (digits: default 32; folders: default 224).
        in_chans: 3 (RGB) or 1 (grey) for folder data (digits are always one channel).
        val_split: held-out share when the folder has no ``val/`` sub-folder.
        aug: augmentation options for timm's ``create_transform`` (see :func:`train_transform`).
        train_augment: False gives the training set the evaluation transform (no randomness).
        class_names: IDX folders: a known set's name or a comma list (see
            :func:`~unireplknet.data.idx.resolve_class_names`).
        fit: IDX folders: ``"pad"`` (centre the images on the input canvas) or ``"resize"``.
    """
    if data in (None, "digits"):
        size = int(input_size or 32)
        data_config = dict(
            kind="digits", input_size=(1, size, size), interpolation="bilinear",
            mean=DIGITS_MEAN, std=DIGITS_STD, crop_pct=1.0,
        )
        train = DigitsDataset("train", size, transform=DigitsAugment() if train_augment else None)
        val = DigitsDataset("val", size)
        return DataBundle(
            train, val, list(DIGITS_CLASS_NAMES), data_config, collate_tensors, collate_tensors,
            description=f"embedded UCI digits: {len(train)} train / {len(val)} held-out images, 8x8 upsampled to {size}x{size}",
        )

    if is_idx_folder(data):
        return _build_idx_data(Path(data), input_size, in_chans, val_split, seed, aug or {}, train_augment,
                               class_names, fit)
    if in_chans not in (1, 3):
        raise DataError(f"image folders are read as RGB (in_chans=3) or grey (in_chans=1), got in_chans={in_chans}")
    data_config = _image_data_config(int(input_size or 224), in_chans, crop_pct, interpolation, mean, std)
    mode = "RGB" if in_chans == 3 else "L"
    train_dir, val_dir = find_image_folders(Path(data))
    class_names, samples = scan_image_folder(train_dir)
    if len(class_names) < 2:
        raise DataError(f"{train_dir} has a single class folder ({class_names[0]}); classification needs at least two")
    t_train = train_transform(data_config, aug or {}) if train_augment else eval_transform(data_config)
    t_eval = eval_transform(data_config)
    if val_dir is not None:
        _, val_samples = scan_image_folder(val_dir, class_names)
        train_samples, where = samples, f"{train_dir} + {val_dir}"
    elif val_split > 0:
        train_samples, val_samples = split_samples(samples, val_split, seed)
        where = f"{train_dir} (held out {val_split:.0%} of each class, seed {seed})"
    else:
        train_samples, val_samples, where = samples, None, f"{train_dir} (no held-out set)"
    train = SafeImageFolder(train_dir, t_train, class_names, train_samples, mode)
    val = SafeImageFolder(val_dir or train_dir, t_eval, class_names, val_samples, mode) if val_samples else None
    desc = f"{where}: {len(class_names)} classes, {len(train)} train / {len(val) if val else 0} held-out images"
    return DataBundle(train, val, class_names, data_config, collate_replace_unreadable, collate_drop_unreadable, desc)


def idx_transform(data_config: Dict[str, Any], aug: Optional[Dict[str, Any]] = None) -> SmallGreyTransform:
    """The transform of an IDX data config: evaluation, or training with the augmentation options ``aug``
    (``crop_padding``, ``hflip``, ``reprob``, ``remode``)."""
    size = int(data_config["input_size"][-1])
    common = dict(source_size=int(data_config.get("source_size", 28)), fit=data_config.get("fit", "pad"))
    mean, std = float(data_config["mean"][0]), float(data_config["std"][0])
    if aug is None:
        return SmallGreyTransform(size, mean, std, **common)
    return SmallGreyTransform(size, mean, std, train=True, crop_padding=int(aug.get("crop_padding", 4)),
                              hflip=float(aug.get("hflip", 0.5)), reprob=float(aug.get("reprob", 0.0)),
                              remode=aug.get("remode", "pixel"), **common)


def _build_idx_data(root: Path, input_size: Optional[int], in_chans: int, val_split: float, seed: int,
                    aug: Dict[str, Any], train_augment: bool, class_names: Optional[str], fit: str) -> DataBundle:
    """An IDX folder: the train files less a stratified validation split (``val_split`` of every class, drawn
    with ``seed``), and t10k as the test split, in ``extra["test"]`` (scored once, after training)."""
    if in_chans != 1:
        raise DataError(f"{root} holds grey IDX images (one channel) but in_chans={in_chans}; use --in-chans 1")
    train_split, test_split = load_idx_split(root, "train"), load_idx_split(root, "t10k")
    if train_split.images.shape[1:] != test_split.images.shape[1:]:
        raise DataError(f"{train_split.images_path} holds {train_split.images.shape[1:]} images but "
                        f"{test_split.images_path} {test_split.images.shape[1:]}; both splits must come from the "
                        "same data set")
    rows, cols = (int(v) for v in train_split.images.shape[1:])
    if rows != cols:
        raise DataError(f"{train_split.images_path} holds {rows}×{cols} images; only square IDX images are "
                        "supported")
    num_classes = int(max(train_split.labels.max(), test_split.labels.max())) + 1
    names = resolve_class_names(class_names, root, num_classes)
    size = int(input_size or 32)
    mean, std = pixel_mean_std(train_split.images)
    data_config = dict(kind="idx", input_size=(1, size, size), interpolation="bilinear", mean=(mean,), std=(std,),
                       crop_pct=1.0, fit=fit, source_size=rows)
    t_eval = idx_transform(data_config)
    t_train = idx_transform(data_config, aug) if train_augment else t_eval
    pairs = list(zip(range(len(train_split)), train_split.labels.tolist()))
    if val_split > 0:
        train_pairs, val_pairs = split_samples(pairs, val_split, seed)
        where = f"{root} (held out {val_split:.0%} of each class of train, seed {seed}; t10k = test)"
    else:
        train_pairs, val_pairs, where = pairs, [], f"{root} (no held-out set; t10k = test)"
    train = IdxDataset(train_split, t_train, [i for i, _ in train_pairs], names)
    val = IdxDataset(train_split, t_eval, [i for i, _ in val_pairs], names) if val_pairs else None
    test = IdxDataset(test_split, t_eval, None, names)
    desc = (f"{where}: {num_classes} classes, {len(train)} train / {len(val) if val else 0} held-out / {len(test)} "
            f"test images of {rows}x{cols}, {'padded' if fit == 'pad' else 'resized'} to {size}x{size}")
    return DataBundle(train, val, names, data_config, collate_tensors, collate_tensors, desc, extra=dict(test=test))


class SkipUnreadable(Dataset):
    """A dataset whose unreadable samples (``errors`` raised by ``__getitem__``) come back as None, to be left
    out and counted by :func:`~unireplknet.engine.collate_samples` (``--skip-unreadable`` of the task commands).

    A sample that failed once is remembered and not read again in later epochs (per data-loading process).
    """

    def __init__(self, dataset: Dataset, errors: Tuple[type, ...] = (OSError,)):
        self.dataset, self.errors = dataset, errors
        self.bad: set = set()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # class_names, rng, … of the wrapped dataset
        if name in ("dataset", "errors", "bad"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, i: int) -> Any:
        if i in self.bad:
            return None
        try:
            return self.dataset[i]
        except self.errors as e:
            self.bad.add(i)
            _logger.warning("skipped unreadable sample %d: %s", i, e)
            return None
