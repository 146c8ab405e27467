#!/usr/bin/env python3
"""Draw the figures of docs/audio.md and docs/timeseries.md (PNG via torchvision; no matplotlib needed).

* ``docs/audio_logmel.png``: the normalised 1 × 128 × 64 log-mel images of the ten embedded digits spoken by
  one test voice; frequency runs upwards (row 0 of the tensor — the lowest mel band — is drawn at the bottom),
  time to the right.
* ``docs/timeseries_image.png``: one CO2 input window as the 48 × 48 image the backbone sees (the token
  embedding of a trained forecaster, or a freshly initialised one when no checkpoint is given).
* ``docs/timeseries_forecast.png``: that window's 24-month forecast next to the truth and the two baselines.

Usage::

    python scripts/make_modality_figures.py [--forecast-checkpoint runs/forecast-co2/best.pth]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torchvision.io import write_png

ROOT = Path(__file__).resolve().parents[1]

# A perceptually ordered colour ramp (dark blue → teal → yellow), interpolated linearly.
_STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def colourise(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((img - lo) / (hi - lo), 0, 1) * (len(_STOPS) - 1)
    i = np.minimum(t.astype(int), len(_STOPS) - 2)
    f = (t - i)[..., None]
    return (_STOPS[i] * (1 - f) + _STOPS[i + 1] * f).astype(np.uint8)


def save_png(rgb: np.ndarray, path: Path) -> None:
    write_png(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous(), str(path))
    print(f"wrote {path} ({rgb.shape[1]}×{rgb.shape[0]})")


def upscale(rgb: np.ndarray, k: int) -> np.ndarray:
    return rgb.repeat(k, axis=0).repeat(k, axis=1)


def audio_figure(out: Path) -> None:
    from unireplknet.modalities.audio import AudioConfig, compute_norm_stats, spoken_digits_datasets

    cfg = AudioConfig(target_frames=64)
    parts = spoken_digits_datasets(cfg)
    cfg.norm_mean, cfg.norm_std = compute_norm_stats(parts["train"])
    test = parts["test"]
    tiles = []
    for digit in range(10):
        i = test.labels.index(digit)  # the first test voice
        img = test[i][0][0].numpy()[::-1]  # low frequencies at the bottom
        tiles.append(np.pad(colourise(img, -1.2, 1.2), ((2, 2), (2, 2), (0, 0)), constant_values=255))
    grid = np.concatenate([np.concatenate(tiles[:5], 1), np.concatenate(tiles[5:], 0 + 1)], 0)
    save_png(grid, out)


def _draw_line(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray, colour, width: int = 1) -> None:
    h, w = canvas.shape[:2]
    for (x0, y0), (x1, y1) in zip(zip(xs[:-1], ys[:-1]), zip(xs[1:], ys[1:])):
        n = int(max(abs(x1 - x0), abs(y1 - y0))) * 2 + 2
        for t in np.linspace(0, 1, n):
            x, y = int(round(x0 + t * (x1 - x0))), int(round(y0 + t * (y1 - y0)))
            canvas[max(0, y - width // 2):min(h, y + width // 2 + 1), max(0, x - width // 2):min(w, x + width // 2 + 1)] = colour


def timeseries_figures(image_out: Path, forecast_out: Path, checkpoint: str | None) -> None:
    from unireplknet.modalities.timeseries import WindowDataset, chronological_split, co2_series
    from unireplknet.tasks.forecasting import (
        ForecastTrainConfig,
        UniRepLKNetForecaster,
        load_forecaster,
        naive_forecast,
        seasonal_naive_forecast,
    )

    if checkpoint:
        model, cfg = load_forecaster(checkpoint)
    else:
        torch.manual_seed(0)
        cfg = ForecastTrainConfig.for_data()
        model = UniRepLKNetForecaster(1, cfg.seq_len, cfg.pred_len, None, cfg.d_model, "m", None, cfg.model,
                                      cfg.model_kwargs).eval()
    test = WindowDataset(chronological_split(co2_series(), cfg.seq_len)["test"], cfg.seq_len, cfg.label_len,
                         cfg.pred_len)
    x, xm, y, _ = (t[None] for t in test[len(test) // 2])
    with torch.no_grad():
        image, _ = model.embed_image(x, xm)
        pred = model(x, xm)
    img = image[0, 0].numpy()
    lim = float(np.abs(img).max())
    save_png(upscale(colourise(img, -lim, lim), 4), image_out)

    truth = np.concatenate([x[0, :, 0].numpy(), y[0, -cfg.pred_len:, 0].numpy()])
    curves = {
        (0, 0, 0): truth,
        (200, 30, 30): np.concatenate([[truth[cfg.seq_len - 1]], pred[0, :, 0].numpy()]),
        (40, 90, 220): np.concatenate([[truth[cfg.seq_len - 1]], seasonal_naive_forecast(x, cfg.pred_len, 12)[0, :, 0].numpy()]),
        (30, 160, 60): np.concatenate([[truth[cfg.seq_len - 1]], naive_forecast(x, cfg.pred_len)[0, :, 0].numpy()]),
    }
    h, w, margin = 240, 576, 12
    canvas = np.full((h, w, 3), 255, np.uint8)
    lo = min(float(c.min()) for c in curves.values()) - 0.5
    hi = max(float(c.max()) for c in curves.values()) + 0.5
    sx = (w - 2 * margin) / (len(truth) - 1)
    canvas[margin:h - margin, margin + int((cfg.seq_len - 1) * sx)] = (180, 180, 180)  # forecast origin
    for colour, c in curves.items():
        start = 0 if len(c) == len(truth) else cfg.seq_len - 1
        xs = margin + (start + np.arange(len(c))) * sx
        ys = h - margin - (c - lo) / (hi - lo) * (h - 2 * margin)
        _draw_line(canvas, xs, ys, colour, width=2)
    save_png(canvas, forecast_out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forecast-checkpoint", default=None)
    args = ap.parse_args()
    docs = ROOT / "docs"
    audio_figure(docs / "audio_logmel.png")
    timeseries_figures(docs / "timeseries_image.png", docs / "timeseries_forecast.png", args.forecast_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
