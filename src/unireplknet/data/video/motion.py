"""Generated motion clips: a shape moving in one of six ways, in an easy and a hard version.

**easy** (the default; :data:`MOTION_CLASS_NAMES`): one bright shape over a flat noisy background.

The label is the *direction of motion* (right, left, down, up, clockwise orbit, counter-clockwise orbit),
never the appearance: shape, colour, size, speed, start position and background are drawn at random for
every clip, independently of the class. Opposite classes are time reversals of each other (a "right" clip
played backwards is a valid "left" clip, a clockwise orbit backwards is counter-clockwise), so the average
of the frames — or any statistic that ignores frame order — carries no information about the label: a
classifier has to compare frames in order. Clip ``i`` of a split is drawn from its own seeded generator,
so the data set is the same on every machine and costs no disk space.

**hard** (``difficulty="hard"``; :data:`HARD_MOTION_CLASS_NAMES`, :func:`render_hard_motion_clip`): the same
idea made hard enough that following the brightest pixels no longer works. A textured background (three
colour gratings) and the whole scene move with a panning, shaking camera; one or two *distractor* objects
sit still in the scene (they move only with the camera); object and distractors are drawn from the same
shapes, sizes and colours, darker or brighter than the background at random. The six classes differ in the
target's motion *relative to the scene* only: moving right / left at constant speed, spinning clockwise /
counter-clockwise in place, speeding up / slowing down along a random heading. Opposite classes are again
time reversals of each other. The object shapes of the three splits are disjoint
(:data:`HARD_MOTION_SHAPES`: train L, T, F; val arrow, key; test half-disc, step), so held-out clips show
objects never seen in training: a classifier must recognise the motion, not the object.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["MOTION_CLASS_NAMES", "HARD_MOTION_CLASS_NAMES", "HARD_MOTION_SHAPES", "MOTION_DIFFICULTIES",
           "MOTION_SPLIT_SEEDS", "render_motion_clip", "render_hard_motion_clip", "MotionClips"]

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


# ----------------------------------------------------------------------------------------------- hard version
HARD_MOTION_CLASS_NAMES: Tuple[str, ...] = ("right", "left", "spin-clockwise", "spin-counterclockwise",
                                            "speeding-up", "slowing-down")
#: Object shapes of each split, disjoint: the held-out splits show objects never seen in training. Every shape
#: looks different after a small rotation (no circular symmetry), so a spin is visible.
HARD_MOTION_SHAPES: Dict[str, Tuple[str, ...]] = {"train": ("L", "T", "F"), "val": ("arrow", "key"),
                                                  "test": ("half-disc", "step")}
MOTION_DIFFICULTIES: Tuple[str, ...] = ("easy", "hard")

# Shapes as unions of boxes (centre u, v; half sizes) and discs (centre u, v; radius), in units of the object
# radius, in the object's own frame (u along its heading, v across).
_HARD_BOXES: Dict[str, Tuple[Tuple[float, float, float, float], ...]] = {
    "L": ((-0.6, 0.0, 0.3, 0.9), (0.0, 0.65, 0.9, 0.25)),
    "T": ((0.0, -0.65, 0.9, 0.25), (0.0, 0.15, 0.28, 0.85)),
    "F": ((-0.6, 0.0, 0.25, 0.9), (0.0, -0.7, 0.85, 0.2), (-0.15, 0.0, 0.6, 0.18)),
    "key": ((-0.25, 0.0, 0.75, 0.2),),
    "step": ((-0.45, -0.4, 0.5, 0.35), (0.45, 0.4, 0.5, 0.35), (0.0, 0.0, 0.3, 0.2)),
}
_HARD_DISCS: Dict[str, Tuple[Tuple[float, float, float], ...]] = {"key": ((0.6, 0.0, 0.4),)}
_ARROW = np.array([(1.0, 0.0), (-0.8, 0.75), (-0.8, -0.75)])  # an isosceles triangle pointing along u


def _hard_shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (units of the radius, negative inside) of a hard-set shape at (u, v)."""
    if shape == "half-disc":  # the flat side across v = 0.4, the round side towards -v
        return np.maximum(np.hypot(u, v - 0.4) - 1.0, v - 0.4)
    if shape == "arrow":
        d = np.full(u.shape, -np.inf)
        for a, b in zip(_ARROW, np.roll(_ARROW, -1, axis=0)):
            edge = b - a
            normal = np.array([edge[1], -edge[0]]) / np.hypot(*edge)  # outward for this vertex order
            d = np.maximum(d, (u - a[0]) * normal[0] + (v - a[1]) * normal[1])
        return d
    if shape not in _HARD_BOXES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {sorted(s for v in HARD_MOTION_SHAPES.values() for s in v)}")
    d = np.full(u.shape, np.inf)
    for cu, cv, hu, hv in _HARD_BOXES[shape]:
        d = np.minimum(d, np.maximum(np.abs(u - cu) - hu, np.abs(v - cv) - hv))
    for cu, cv, radius in _HARD_DISCS.get(shape, ()):
        d = np.minimum(d, np.hypot(u - cu, v - cv) - radius)
    return d


_SHAPE_CENTRES: Dict[str, Tuple[float, float]] = {}


def _shape_centre(shape: str) -> Tuple[float, float]:
    """The centre of area of a shape in its own frame (so a spinning shape turns about its centre of area)."""
    if shape not in _SHAPE_CENTRES:
        grid = np.linspace(-1.6, 1.6, 321)
        u, v = np.meshgrid(grid, grid)
        inside = _hard_shape_distance(shape, u, v) < 0
        _SHAPE_CENTRES[shape] = (float(u[inside].mean()), float(v[inside].mean()))
    return _SHAPE_CENTRES[shape]


def _hard_coverage(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float,
                   angle: float) -> np.ndarray:
    """Anti-aliased coverage of a shape of radius ``r`` with its centre of area at (cx, cy), turned by ``angle``
    (radians; positive turns clockwise on screen, since y points down)."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xx - cx, yy - cy
    cu, cv = _shape_centre(shape)
    u, v = (c * dx + s * dy) / r + cu, (-s * dx + c * dy) / r + cv
    return np.clip(0.5 - _hard_shape_distance(shape, u, v) * r, 0.0, 1.0)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour at least 0.25 away from the background's luminance, darker or brighter at random."""
    for _ in range(100):
        colour = rng.uniform(0.0, 1.0, size=3)
        if abs(colour.mean() - background.mean()) >= 0.25:
            return colour
    return np.where(background.mean() > 0.5, 0.05, 0.95) * np.ones(3)


def render_hard_motion_clip(label: int, rng: np.random.Generator, num_frames: int = 4, size: int = 32,
                            split: str = "train", camera_scale: float = 1.0, texture_scale: float = 1.0,
                            distractors: bool = True, shapes: Optional[Sequence[str]] = None
                            ) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """One hard clip of class ``label`` (:data:`HARD_MOTION_CLASS_NAMES`) with the objects of ``split``.

    ``camera_scale``, ``texture_scale`` and ``distractors`` switch parts of the difficulty down for ablations
    (0 = a still camera, a flat background; False = no distractor objects), and ``shapes`` replaces the split's
    object shapes (e.g. the training shapes on a held-out split); the random draws stay the same, so the clips
    differ from the full ones only in that part.

    Returns uint8 frames (T, size, size, 3), the target's centre in the image per frame (T, 2) as (x, y), and
    ``info``: ``camera`` (T, 2), the scene's displacement in the image (the target's motion relative to the
    scene is ``track - camera``); ``angle`` (T,), the target's orientation in radians (clockwise positive);
    ``target_mask`` (T, size, size), the target's coverage; ``shape``, the target's shape name.
    """
    if not 0 <= label < len(HARD_MOTION_CLASS_NAMES):
        raise ValueError(f"label must be in 0..{len(HARD_MOTION_CLASS_NAMES) - 1}, got {label}")
    if num_frames < 3 or size < 16:
        raise ValueError(f"hard motion clips need at least 3 frames (speeding up needs two steps) of at least "
                         f"16x16 pixels, got {num_frames} x {size}")
    if split not in HARD_MOTION_SHAPES:
        raise ValueError(f"split must be one of {sorted(HARD_MOTION_SHAPES)}, got {split!r}")
    name = HARD_MOTION_CLASS_NAMES[label]
    shapes = tuple(shapes) if shapes else HARD_MOTION_SHAPES[split]
    steps = num_frames - 1
    unit = size / 32.0  # all motion is drawn for 32-pixel frames and scaled
    r = rng.uniform(0.13, 0.19) * size
    # The target's path in scene coordinates, from 0, and its orientation.
    angle0 = rng.uniform(0, 2 * math.pi)
    angles = np.full(num_frames, angle0)
    if name in ("right", "left"):
        heading = (0.0 if name == "right" else math.pi) + rng.uniform(-0.25, 0.25)
        step_lengths = np.full(steps, rng.uniform(0.3, 0.4) * size / steps)
    elif name in ("speeding-up", "slowing-down"):
        heading = rng.uniform(0, 2 * math.pi)
        ratio = rng.uniform(3.0, 5.0)  # last step / first step
        growth = ratio ** (np.arange(steps) / max(1, steps - 1))
        step_lengths = growth / growth.sum() * rng.uniform(0.3, 0.42) * size
        if name == "slowing-down":
            step_lengths = step_lengths[::-1]
    else:  # spin in place, 2.1-3 rad (120-170 degrees) over the clip
        heading, step_lengths = 0.0, np.zeros(steps)
        sweep = rng.uniform(2.1, 3.0) * (1.0 if name == "spin-clockwise" else -1.0)
        angles = angle0 + sweep * np.arange(num_frames) / steps
    along = np.concatenate([[0.0], np.cumsum(step_lengths)])
    path = np.stack([along * math.cos(heading), along * math.sin(heading)], axis=1)
    # The camera: a pan of random direction and speed plus shake; everything in the scene moves by ``camera``.
    pan_dir = rng.uniform(0, 2 * math.pi)
    pan = rng.uniform(0.0, 0.5) * unit * np.array([math.cos(pan_dir), math.sin(pan_dir)])
    shake = rng.normal(0.0, 0.15 * unit, size=(steps, 2))
    camera = np.concatenate([np.zeros((1, 2)), np.cumsum(pan + shake, axis=0)]) * camera_scale
    image_path = path + camera
    margin = 1.1 * r
    lo, hi = margin - image_path.min(0), size - margin - image_path.max(0)
    start = np.where(lo < hi, rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi)), (lo + hi) / 2)
    track = image_path + start
    # Background: mean colour plus three colour gratings, drawn in scene coordinates (so the camera moves it).
    background = rng.uniform(0.2, 0.8, size=3)
    gratings = []
    for _ in range(3):
        direction = rng.uniform(0, 2 * math.pi)
        freq = rng.uniform(0.25, 0.9) / unit
        tint = rng.normal(size=3)
        tint *= rng.uniform(0.03, 0.08) / np.linalg.norm(tint) * math.sqrt(3)
        gratings.append((freq * math.cos(direction), freq * math.sin(direction), rng.uniform(0, 2 * math.pi),
                         tint * texture_scale))
    # Distractors: objects of the same split's shapes, still in the scene, kept off the target's path.
    show_distractors, distractors = distractors, []
    for _ in range(int(rng.integers(1, 3))):
        dr = rng.uniform(0.13, 0.19) * size
        for _ in range(20):
            pos = rng.uniform(0, size, size=2)  # scene position (the camera starts at 0)
            if np.min(np.linalg.norm(track - camera - pos, axis=1)) > 0.9 * (r + dr):
                break
        distractors.append((shapes[rng.integers(len(shapes))], pos, dr, rng.uniform(0, 2 * math.pi)))
    target_shape = shapes[rng.integers(len(shapes))]
    target_colour = _contrasting_colour(rng, background)
    distractor_colours = [_contrasting_colour(rng, background) for _ in distractors]
    noise = rng.uniform(0.01, 0.05)
    gain = rng.uniform(0.93, 1.07, size=num_frames)  # a little flicker of the illumination
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    frames = np.empty((num_frames, size, size, 3))
    masks = np.empty((num_frames, size, size))
    for t in range(num_frames):
        sx, sy = xx - camera[t, 0], yy - camera[t, 1]  # scene coordinates of every pixel
        frame = np.broadcast_to(background, (size, size, 3)).copy()
        for fx, fy, phase, tint in gratings:
            frame += np.sin(fx * sx + fy * sy + phase)[..., None] * tint
        for (shape, pos, dr, da), colour in zip(distractors if show_distractors else [], distractor_colours):
            cover = _hard_coverage(shape, xx, yy, pos[0] + camera[t, 0], pos[1] + camera[t, 1], dr, da)[..., None]
            frame = frame * (1 - cover) + colour * cover
        masks[t] = _hard_coverage(target_shape, xx, yy, track[t, 0], track[t, 1], r, angles[t])
        frame = frame * (1 - masks[t][..., None]) + target_colour * masks[t][..., None]
        frames[t] = frame * gain[t]
    frames += rng.normal(0.0, noise, size=frames.shape)
    clip = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
    return clip, track, dict(camera=camera, angle=angles, target_mask=masks, shape=target_shape)


class MotionClips(Dataset):
    """The generated motion set: ``clips_per_class`` clips of each of the six classes.

    Items are ``(clip, label)`` with ``clip`` a uint8 tensor (T, H, W, 3) when ``transform`` is None, else
    whatever ``transform(clip_uint8)`` returns (e.g. :class:`unireplknet.modalities.video.ClipTransform`).
    Clip ``i`` is rendered on demand from a generator seeded with (split seed, ``seed``, ``i``), so two
    instances with the same arguments hold identical clips. ``difficulty="hard"`` gives the hard version
    (module docstring; its classes are :data:`HARD_MOTION_CLASS_NAMES`, its objects those of ``split``).
    """

    def __init__(self, split: str = "train", clips_per_class: int = 80, num_frames: int = 16, size: int = 32,
                 seed: int = 0, transform=None, difficulty: str = "easy", hard_options: Optional[Dict[str, Any]] = None):
        if split not in MOTION_SPLIT_SEEDS:
            raise ValueError(f"split must be one of {sorted(MOTION_SPLIT_SEEDS)}, got {split!r}")
        if clips_per_class < 1:
            raise ValueError(f"clips_per_class must be >= 1, got {clips_per_class}")
        if difficulty not in MOTION_DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {MOTION_DIFFICULTIES}, got {difficulty!r}")
        self.split, self.clips_per_class, self.num_frames, self.size = split, clips_per_class, num_frames, size
        self.seed, self.transform, self.difficulty = seed, transform, difficulty
        self.hard_options = dict(hard_options or {})  # keyword arguments of render_hard_motion_clip (ablations)
        self.classes: List[str] = list(HARD_MOTION_CLASS_NAMES if difficulty == "hard" else MOTION_CLASS_NAMES)
        self.targets: List[int] = [i % len(self.classes) for i in range(len(self))]
        self._cache: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.clips_per_class * len(self.classes)

    def render(self, index: int) -> Tuple[np.ndarray, np.ndarray, int]:
        """Frames (T, H, W, 3) uint8, the shape's centre track (T, 2) and the label of clip ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        label = self.targets[index]
        if self.difficulty == "easy":
            rng = np.random.default_rng([MOTION_SPLIT_SEEDS[self.split], self.seed, index])
            frames, track = render_motion_clip(label, rng, self.num_frames, self.size)
            return frames, track, label
        if index not in self._cache:  # hard clips cost more to draw; a set of hundreds is a few MB
            rng = np.random.default_rng([MOTION_SPLIT_SEEDS[self.split], self.seed, index, 1])
            self._cache[index] = render_hard_motion_clip(label, rng, self.num_frames, self.size, self.split,
                                                         **self.hard_options)[:2]
        frames, track = self._cache[index]
        return frames, track, label

    def __getitem__(self, index: int):
        frames, _, label = self.render(index)
        clip = torch.from_numpy(frames.copy())
        return (self.transform(clip) if self.transform is not None else clip), label
