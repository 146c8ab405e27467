"""``unireplknet forecast-train | forecast-eval | forecast-make-grid`` (registered by :mod:`unireplknet.cli`).

``unireplknet forecast-train`` with no arguments trains on the embedded Mauna Loa CO2 series and prints the
test MSE/MAE next to the last-value and seasonal-naive baselines; ``--data synthetic-grid`` uses the synthetic
hourly station grid; ``--data /path/to/global_temp --preset paper`` runs the paper's Global Temp setting.
"""
from __future__ import annotations

import argparse
import json
import sys

from ._cli_common import add_engine_arguments, engine_options, print_epoch_end

__all__ = ["add_subcommands"]

def cmd_forecast_train(args: argparse.Namespace) -> int:
    from .forecasting import ForecastTrainConfig, train_forecaster

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    options = engine_options(args, **{k: getattr(args, k) for k in (
        "data", "variable", "time_column", "freq", "nan_policy", "seq_len", "label_len", "pred_len", "enc_in",
        "d_model", "seasonal_period", "dropout", "patience", "train_stride", "preset")})
    if args.no_coords:
        options["use_coords"] = False
    if args.constant_lr:
        options["lr_halving"] = False
    cfg = ForecastTrainConfig.for_data(**options)
    print(f"unireplknet forecast-train: {cfg.data or 'co2'}, input {cfg.seq_len} -> forecast {cfg.pred_len}, "
          f"{cfg.epochs} epochs -> {cfg.output}", file=sys.stderr)
    r = train_forecaster(cfg, callbacks=[print_epoch_end])
    print(f"{r.description}: test windows {r.test['windows']}, best epoch {r.best_epoch}, {r.wall_s:.0f} s")
    print(r.table())
    if args.json:
        print(json.dumps(dict(test=r.test, baselines=r.baselines, best_epoch=r.best_epoch)))
    return 0


def cmd_forecast_eval(args: argparse.Namespace) -> int:
    from ..modalities.timeseries import WindowDataset
    from .forecasting import _loader, build_forecast_splits, evaluate_baselines, evaluate_forecaster, load_forecaster

    model, cfg = load_forecaster(args.checkpoint)
    if args.data is not None:
        cfg.data = args.data
    splits, description = build_forecast_splits(cfg)
    series = splits[args.split]
    if series.num_variables != model.num_variables:
        raise ValueError(f"station counts differ: the checkpoint forecasts {model.num_variables} variables, "
                         f"the data has {series.num_variables}")
    loader = _loader(WindowDataset(series, cfg.seq_len, cfg.label_len, cfg.pred_len), 64, False, 0)
    from ..engine.distributed import resolve_device

    device = resolve_device(args.device)
    metrics = evaluate_forecaster(model.to(device), loader, device)
    baselines = evaluate_baselines(loader, cfg.pred_len, cfg.seasonal_period)
    if args.json:
        print(json.dumps(dict(model=metrics, baselines=baselines)))
    else:
        print(f"{description} [{args.split}]: MSE {metrics['mse']:.4f}, MAE {metrics['mae']:.4f} "
              f"on {metrics['windows']} windows")
        for name, m in baselines.items():
            print(f"  {name}: MSE {m['mse']:.4f}, MAE {m['mae']:.4f}")
    return 0


def cmd_forecast_make_grid(args: argparse.Namespace) -> int:
    from ..modalities.timeseries import chronological_split, make_synthetic_station_grid, write_global_station_folder

    s = make_synthetic_station_grid(args.stations, args.days, args.seed)
    root = write_global_station_folder(args.output, chronological_split(s, 0), args.variable)
    print(f"wrote {s.description} in the Global Temp layout to {root}")
    return 0


def add_subcommands(sub: "argparse._SubParsersAction") -> None:
    """Add ``forecast-train``, ``forecast-eval`` and ``forecast-make-grid`` to the main parser."""
    p = sub.add_parser("forecast-train", help="time-series forecasting (default: embedded CO2; synthetic-grid; "
                       "Global Temp/Wind folder; CSV; npy)",
                       description="Train the UniRepLKNet forecaster; prints test MSE/MAE next to the last-value and "
                                   "seasonal-naive baselines.")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help="co2 (default), synthetic-grid, a Global Temp/Wind folder, a .csv or .npy/.npz")
    g.add_argument("--variable", default="temp", help="temp or wind (Global layout file prefix)")
    g.add_argument("--time-column", default="date", help="CSV timestamp column")
    g.add_argument("--freq", default=None, choices=("h", "d", "w", "m"), help="calendar features (default: the data's)")
    g.add_argument("--nan-policy", default="error", choices=("error", "interpolate"),
                   help="missing values: refuse (error) or fill linearly (interpolate)")
    g.add_argument("--seq-len", type=int, default=None, help="input steps (48)")
    g.add_argument("--label-len", type=int, default=None, help="decoder warm-up steps (24)")
    g.add_argument("--pred-len", type=int, default=None, help="forecast steps (24)")
    g.add_argument("--seasonal-period", type=int, default=None, help="for the seasonal-naive baseline (24 hourly, 12 monthly)")
    g = p.add_argument_group("model")
    g.add_argument("--preset", "--recipe", dest="preset", default=None, choices=("paper",),
                   help="the paper's Global Temp/Wind configuration")
    g.add_argument("--enc-in", type=int, default=None, help="stations per node (paper: 11)")
    g.add_argument("--d-model", type=int, default=None, help="embedding width (paper 768; default 48)")
    g.add_argument("--no-coords", action="store_true", help="no station-coordinate embedding")
    g.add_argument("--dropout", type=float, default=None, help="dropout of the embedding and the head (0.05)")
    g = p.add_argument_group("forecasting recipe")
    g.add_argument("--constant-lr", action="store_true", help="do not halve the learning rate every epoch")
    g.add_argument("--patience", type=int, default=None,
                   help="early stop after N evaluations without a better validation loss (3)")
    g.add_argument("--train-stride", type=int, default=None, help="use every N-th training window (1)")
    add_engine_arguments(p, dict(
        weight_decay="0", min_lr="unused: a step schedule", 
        model="custom (a tiny net) or unireplknet_a … unireplknet_s", drop_path="0; paper 0.4",
        epochs="co2 15; synthetic-grid 6; paper 10", batch_size="co2 16; synthetic-grid 8; paper 1",
        lr="Adam, 1e-3; paper 1e-4; halved every epoch", warmup_epochs="0", workers="0",
        output="runs/forecast-co2, runs/forecast-grid or runs/forecast"))
    g.add_argument("--json", action="store_true", help="also print the results as JSON")
    p.set_defaults(func=cmd_forecast_train)

    p = sub.add_parser("forecast-eval", help="MSE/MAE of a forecasting checkpoint and the baselines on a split")
    p.add_argument("checkpoint", help="best.pth or last.pth of a forecast-train run")
    p.add_argument("--data", default=None, help="default: the data the checkpoint was trained on")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="which split to score (test)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda … (auto)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_forecast_eval)

    p = sub.add_parser("forecast-make-grid", help="write the synthetic station grid in the Global Temp layout")
    p.add_argument("output", help="destination folder")
    p.add_argument("--stations", type=int, default=22, help="stations of the grid (22)")
    p.add_argument("--days", type=int, default=100, help="days of hourly values (100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--variable", default="temp", help="file prefix: temp or wind (temp)")
    p.set_defaults(func=cmd_forecast_make_grid)
