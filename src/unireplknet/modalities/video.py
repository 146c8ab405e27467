"""Video → image for UniRepLKNet: frame layouts and the clip augmentation / test views.

A clip of T frames (C, T, H, W) becomes one image that the unchanged 2-D backbone classifies:

* ``layout="mosaic"`` (the paper, TPAMI eq. 5: "lay out the frames"): a rows×cols grid of whole frames,
  frame ``t`` at grid cell (t // cols, t % cols); 16 frames of 224² → 896².
* ``layout="reshape"`` (the official code, ``samples.reshape(B, C, 4H, 4W)``): a raw reinterpretation of
  the contiguous (C, T, H, W) memory. Frame ``t`` then fills output rows ``t·H/rows … (t+1)·H/rows − 1`` and
  every output row holds ``cols`` consecutive source rows side by side. Kept so weights trained with the
  official code keep working; it is not a picture of the frames.

Decoding, frame sampling and the clip datasets are in :mod:`unireplknet.data.video`.

Clip sampling, augmentation and the 5-clip × 3-crop test follow the official Kinetics recipe (VideoMAE v2
fine-tuning code, official `Video/` code, described in docs/video.md): T frames with a fixed stride, a random window for training; RandAugment
``rand-m7-n4-mstd0.5-inc1`` with the *same* operations on every frame; random resized crop (scale
0.08–1, ratio 3/4–4/3, the same box on every frame) and horizontal flip; random erasing with one box
through all frames; ImageNet mean/std. Evaluation resizes the short side to the input size and takes
``test_clips`` evenly spaced windows × ``test_crops`` crops along the long side.
"""
from __future__ import annotations

import math
import random
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "LAYOUTS", "mosaic_grid", "frames_to_mosaic", "mosaic_to_frames", "frames_to_reshape", "clip_to_image",
    "ClipTransform", "ClipEvalTransform",
]

LAYOUTS = ("mosaic", "reshape")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
