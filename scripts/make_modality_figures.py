#!/usr/bin/env python3
"""Draw the figures of docs/audio.md and docs/timeseries.md with matplotlib (the ``plot`` extra).

* ``docs/audio_logmel.png``: the normalised 1 × 128 × 64 log-mel images of the ten embedded digits spoken by
  the first test voice, one panel per digit titled with its class name; time (s) to the right, mel bin upwards,
  one colour bar in the network's input units ``(log-mel − mean) / (2·std)``.
* ``docs/timeseries_image.png``: one CO2 input window as the 48 × 48 image the backbone sees (the token
  embedding of a trained forecaster, or a freshly initialised one when no checkpoint is given): input month
  down, embedding channel across, colour bar in embedding units.
* ``docs/timeseries_forecast.png``: that window's 24-month forecast next to the truth and the two baselines,
  dates on the x axis, CO₂ in ppm, the forecast origin marked.

Usage (≈ 10 s for the training run and ≈ 5 s for the figures: CPU time at one thread, 2026-12-02, this
project's 2-core Intel Xeon VM, i.e. about the wall time on one idle core)::

    unireplknet forecast-train --threads 1 -o runs/forecast-co2
    python scripts/make_modality_figures.py --forecast-checkpoint runs/forecast-co2/best.pth

The output is deterministic: a fixed style, fixed sizes, and no PNG metadata (no date, no version).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PLOT_MISSING = ("the documentation figures are drawn with matplotlib, which is not installed: "
                "pip install 'unireplknet[plot]'")

#: One fixed look for every figure, independent of the user's matplotlibrc.
STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "font.family": "DejaVu Sans", "image.cmap": "viridis", "axes.grid": False,
    "svg.hashsalt": "unireplknet", "path.simplify": True,
}
DPI = 110
#: Forecast curves in the colours the caption in docs/timeseries.md names (black, red, blue, green).
CURVES = {"truth": "#000000", "UniRepLKNet": "#D62728", "seasonal naive (12 months)": "#1F77B4",
          "last value": "#2CA02C"}


def figure_class() -> Any:
    """matplotlib's ``Figure`` class (no pyplot: no global state, no display needed)."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise SystemExit(PLOT_MISSING) from None
    matplotlib.rcParams.update(matplotlib.rcParamsDefault)
    matplotlib.rcParams.update(STYLE)
    return Figure


def save(fig: Any, path: Path) -> None:
    """Write ``fig`` as a 256-colour PNG (a fraction of the RGBA size, no visible change) without metadata,
    atomically: a temporary file renamed into place."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                        dither=Image.Dither.NONE)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        image.save(tmp, format="PNG", optimize=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def audio_figure(out: Path) -> None:
    from unireplknet.data.audio import compute_norm_stats, spoken_digits_datasets
    from unireplknet.modalities.audio import AudioConfig

    Figure = figure_class()
    cfg = AudioConfig(target_frames=64)
    parts = spoken_digits_datasets(cfg)
    cfg.norm_mean, cfg.norm_std = compute_norm_stats(parts["train"])
    test = parts["test"]
    names = test.class_names
    seconds = cfg.target_frames * cfg.frame_shift_ms / 1000  # one frame per frame shift
    extent = (0.0, seconds, -0.5, cfg.num_mel_bins - 0.5)
    fig = Figure(figsize=(8.6, 4.4), layout="constrained")
    axes = fig.subplots(2, 5, sharex=True, sharey=True)
    image = None
    for digit, ax in enumerate(axes.flat):
        i = test.labels.index(digit)  # the first clip of this digit: the first test voice
        img = test[i][0][0].numpy()  # (mel bins, frames); row 0 is the lowest band, drawn at the bottom
        image = ax.imshow(img, origin="lower", aspect="auto", extent=extent, vmin=-1.2, vmax=1.2,
                          interpolation="nearest")
        ax.set_title(f"“{names[digit]}”")
    for ax in axes[1]:
        ax.set_xlabel("time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("mel bin")
    fig.colorbar(image, ax=list(axes.flat), shrink=0.9,
                 label="normalised log-mel, (log-mel − mean) / (2·std)")
    fig.suptitle(f"Embedded spoken digits, first test voice: {cfg.num_mel_bins} mel bins × {cfg.target_frames} "
                 f"frames of {cfg.frame_shift_ms:g} ms\n(the network's input; the flat part after each word is the "
                 f"padding to "
                 f"{seconds:g} s)")
    save(fig, out)


def timeseries_figures(image_out: Path, forecast_out: Path, checkpoint: Optional[str]) -> None:
    from unireplknet.data.timeseries import WindowDataset, chronological_split, co2_series
    from unireplknet.tasks.forecast import (
        ForecastTrainConfig,
        UniRepLKNetForecaster,
        load_forecaster,
        naive_forecast,
        seasonal_naive_forecast,
    )

    Figure = figure_class()
    if checkpoint:
        model, cfg = load_forecaster(checkpoint)
        trained = "trained forecaster"
    else:
        torch.manual_seed(0)
        cfg = ForecastTrainConfig.for_data()
        model = UniRepLKNetForecaster(1, cfg.seq_len, cfg.pred_len, None, cfg.d_model, "m", None, cfg.model,
                                      cfg.model_kwargs).eval()
        trained = "untrained forecaster (no --forecast-checkpoint)"
    split = chronological_split(co2_series(), cfg.seq_len)["test"]
    test = WindowDataset(split, cfg.seq_len, cfg.label_len, cfg.pred_len)
    window = len(test) // 2
    x, xm, y, _ = (t[None] for t in test[window])
    with torch.no_grad():
        image, _ = model.embed_image(x, xm)
        pred = model(x, xm)
    start = int(test.starts[window])
    dates = split.timestamps[start:start + cfg.seq_len + cfg.pred_len].astype("datetime64[D]").astype(object)

    # The tokens (seq_len, d_model) fill the image row by row, so with d_model = seq_len (the default, 48) row t
    # of the image is input month t and column c is embedding channel c.
    img = image[0, 0].reshape(cfg.seq_len, -1).numpy()
    square = tuple(image.shape[-2:]) == img.shape
    lim = float(np.abs(img).max())
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    shown = ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set_xlabel("embedding channel")
    ax.set_ylabel(f"time step (month, {dates[0]:%Y-%m} at the top … {dates[cfg.seq_len - 1]:%Y-%m})")
    what = ("the image the backbone sees" if square
            else f"its tokens (the backbone sees them as {tuple(image.shape[-2:])})")
    ax.set_title(f"A CO₂ input window embedded: {img.shape[0]} months × {img.shape[1]} channels,\n{what} "
                 f"({trained})")
    fig.colorbar(shown, ax=ax, label="embedding value (of the normalised series)")
    fig.tight_layout()
    save(fig, image_out)

    origin = cfg.seq_len - 1
    truth = np.concatenate([x[0, :, 0].numpy(), y[0, -cfg.pred_len:, 0].numpy()])
    forecasts = {
        "UniRepLKNet": pred[0, :, 0].numpy(),
        "seasonal naive (12 months)": seasonal_naive_forecast(x, cfg.pred_len, 12)[0, :, 0].numpy(),
        "last value": naive_forecast(x, cfg.pred_len)[0, :, 0].numpy(),
    }
    fig = Figure(figsize=(7.2, 3.2))
    ax = fig.subplots()
    ax.plot(dates, truth, color=CURVES["truth"], lw=1.6, label="truth (measured)")
    for name, values in forecasts.items():  # each forecast starts from the last input month
        ax.plot(dates[origin:], np.concatenate([[truth[origin]], values]), color=CURVES[name], lw=1.4,
                label=f"{name} forecast")
    ax.axvline(dates[origin], color="0.55", lw=1, ls="--")
    ax.text(dates[origin], 0.03, " forecast origin (last input month)", transform=ax.get_xaxis_transform(),
            va="bottom", ha="left", color="0.35", fontsize=7)
    ax.set_xlabel("date (monthly means)")
    ax.set_ylabel("CO₂ (ppm)")
    ax.set_title(f"Mauna Loa CO₂: {cfg.seq_len} months in → {cfg.pred_len}-month forecast (a test window, "
                 f"{trained})")
    ax.legend(loc="upper left", frameon=False)
    ax.grid(True, color="0.9", lw=0.6)
    fig.tight_layout()
    save(fig, forecast_out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forecast-checkpoint", default=None,
                    help="best.pth of a forecast-train run on the embedded CO2 series (else an untrained model)")
    ap.add_argument("--only", choices=("audio", "timeseries"), default=None, help="draw only these figures")
    args = ap.parse_args()
    figure_class()  # fail before any data is loaded when the extra is missing
    docs = ROOT / "docs"
    if args.only in (None, "audio"):
        audio_figure(docs / "audio_logmel.png")
    if args.only in (None, "timeseries"):
        timeseries_figures(docs / "timeseries_image.png", docs / "timeseries_forecast.png", args.forecast_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
