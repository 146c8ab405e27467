"""Generated motion clips: one bright shape moving in one of six ways over a noisy background.

The label is the *direction of motion* (right, left, down, up, clockwise orbit, counter-clockwise orbit),
never the appearance: shape, colour, size, speed, start position and background are drawn at random for
every clip, independently of the class. Opposite classes are time reversals of each other (a "right" clip
played backwards is a valid "left" clip, a clockwise orbit backwards is counter-clockwise), so the average
of the frames — or any statistic that ignores frame order — carries no information about the label: a
classifier has to compare frames in order. Clip ``i`` of a split is drawn from its own seeded generator,
so the data set is the same on every machine and costs no disk space.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["MOTION_CLASS_NAMES", "MOTION_SPLIT_SEEDS", "render_motion_clip", "MotionClips"]

MOTION_CLASS_NAMES: Tuple[str, ...] = ("right", "left", "down", "up", "clockwise", "counterclockwise")
#: Different seed streams for the splits, so train and held-out clips never coincide.
MOTION_SPLIT_SEEDS: Dict[str, int] = {"train": 1_000_003, "val": 2_000_029, "test": 3_000_017}
_SHAPES = ("square", "disc", "triangle", "ring")
# Unit velocity of the linear classes in image coordinates (x to the right, y downwards).
_DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "down": (0.0, 1.0), "up": (0.0, -1.0)}


def _shape_coverage(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape of radius ``r`` at offsets (dx, dy) from its centre."""
    if shape == "square":
        d = np.maximum(np.abs(dx), np.abs(dy)) - r * 0.85
    elif shape == "disc":
        d = np.hypot(dx, dy) - r
    elif shape == "ring":
        d = np.abs(np.hypot(dx, dy) - r * 0.75) - r * 0.3
    elif shape == "triangle":  # upward equilateral triangle: the largest of three half-plane distances
        d = np.maximum.reduce([dy - r * 0.5, -0.866 * dx - 0.5 * dy - r * 0.5, 0.866 * dx - 0.5 * dy - r * 0.5])
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {_SHAPES}")
    return np.clip(0.5 - d, 0.0, 1.0)  # one-pixel ramp at the edge


def render_motion_clip(
    label: int, rng: np.random.Generator, num_frames: int = 16, size: int = 32
) -> Tuple[np.ndarray, np.ndarray]:
    """One clip of class ``label``: uint8 frames (T, size, size, 3) and the shape's centre per frame (T, 2) as (x, y).

    Everything except the direction of motion is random: shape, colours, radius, speed, start point,
    background level and noise.
    """
    if not 0 <= label < len(MOTION_CLASS_NAMES):
        raise ValueError(f"label must be in 0..{len(MOTION_CLASS_NAMES) - 1}, got {label}")
    if num_frames < 2 or size < 12:
        raise ValueError(f"motion clips need at least 2 frames of at least 12x12 pixels, got {num_frames} x {size}")
    name = MOTION_CLASS_NAMES[label]
    shape = _SHAPES[rng.integers(len(_SHAPES))]
    r = rng.uniform(0.1, 0.16) * size
    t = np.arange(num_frames, dtype=np.float64)
    margin = r + 1.0
    if name in _DIRECTIONS:
        ux, uy = _DIRECTIONS[name]
        travel = rng.uniform(0.45, 0.8) * (size - 2 * margin)  # total distance over the clip
        step = travel / (num_frames - 1)
        along0 = rng.uniform(margin, size - margin - travel)  # start so the whole path stays in the frame
        across = rng.uniform(margin, size - margin)
        along = along0 + step * t
        if ux > 0 or uy > 0:
            pos_along = along
        else:  # left / up: the same path walked from the other end
            pos_along = (size - along)
        xs, ys = (pos_along, np.full_like(t, across)) if ux != 0 else (np.full_like(t, across), pos_along)
    else:
        sign = 1.0 if name == "clockwise" else -1.0  # y points down, so increasing angle turns clockwise on screen
        radius = rng.uniform(0.18, 0.3) * size
        cx = size / 2 + rng.uniform(-1, 1) * (size / 2 - radius - margin) * 0.5
        cy = size / 2 + rng.uniform(-1, 1) * (size / 2 - radius - margin) * 0.5
        sweep = rng.uniform(0.9, 1.5) * math.pi
        phase = rng.uniform(0, 2 * math.pi)
        angle = phase + sign * sweep * t / (num_frames - 1)
        xs, ys = cx + radius * np.cos(angle), cy + radius * np.sin(angle)
    background = rng.uniform(0.0, 0.35, size=3)
    colour = rng.uniform(0.55, 1.0, size=3)
    noise = rng.uniform(0.0, 0.08)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    frames = np.empty((num_frames, size, size, 3), dtype=np.float64)
    for i in range(num_frames):
        cover = _shape_coverage(shape, xx - xs[i], yy - ys[i], r)[..., None]
        frames[i] = background * (1 - cover) + colour * cover
    frames += rng.normal(0.0, noise, size=frames.shape)
    clip = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
    return clip, np.stack([xs, ys], axis=1)


class MotionClips(Dataset):
    """The generated motion-direction set: ``clips_per_class`` clips of each of the six classes.

    Items are ``(clip, label)`` with ``clip`` a uint8 tensor (T, H, W, 3) when ``transform`` is None, else
    whatever ``transform(clip_uint8)`` returns (e.g. :class:`unireplknet.modalities.video.ClipTransform`).
    Clip ``i`` is rendered on demand from a generator seeded with (split seed, ``seed``, ``i``), so two
    instances with the same arguments hold identical clips.
    """

    def __init__(self, split: str = "train", clips_per_class: int = 80, num_frames: int = 16, size: int = 32,
                 seed: int = 0, transform=None):
        if split not in MOTION_SPLIT_SEEDS:
            raise ValueError(f"split must be one of {sorted(MOTION_SPLIT_SEEDS)}, got {split!r}")
        if clips_per_class < 1:
            raise ValueError(f"clips_per_class must be >= 1, got {clips_per_class}")
        self.split, self.clips_per_class, self.num_frames, self.size = split, clips_per_class, num_frames, size
        self.seed, self.transform = seed, transform
        self.classes: List[str] = list(MOTION_CLASS_NAMES)
        self.targets: List[int] = [i % len(self.classes) for i in range(len(self))]

    def __len__(self) -> int:
        return self.clips_per_class * len(MOTION_CLASS_NAMES)

    def render(self, index: int) -> Tuple[np.ndarray, np.ndarray, int]:
        """Frames (T, H, W, 3) uint8, the shape's centre track (T, 2) and the label of clip ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        label = self.targets[index]
        rng = np.random.default_rng([MOTION_SPLIT_SEEDS[self.split], self.seed, index])
        frames, track = render_motion_clip(label, rng, self.num_frames, self.size)
        return frames, track, label

    def __getitem__(self, index: int):
        frames, _, label = self.render(index)
        clip = torch.from_numpy(frames)
        return (self.transform(clip) if self.transform is not None else clip), label
