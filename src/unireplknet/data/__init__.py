"""Datasets and generators: the embedded UCI digits, image-folder trees (corrupt images skipped and counted) and
MNIST-family IDX folders (:mod:`.idx`) here; per modality in the subpackages :mod:`.audio`, :mod:`.video`, :mod:`.pointcloud`, :mod:`.timeseries`, and
the dense-prediction sets :mod:`.coco`, :mod:`.ade20k` and :mod:`.scenes` (the generated scenes).

Datasets apply the signal -> image transforms of :mod:`unireplknet.modalities`; none lives there.
"""
from .digits import (
    DIGITS_CLASS_NAMES,
    DIGITS_MEAN,
    DIGITS_STD,
    DigitImageTransform,
    DigitsDataset,
    digit_counts_to_input,
    digit_image_to_counts,
    digit_image_to_input,
    digits_split_indices,
    load_digits,
    write_digits_image_folder,
)
from .folder import (
    IMAGE_EXTENSIONS,
    Batch,
    DataError,
    SafeImageFolder,
    collate_drop_unreadable,
    collate_replace_unreadable,
    collate_tensors,
    find_image_folders,
    scan_image_folder,
)
from .idx import KNOWN_CLASS_NAMES, IdxDataset, SmallGreyTransform, is_idx_folder, load_idx_split, read_idx
from .build import DataBundle, build_data, eval_transform, split_samples

__all__ = [
    "DIGITS_CLASS_NAMES", "DIGITS_MEAN", "DIGITS_STD", "DigitImageTransform", "DigitsDataset", "digit_counts_to_input",
    "digit_image_to_counts", "digit_image_to_input", "digits_split_indices", "load_digits",
    "write_digits_image_folder", "IMAGE_EXTENSIONS", "Batch", "DataError", "SafeImageFolder",
    "collate_drop_unreadable", "collate_replace_unreadable", "collate_tensors", "find_image_folders",
    "scan_image_folder", "DataBundle", "build_data", "eval_transform", "split_samples",
    "KNOWN_CLASS_NAMES", "IdxDataset", "SmallGreyTransform", "is_idx_folder", "load_idx_split", "read_idx",
]
