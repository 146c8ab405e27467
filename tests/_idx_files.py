"""Small MNIST-family IDX folders written byte by byte (struct), independently of the reader under test."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Tuple

import numpy as np


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """The IDX file of a uint8 array: a big-endian magic number, one 32-bit size per axis, the bytes."""
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape) + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    data = idx_bytes(array, magic)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def class_images(labels: np.ndarray, side: int = 28, seed: int = 0) -> np.ndarray:
    """Learnable images: class ``k`` is a bright bar at a class-specific position over faint noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), side, side), dtype=np.uint8)
    for i, k in enumerate(labels):
        row = 2 + int(k) * (side - 6) // max(int(labels.max()), 1)
        images[i, row:row + 3, 4:side - 4] = 230
    return images


def write_idx_folder(root: Path, n_train: int = 60, n_test: int = 20, classes: int = 3, gz: bool = True,
                     side: int = 28, seed: int = 0) -> Tuple[Path, dict]:
    """A folder of the four standard files (``.gz`` or raw), ``classes`` balanced classes; returns the arrays."""
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {}
    for split, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        labels = (np.arange(n) % classes).astype(np.uint8)
        images = class_images(labels, side, s)
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", images, 0x00000803)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", labels, 0x00000801)
        arrays[split] = (images, labels)
    return root, arrays
