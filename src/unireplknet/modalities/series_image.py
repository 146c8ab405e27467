"""Series → image: the only part of time-series classification that is not the image network itself.

A series is ``(channels, length)`` with NaN for missing values, any length of at least 2. :func:`prepare_series`
makes every series alike — missing values filled by linear interpolation (a channel with no value at all becomes
zeros, i.e. its mean after normalisation), each channel z-normalised on its own (the archive's convention: scale
and offset carry no class information in most problems), then resampled linearly to ``length`` steps, so series
of unequal length become equal. :func:`series_to_image` then draws the prepared series as an image:

``rows`` (the default)
    one row per channel, the time axis as the image width, each row repeated so the image is at least
    ``height`` rows tall: ``(1, channels·r, length)``. The network's 2-D kernels see time along the width and
    neighbouring channels along the height; on a univariate series every row is the same, so the first layers act
    as long 1-D convolutions. A second image channel, all ones (``level_plane``), keeps the series' local level
    visible to the network (see :class:`SeriesImageConfig`).
``gaf``
    the Gramian angular summation field of each channel (Wang & Oates, 2015), ``cos(φ_i + φ_j)`` with
    ``φ = arccos`` of the channel min-max scaled to [-1, 1], on the series resampled to ``gaf_size`` steps:
    ``(channels, gaf_size, gaf_size)``. Every pixel pairs two time steps, so a local kernel sees relations across
    the whole series, at the price of a coarser time grid.

docs/tsc.md compares the two on the validation splits (why ``rows`` is the default).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

import numpy as np

__all__ = ["SeriesImageConfig", "SERIES_MAPPINGS", "prepare_series", "series_to_image", "image_shape"]

SERIES_MAPPINGS = ("rows", "gaf")


@dataclass
class SeriesImageConfig:
    """How a problem's series become images; stored in checkpoints (``data_config``) so evaluation and prediction
    draw them the same way."""

    mapping: str = "rows"
    channels: int = 1
    length: int = 256  # time steps after resampling (rows: the image width)
    height: int = 32  # rows: the least image height (each channel's row is repeated to reach it; the
    # network's stride is 32)
    gaf_size: int = 64  # gaf: the image side
    #: rows: add a constant image channel of ones. Why: the stem's first 3×3 conv sees only three distinct
    #: values per pixel on repeated rows, and the channels-first LayerNorm after it divides every pixel by its own
    #: scale — with the zero-initialised conv bias the network starts exactly blind to the series' local level
    #: and amplitude (on GunPoint it then fits TRAIN and sits at chance on validation: docs/tsc.md). The constant
    #: channel is a learned per-pixel offset inside the conv that the LayerNorm cannot divide out.
    level_plane: bool = True

    def __post_init__(self) -> None:
        if self.mapping not in SERIES_MAPPINGS:
            raise ValueError(f"unknown series mapping {self.mapping!r}; choose one of {', '.join(SERIES_MAPPINGS)}")
        for name in ("channels", "length", "height", "gaf_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.length < 2:
            raise ValueError(f"length must be at least 2, got {self.length}")

    @property
    def in_chans(self) -> int:
        """Input channels of the network."""
        return (2 if self.level_plane else 1) if self.mapping == "rows" else self.channels

    @property
    def rows_per_channel(self) -> int:
        return max(1, math.ceil(self.height / self.channels))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SeriesImageConfig":
        known = {k: d[k] for k in ("mapping", "channels", "length", "height", "gaf_size", "level_plane") if k in d}
        known.setdefault("level_plane", False)  # written before the plane existed: images had one channel
        return cls(**known)


def image_shape(cfg: SeriesImageConfig) -> Tuple[int, int, int]:
    """``(in_chans, height, width)`` of the images of ``cfg``."""
    if cfg.mapping == "rows":
        return (cfg.in_chans, cfg.channels * cfg.rows_per_channel, cfg.length)
    return (cfg.channels, cfg.gaf_size, cfg.gaf_size)


def _fill_missing(channel: np.ndarray) -> np.ndarray:
    known = ~np.isnan(channel)
    if known.all():
        return channel
    if not known.any():
        return np.zeros_like(channel)
    steps = np.arange(len(channel))
    return np.interp(steps, steps[known], channel[known])  # edges take the nearest known value


def _resample(values: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of each row of ``values`` (C, T) to ``length`` steps, end points kept."""
    source = np.linspace(0.0, 1.0, values.shape[1])
    target = np.linspace(0.0, 1.0, length)
    return np.stack([np.interp(target, source, row) for row in values])


def prepare_series(series: np.ndarray, length: int) -> np.ndarray:
    """Fill missing values, z-normalise each channel, resample to ``length``: ``(C, T)`` → float32 ``(C, length)``."""
    values = np.asarray(series, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"a series is (channels, length), got shape {values.shape}")
    if values.shape[1] < 2:
        raise ValueError(f"a series needs at least 2 values to be resampled, got {values.shape[1]}")
    filled = np.stack([_fill_missing(row) for row in values])
    mean = filled.mean(axis=1, keepdims=True)
    std = filled.std(axis=1, keepdims=True)
    # A constant channel carries only its offset, which normalisation removes: it becomes zeros, not NaN.
    normalised = (filled - mean) / np.where(std > 1e-8, std, 1.0)
    return _resample(normalised, length).astype(np.float32)


def series_to_image(series: np.ndarray, cfg: SeriesImageConfig) -> np.ndarray:
    """A raw series ``(C, T)`` (NaN for missing values) as a float32 image of :func:`image_shape`."""
    if series.shape[0] != cfg.channels:
        raise ValueError(f"the series has {series.shape[0]} channel(s), the model was trained on {cfg.channels}")
    if cfg.mapping == "rows":
        prepared = prepare_series(series, cfg.length)
        rows = np.repeat(prepared, cfg.rows_per_channel, axis=0)[None]
        return np.concatenate([rows, np.ones_like(rows)]) if cfg.level_plane else rows
    prepared = prepare_series(series, cfg.gaf_size).astype(np.float64)
    low, high = prepared.min(axis=1, keepdims=True), prepared.max(axis=1, keepdims=True)
    scaled = np.where(high > low, 2.0 * (prepared - low) / np.where(high > low, high - low, 1.0) - 1.0, 0.0)
    scaled = np.clip(scaled, -1.0, 1.0)
    sine = np.sqrt(1.0 - scaled ** 2)
    # cos(a + b) = cos a cos b - sin a sin b, with cos φ = x and sin φ = sqrt(1 - x²)
    gaf = scaled[:, :, None] * scaled[:, None, :] - sine[:, :, None] * sine[:, None, :]
    return gaf.astype(np.float32)
