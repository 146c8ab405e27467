"""Video clip datasets: frame sampling (the official Kinetics rules), folder trees and Kinetics lists, and the
dataset that turns a file into training clips or test views with the transforms of
:mod:`unireplknet.modalities.video`.
"""
from __future__ import annotations

import csv
import logging
import random
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ...modalities.video import ClipEvalTransform, ClipTransform
from ..batch import Batch
from ..folder import DataError
from .files import VIDEO_EXTENSIONS, VideoDecodeError, read_video

__all__ = ["train_frame_indices", "eval_frame_indices", "scan_video_folder", "read_kinetics_csv", "VideoClipDataset",
           "collate_clips"]

_logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- sampling
def _check_short(available: int, needed: int, short_video: str, what: str) -> None:
    if available <= 0:
        raise VideoDecodeError(f"{what} has no frames")
    if available < needed and short_video == "error":
        raise VideoDecodeError(
            f"{what} has {available} frames, fewer than the {needed} a clip needs (num_frames x sampling_rate); "
            "lower --num-frames/--sampling-rate or pass short_video='repeat_last' to pad with the last frame"
        )
    if short_video not in ("repeat_last", "error"):
        raise ValueError(f"short_video must be 'repeat_last' or 'error', got {short_video!r}")


def train_frame_indices(available: int, num_frames: int, sampling_rate: int, rng: random.Random,
                        short_video: str = "repeat_last", what: str = "the video") -> np.ndarray:
    """Frame indices of a random training window (the official Kinetics rule).

    A window of ``num_frames · sampling_rate`` frames starts at a random frame and ``num_frames`` indices are
    spread evenly over it. A shorter video is read at the sampling rate from its start and padded by
    repeating the last frame (``short_video="repeat_last"``, the official behaviour) or rejected
    (``"error"``).
    """
    span = num_frames * sampling_rate
    _check_short(available, span, short_video, what)
    if available <= span:
        idx = np.arange(0, available, sampling_rate)[:num_frames]
        return np.concatenate([idx, np.full(num_frames - len(idx), available - 1)]).astype(np.int64)
    end = rng.randint(span, available - 1)
    start = end - span
    return np.clip(np.linspace(start, end, num_frames), start, end - 1).astype(np.int64)


def eval_frame_indices(available: int, num_frames: int, sampling_rate: int, clip_index: int, num_clips: int,
                       short_video: str = "repeat_last", what: str = "the video") -> np.ndarray:
    """Indices of temporal test clip ``clip_index`` of ``num_clips`` (the official test rule).

    The video is read at the sampling rate (padded with its last frame to at least ``num_frames``) and the
    clips are windows of ``num_frames`` consecutive sampled frames, evenly spaced from start to end.
    """
    _check_short(available, num_frames * sampling_rate, short_video, what)
    strided = list(range(0, available, sampling_rate))
    while len(strided) < num_frames:
        strided.append(strided[-1])
    step = (len(strided) - num_frames) // (num_clips - 1) if num_clips > 1 else 0
    start = clip_index * max(0, step)
    return np.asarray(strided[start:start + num_frames], dtype=np.int64)


# ----------------------------------------------------------------------------------------------- datasets
def scan_video_folder(root: Union[str, Path], class_names: Optional[Sequence[str]] = None
                      ) -> Tuple[List[str], List[Tuple[str, int]]]:
    """Class names (sub-folder names) and (path, label) pairs of a ``root/<class>/<video>`` tree."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"video folder {root} does not exist or is not a folder; pass root/<class>/<video files>")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root} has no class sub-folders; put each class's videos in {root}/<class name>/")
    names = list(class_names) if class_names is not None else found
    samples = []
    for label, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            continue
        samples += [(str(p), label) for p in sorted(folder.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS]
    if not samples:
        raise DataError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {root}/<class>/")
    return names, samples


def read_kinetics_csv(csv_path: Union[str, Path], root: Union[str, Path, None] = None,
                      class_names: Optional[Sequence[str]] = None, missing: str = "skip"
                      ) -> Tuple[List[str], List[Tuple[str, int]]]:
    """Samples of a Kinetics list file, in either layout:

    * the official Kinetics CSV (header ``label,youtube_id,time_start,time_end,split[,is_cc]``): clip files
      are ``<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>`` in ``root/<label>/`` or ``root/``;
      classes are the sorted label names;
    * the VideoMAE list (no header; ``<path> <label index>`` per line, space or comma separated), paths
      relative to ``root``.

    ``missing="skip"`` leaves out (and logs) listed clips without a file (Kinetics downloads are never
    complete); ``"error"`` raises.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"Kinetics list {csv_path} does not exist")
    root = Path(root) if root is not None else csv_path.parent
    text = csv_path.read_text().splitlines()
    if not text:
        raise DataError(f"Kinetics list {csv_path} is empty")
    samples: List[Tuple[str, int]] = []
    absent: List[str] = []
    header = [h.strip() for h in text[0].split(",")]
    if "youtube_id" in header and "label" in header:
        rows = list(csv.DictReader(text))
        names = list(class_names) if class_names is not None else sorted({r["label"] for r in rows})
        index = {n: i for i, n in enumerate(names)}
        for r in rows:
            if r["label"] not in index:
                raise DataError(f"{csv_path}: label {r['label']!r} is not one of the {len(names)} training classes")
            stem = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
            found = None
            for folder in (root / r["label"], root / r["label"].replace(" ", "_"), root):
                for ext in VIDEO_EXTENSIONS:
                    if (folder / (stem + ext)).is_file():
                        found = folder / (stem + ext)
                        break
                if found:
                    break
            if found is None:
                absent.append(stem)
            else:
                samples.append((str(found), index[r["label"]]))
    else:
        labels = []
        for n, line in enumerate(text, 1):
            parts = line.replace(",", " ").split()
            if not parts:
                continue
            if len(parts) < 2:
                raise DataError(f"{csv_path} line {n}: expected '<path> <label>', got {line!r}")
            try:
                label = int(parts[-1])
            except ValueError:
                raise DataError(f"{csv_path} line {n}: the label must be a class index, got {parts[-1]!r}") from None
            p = Path(" ".join(parts[:-1]))
            p = p if p.is_absolute() else root / p
            if p.is_file():
                samples.append((str(p), label))
                labels.append(label)
            else:
                absent.append(str(p))
        num = max(labels) + 1 if labels else 0
        names = list(class_names) if class_names is not None else [str(i) for i in range(num)]
    if absent:
        if missing == "error":
            raise DataError(f"{len(absent)} clips listed in {csv_path} have no file under {root} (e.g. {absent[0]})")
        _logger.warning("%s: %d listed clips have no file under %s and are left out (e.g. %s)",
                        csv_path, len(absent), root, absent[0])
    if not samples:
        raise DataError(f"none of the clips listed in {csv_path} was found under {root}")
    return names, samples


class VideoClipDataset(Dataset):
    """Clips of video files: ``(clip, label)``; clip (3, T, S, S) for training, (V, 3, T, S, S) for testing.

    Args:
        samples: (path, label) pairs (:func:`scan_video_folder`, :func:`read_kinetics_csv`).
        train: random window + :class:`ClipTransform`; else ``test_clips × test_crops`` views
            (:func:`eval_frame_indices`, :class:`ClipEvalTransform`) stacked along a new first axis.
        on_error: "raise" (default) or "skip": an unreadable video yields ``None`` and the collate function
            leaves it out and counts it.
    """

    def __init__(self, samples: Sequence[Tuple[str, int]], classes: Sequence[str], train: bool,
                 num_frames: int = 16, sampling_rate: int = 4, size: int = 224,
                 transform: Optional[Callable] = None, test_clips: int = 5, test_crops: int = 3,
                 short_video: str = "repeat_last", on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.samples, self.classes, self.train = list(samples), list(classes), train
        self.num_frames, self.sampling_rate, self.size = num_frames, sampling_rate, size
        self.test_clips, self.test_crops = test_clips, test_crops
        self.short_video, self.on_error = short_video, on_error
        self.transform = transform or (ClipTransform(size) if train else ClipEvalTransform(size, test_crops))

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, path: str) -> torch.Tensor:
        frames = read_video(path)
        if self.train:
            # The module-level generator: DataLoader workers each get their own seed for it.
            idx = train_frame_indices(len(frames), self.num_frames, self.sampling_rate, random, self.short_video, path)
            return self.transform(torch.from_numpy(frames[idx]))
        views = []
        for c in range(self.test_clips):
            idx = eval_frame_indices(len(frames), self.num_frames, self.sampling_rate, c, self.test_clips,
                                     self.short_video, path)
            clip = torch.from_numpy(frames[idx])
            views += [self.transform(clip, k) for k in range(self.test_crops)]
        return torch.stack(views)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            return self._load(path), label
        except VideoDecodeError as e:
            if self.on_error == "raise":
                raise VideoDecodeError(f"{e}; to leave unreadable videos out (counted) instead, pass "
                                       "--skip-unreadable (on_error='skip')") from None
            _logger.warning("skipping unreadable video %s", path)
            return None, label


def collate_clips(items: Sequence[Tuple[Optional[torch.Tensor], int]]) -> Batch:
    """Stack readable clips into the one :class:`~unireplknet.data.batch.Batch` (``inputs``: the clips);
    unreadable ones (``None``) are left out and counted."""
    good = [(c, t) for c, t in items if c is not None]
    bad = len(items) - len(good)
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), bad)
    return Batch(torch.stack([c for c, _ in good]), torch.tensor([t for _, t in good], dtype=torch.long), bad)
