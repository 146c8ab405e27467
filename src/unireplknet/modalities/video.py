"""Video → image for UniRepLKNet: frame layouts, decoding (PyAV), clip sampling, augmentation, datasets.

A clip of T frames (C, T, H, W) becomes one image that the unchanged 2-D backbone classifies:

* ``layout="mosaic"`` (the paper, TPAMI eq. 5: "lay out the frames"): a rows×cols grid of whole frames,
  frame ``t`` at grid cell (t // cols, t % cols); 16 frames of 224² → 896².
* ``layout="reshape"`` (the official code, ``samples.reshape(B, C, 4H, 4W)``): a raw reinterpretation of
  the contiguous (C, T, H, W) memory. Frame ``t`` then fills output rows ``t·H/rows … (t+1)·H/rows − 1`` and
  every output row holds ``cols`` consecutive source rows side by side. Kept so weights trained with the
  official code keep working; it is not a picture of the frames.

Decoding uses PyAV (``pip install 'unireplknet[video]'``): torchvision 0.29 no longer decodes video and
torchcodec needs a system FFmpeg, while PyAV wheels carry their own.

Clip sampling, augmentation and the 5-clip × 3-crop test follow the official Kinetics recipe (VideoMAE v2
fine-tuning code, official `Video/` code, described in docs/video.md): T frames with a fixed stride, a random window for training; RandAugment
``rand-m7-n4-mstd0.5-inc1`` with the *same* operations on every frame; random resized crop (scale
0.08–1, ratio 3/4–4/3, the same box on every frame) and horizontal flip; random erasing with one box
through all frames; ImageNet mean/std. Evaluation resizes the short side to the input size and takes
``test_clips`` evenly spaced windows × ``test_crops`` crops along the long side.
"""
from __future__ import annotations

import csv
import logging
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from ..engine.task import Batch

from ..data.folder import DataError

__all__ = [
    "VIDEO_EXTENSIONS", "LAYOUTS", "VideoDecodeError", "mosaic_grid", "frames_to_mosaic", "mosaic_to_frames",
    "frames_to_reshape", "clip_to_image", "require_av", "read_video", "write_video", "train_frame_indices",
    "eval_frame_indices", "ClipTransform", "ClipEvalTransform", "VideoClipDataset", "scan_video_folder",
    "read_kinetics_csv", "collate_clips",
]

_logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")
LAYOUTS = ("mosaic", "reshape")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VideoDecodeError(DataError):
    """A video file could not be opened or decoded, or holds no frames."""


# ----------------------------------------------------------------------------------------------- layouts
def mosaic_grid(num_frames: int, grid: Optional[Tuple[int, int]] = None) -> Tuple[int, int]:
    """(rows, cols) of the frame grid: ``grid`` if given, else the square root of a square ``num_frames``."""
    if grid is not None:
        rows, cols = int(grid[0]), int(grid[1])
        if rows * cols != num_frames:
            raise ValueError(f"a {rows}x{cols} grid holds {rows * cols} frames, the clip has {num_frames}; "
                             f"pass a grid whose rows*cols equals the number of frames")
        return rows, cols
    side = math.isqrt(num_frames)
    if side * side != num_frames:
        raise ValueError(f"{num_frames} frames do not form a square grid; use a square number of frames "
                         f"(4, 9, 16 …) or pass grid=(rows, cols) with rows*cols == {num_frames}")
    return side, side


def _as_batched(clip: torch.Tensor) -> Tuple[torch.Tensor, bool]:
    if clip.dim() == 4:
        return clip.unsqueeze(0), True
    if clip.dim() != 5:
        raise ValueError(f"a clip must be (C, T, H, W) or (B, C, T, H, W), got shape {tuple(clip.shape)}")
    return clip, False


def frames_to_mosaic(clip: torch.Tensor, grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """(B, C, T, H, W) → (B, C, rows·H, cols·W): frame t at grid cell (t // cols, t % cols). Unbatched works too."""
    x, single = _as_batched(clip)
    b, c, t, h, w = x.shape
    rows, cols = mosaic_grid(t, grid)
    out = x.reshape(b, c, rows, cols, h, w).permute(0, 1, 2, 4, 3, 5).reshape(b, c, rows * h, cols * w)
    return out[0] if single else out


def mosaic_to_frames(image: torch.Tensor, num_frames: int, grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Inverse of :func:`frames_to_mosaic`: (B, C, rows·H, cols·W) → (B, C, T, H, W)."""
    single = image.dim() == 3
    x = image.unsqueeze(0) if single else image
    b, c, hh, ww = x.shape
    rows, cols = mosaic_grid(num_frames, grid)
    if hh % rows or ww % cols:
        raise ValueError(f"a {hh}x{ww} image does not split into a {rows}x{cols} grid of equal frames")
    h, w = hh // rows, ww // cols
    out = x.reshape(b, c, rows, h, cols, w).permute(0, 1, 2, 4, 3, 5).reshape(b, c, num_frames, h, w)
    return out[0] if single else out


def frames_to_reshape(clip: torch.Tensor, grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """The official layout: reinterpret the (C, T, H, W) memory as (C, rows·H, cols·W) (16 frames: 4H × 4W)."""
    x, single = _as_batched(clip)
    b, c, t, h, w = x.shape
    rows, cols = mosaic_grid(t, grid)
    out = x.contiguous().reshape(b, c, rows * h, cols * w)
    return out[0] if single else out


def clip_to_image(clip: torch.Tensor, layout: str = "mosaic", grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """A clip (or batch of clips) as the image the backbone sees, in ``layout`` ("mosaic" or "reshape")."""
    if layout == "mosaic":
        return frames_to_mosaic(clip, grid)
    if layout == "reshape":
        return frames_to_reshape(clip, grid)
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


# ----------------------------------------------------------------------------------------------- decoding
def require_av():
    """Import PyAV or raise an ImportError that names the extra to install."""
    try:
        import av  # noqa: F401
    except ImportError:
        raise ImportError("decoding video files needs PyAV: pip install 'unireplknet[video]' (or pip install av)") from None
    return av


def read_video(path: Union[str, Path], max_frames: Optional[int] = None) -> np.ndarray:
    """All frames (or the first ``max_frames``) of a video file as uint8 RGB (T, H, W, 3).

    Raises :class:`VideoDecodeError` naming the file when it is missing, unreadable, has no video stream or
    no decodable frame. A file that breaks off after some good frames gives those frames (with a warning).
    """
    av = require_av()
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"video file {path} does not exist")
    frames: List[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path} has no video stream (audio-only or not a video file)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if max_frames is not None and len(frames) >= max_frames:
                        break
            except av.error.FFmpegError as e:  # truncated / corrupt data after some frames
                if not frames:
                    raise
                _logger.warning("%s: decoding stopped after %d frames (%s); using those", path, len(frames), e)
    except VideoDecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - PyAV raises many types for bad files; report them uniformly
        raise VideoDecodeError(f"cannot decode video {path}: {e}") from e
    if not frames:
        raise VideoDecodeError(f"{path} contains no decodable video frame (empty or corrupt file)")
    return np.stack(frames)


def write_video(path: Union[str, Path], frames: np.ndarray, fps: int = 25, codec: str = "mpeg4") -> Path:
    """Write uint8 (T, H, W, 3) frames as a video file (used to make test clips and for exporting the demo set)."""
    av = require_av()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"} if codec == "mpeg4" else {}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


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


# ----------------------------------------------------------------------------------------------- transforms
def _normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (T, H, W, C) → float (C, T, H, W), scaled to [0, 1] and standardised per channel."""
    x = x.permute(3, 0, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1, 1)
    return (x - m) / s


def _resize_frames(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(C, T, H, W) → (C, T, size) with bilinear resampling (antialiased when shrinking)."""
    c, t, h, w = x.shape
    y = F.interpolate(x.permute(1, 0, 2, 3), size=size, mode="bilinear", align_corners=False, antialias=True)
    return y.permute(1, 0, 2, 3)


class ClipTransform:
    """Training augmentation of one clip, identical on every frame; uint8 (T, H, W, 3) → float (3, T, S, S).

    Args:
        size: output side S.
        scale, ratio: random-resized-crop area fraction and aspect range (official: 0.08–1, 3/4–4/3).
        hflip: flip probability (0.5). Set 0 when the label depends on left/right (the motion set).
        auto_augment: timm RandAugment string (official ``rand-m7-n4-mstd0.5-inc1``; "" = off).
        reprob: random-erasing probability (0.25); one box of random normal pixels through all frames.
    """

    def __init__(self, size: int = 224, scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5,
                 auto_augment: str = "rand-m7-n4-mstd0.5-inc1", reprob: float = 0.25,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.size, self.scale, self.ratio, self.hflip, self.reprob = size, scale, ratio, hflip, reprob
        self.mean, self.std = tuple(mean), tuple(std)
        self.auto_augment = auto_augment
        self._randaug = None
        if auto_augment:
            from timm.data.auto_augment import rand_augment_transform

            self._randaug = rand_augment_transform(
                auto_augment, dict(translate_const=int(size * 0.45), img_mean=tuple(round(255 * m) for m in self.mean)))

    def _same_randaugment(self, frames: torch.Tensor) -> torch.Tensor:
        """Apply one draw of RandAugment to every frame: replay the random state timm's ops consume."""
        from PIL import Image

        py_state, np_state = random.getstate(), np.random.get_state()
        out = []
        for f in frames.numpy():
            random.setstate(py_state)
            np.random.set_state(np_state)
            out.append(np.asarray(self._randaug(Image.fromarray(f))))
        return torch.from_numpy(np.stack(out))

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if self._randaug is not None:
            frames = self._same_randaugment(frames)
        x = _normalize(frames, self.mean, self.std)
        _, _, h, w = x.shape
        top, left, ch, cw = _random_resized_box(h, w, self.scale, self.ratio)
        x = _resize_frames(x[:, :, top:top + ch, left:left + cw], (self.size, self.size))
        if random.random() < self.hflip:
            x = x.flip(-1)
        if random.random() < self.reprob:
            x = _erase_cube(x)
        return x


def _random_resized_box(h: int, w: int, scale: Tuple[float, float], ratio: Tuple[float, float]) -> Tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box rule (10 tries, then the central crop of the closest ratio)."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return random.randint(0, h - ch), random.randint(0, w - cw), ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _erase_cube(x: torch.Tensor, area: Tuple[float, float] = (0.02, 1 / 3), log_aspect: float = math.log(3.0)) -> torch.Tensor:
    """Random erasing (timm 'pixel' mode) with one box shared by all frames (VideoMAE's ``cube`` option)."""
    c, t, h, w = x.shape
    for _ in range(10):
        target = random.uniform(*area) * h * w
        aspect = math.exp(random.uniform(-log_aspect, log_aspect))
        eh, ew = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if eh < h and ew < w:
            top, left = random.randint(0, h - eh), random.randint(0, w - ew)
            x = x.clone()
            x[:, :, top:top + eh, left:left + ew] = torch.randn(c, 1, eh, ew).expand(c, t, eh, ew)
            return x
    return x


class ClipEvalTransform:
    """Test view ``crop_index`` of ``num_crops`` of a clip: short side → ``size``, crop ``size``² along the long side.

    ``num_crops=1`` is the centre crop; 3 gives the official left/centre/right (or top/centre/bottom) crops.
    uint8 (T, H, W, 3) → float (3, T, size, size).
    """

    def __init__(self, size: int = 224, num_crops: int = 1, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        self.size, self.num_crops = size, num_crops
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, frames: torch.Tensor, crop_index: Optional[int] = None) -> torch.Tensor:
        x = _normalize(frames, self.mean, self.std)
        _, _, h, w = x.shape
        if h <= w:
            nh, nw = self.size, max(self.size, int(round(w * self.size / h)))
        else:
            nh, nw = max(self.size, int(round(h * self.size / w))), self.size
        x = _resize_frames(x, (nh, nw))
        k = (self.num_crops // 2) if crop_index is None else crop_index
        long_extra = max(nh, nw) - self.size
        offset = (k * long_extra // (self.num_crops - 1)) if self.num_crops > 1 else long_extra // 2
        if nh <= nw:
            return x[:, :, :, offset:offset + self.size]
        return x[:, :, offset:offset + self.size, :]


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


def collate_clips(items: Sequence[Tuple[Optional[torch.Tensor], int]]) -> "Batch":
    """Stack readable clips into the engine's :class:`~unireplknet.engine.Batch` (``inputs``: the clips);
    unreadable ones (``None``) are left out and counted."""
    from ..engine.task import Batch

    good = [(c, t) for c, t in items if c is not None]
    bad = len(items) - len(good)
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), bad)
    return Batch(torch.stack([c for c, _ in good]), torch.tensor([t for _, t in good], dtype=torch.long), bad)
