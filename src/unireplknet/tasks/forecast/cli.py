"""``unireplknet forecast-train | forecast-eval | forecast-make-grid`` (registered by :mod:`unireplknet.cli`).

``unireplknet forecast-train`` with no arguments trains on the embedded Mauna Loa CO2 series and prints the
test MSE/MAE next to the last-value and seasonal-naive baselines; ``--data synthetic-grid`` uses the synthetic
hourly station grid; ``--data /path/to/global_temp --preset paper`` trains the paper's Corrformer + UniRepLKNet
with the paper's recipe (``--preset demo``: the same pipeline sized for the generated data set).
"""
from __future__ import annotations

import argparse
import json
import sys

from ...engine.flags import RATE, add_common_arguments, add_engine_arguments, add_overwrite_argument, engine_options

__all__ = ["add_subcommands"]

def _node_list(text: str):
    try:
        nodes = tuple(int(n) for n in text.replace("x", ",").split(","))
    except ValueError:
        nodes = ()
    if not nodes or min(nodes) < 1:
        raise argparse.ArgumentTypeError(f"--node-list {text!r}: expected positive integers separated by commas, "
                                         "e.g. 7,50 (the paper's 350 nodes)")
    return nodes


def _announce(model) -> None:
    """The size of the model just built, beside the paper's (TPAMI Table 12: 132 M for UniRepLKNet-S)."""
    params = sum(p.numel() for p in model.parameters())
    line = f"model: {type(model).__name__}, {params / 1e6:.2f} M parameters"
    if hasattr(model, "cfg"):
        from .corrformer import PAPER_PARAMS_M

        c = model.cfg
        line += (f" (paper, UniRepLKNet-S encoder on 350 nodes: {PAPER_PARAMS_M:.0f} M); encoder {c.encoder} "
                 f"{c.encoder_size}, {c.node_num} nodes of {c.enc_in} ({','.join(map(str, c.node_list))}), d_model {c.d_model}")
    print(line, file=sys.stderr, flush=True)


def cmd_forecast_train(args: argparse.Namespace) -> int:
    from .linear import ForecastTrainConfig, build_forecast_model, forecast_table, metrics_table, train_forecaster

    options = engine_options(args, **{k: getattr(args, k) for k in (
        "data", "variable", "time_column", "series_column", "target", "freq", "nan_policy", "gap_policy", "seq_len",
        "label_len", "pred_len", "enc_in", "d_model", "seasonal_period", "dropout", "patience", "train_stride",
        "val_stride", "preset", "encoder_size", "encoder", "node_list", "memory_layout", "data_scale", "norm",
        "calendar")})
    if args.no_coords:
        options["use_coords"] = False
    if args.linear_skip:
        options["linear_skip"] = True
    if args.constant_lr and args.halve_lr:
        raise ValueError("--constant-lr and --halve-lr contradict each other: give one of them")
    if args.constant_lr:
        options["lr_halving"] = False
    if args.halve_lr:
        options["lr_halving"] = True
    if (args.encoder_size or args.encoder) and not args.preset:
        raise ValueError("--encoder-size / --encoder choose the Corrformer's encoder: add --preset paper (or demo); "
                         "the linear-head forecaster takes --model unireplknet_a … unireplknet_s instead")
    if args.norm and args.preset:
        raise ValueError("--norm chooses the linear-head forecaster's normalisation; the Corrformer presets keep the "
                         "paper's RevIN: leave out --norm or --preset")
    if args.linear_skip and args.preset:
        raise ValueError("--linear-skip belongs to the linear-head forecaster; the Corrformer presets have the paper's "
                         "decoder instead: leave out --linear-skip or --preset")
    cfg = ForecastTrainConfig.with_recipe(**options)
    if args.dry_run:
        model, task = build_forecast_model(cfg)
        _announce(model)
        print(f"{task.description}: {len(task.windows['train'])} training windows per epoch; --dry-run: not trained")
        return 0
    print(f"unireplknet forecast-train: {cfg.data or 'co2'}, input {cfg.seq_len} -> forecast {cfg.pred_len}, "
          f"{cfg.epochs} epochs -> {cfg.output}", file=sys.stderr)
    r = train_forecaster(cfg, announce=_announce)
    x = r.extras
    if args.json:
        print(json.dumps(dict(test=x["test"], baselines=x["baselines"], best_epoch=r.best_epoch, groups=x["groups"])))
        return 0
    print(f"{x['description']}: test windows {x['test']['windows']}, best epoch {r.best_epoch}, {r.wall_s:.0f} s")
    print(forecast_table(r))
    if x["groups"]:
        print(metrics_table(list(x["groups"].items()), cfg.data_scale))
    return 0


def cmd_forecast_eval(args: argparse.Namespace) -> int:
    from ...engine.distributed import resolve_device
    from .base import build_forecast_splits, forecast_windows
    from .linear import evaluate_run, load_forecaster, metrics_table

    model, cfg = load_forecaster(args.checkpoint)
    if args.data is not None:
        cfg.data = args.data
    if args.data_scale is not None:
        cfg.data_scale = args.data_scale
    splits, description = build_forecast_splits(cfg)
    series = splits[args.split]
    if series.num_variables != model.num_variables:
        raise ValueError(f"station counts differ: the checkpoint forecasts {model.num_variables} variables, "
                         f"the data has {series.num_variables}; pass the --data folder it was trained on")
    windows = forecast_windows(series, cfg)  # with the run's calendar features
    train = forecast_windows(splits["train"], cfg) if args.linear_baseline else None
    groups, baselines = evaluate_run(model, cfg, windows, resolve_device(args.device), train)
    metrics = next(iter(groups.values()))  # every series (the first group)
    if args.json:
        print(json.dumps(dict(model=metrics, groups=groups, baselines=baselines)))
    else:
        scale = f"; physical units = the files' / {cfg.data_scale:g}" if cfg.data_scale != 1 else ""
        print(f"{description} [{args.split}]: {metrics['windows']} windows{scale}")
        print(metrics_table(list(groups.items()), cfg.data_scale))
        print("baselines on the same windows:")
        print(metrics_table(list(baselines.items()), cfg.data_scale))
    return 0


def cmd_forecast_make_grid(args: argparse.Namespace) -> int:
    from ...checkpoint import check_destination_folder
    from ...data.timeseries import chronological_split, make_synthetic_station_grid, write_global_station_folder

    check_destination_folder(args.output, args.overwrite)  # another data set there is not replaced silently
    s = make_synthetic_station_grid(args.stations, args.days, args.seed)
    root = write_global_station_folder(args.output, chronological_split(s, 0), args.variable)
    print(f"wrote {s.description} in the Global Temp layout to {root}")
    return 0


def cmd_forecast_make_weather(args: argparse.Namespace) -> int:
    from ...checkpoint import check_destination_folder
    from ...data.timeseries.global_weather import write

    check_destination_folder(args.output, args.overwrite)
    write(args.output, args.stations, args.days, args.seed)
    print(f"wrote {args.output} ({args.stations} stations, {args.days * 24} hours)")
    return 0


def add_subcommands(sub: "argparse._SubParsersAction") -> None:
    """Add ``forecast-train``, ``forecast-eval``, ``forecast-make-grid`` and ``forecast-make-weather``."""
    p = sub.add_parser("forecast-train", help="time-series forecasting (default: embedded CO2; synthetic-grid; "
                       "Global Temp/Wind folder; CSV; npy)",
                       description="Train the UniRepLKNet forecaster; prints test MSE/MAE next to the last-value and "
                                   "seasonal-naive baselines.")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help="co2 (default), synthetic-grid, synthetic-advection (cross-station chains, "
                   "test on other stations), a Global Temp/Wind folder, a .csv or .npy/.npz")
    g.add_argument("--variable", default="temp", help="temp or wind (Global layout file prefix)")
    g.add_argument("--time-column", default="date", help="CSV timestamp column")
    g.add_argument("--series-column", default=None,
                   help="a long CSV table (one row per station and time): the column naming the station, e.g. "
                        "origin; each station becomes one node of the forecaster")
    g.add_argument("--target", default=None, metavar="COLUMNS",
                   help="CSV columns to forecast, comma-separated, e.g. temp,wind_speed; the other numeric columns "
                        "are inputs (default: every column is forecast)")
    g.add_argument("--freq", default=None, choices=("h", "d", "w", "m"), help="calendar features (default: the data's)")
    g.add_argument("--nan-policy", default="error", choices=("error", "interpolate"),
                   help="missing values: refuse (error) or fill linearly (interpolate)")
    g.add_argument("--gap-policy", default="error", choices=("error", "split", "fill"),
                   help="timestamps further apart than the series' step: refuse (error), keep but let no window "
                        "cross a gap (split), or insert the missing steps as NaN for --nan-policy (fill); unsorted or "
                        "duplicated timestamps are always refused")
    g.add_argument("--seq-len", type=int, default=None, help="input steps (48)")
    g.add_argument("--label-len", type=int, default=None, help="decoder warm-up steps (24)")
    g.add_argument("--pred-len", type=int, default=None, help="forecast steps (24)")
    g.add_argument("--seasonal-period", type=int, default=None, help="for the seasonal-naive baseline (24 hourly, 12 monthly)")
    g = p.add_argument_group("model")
    g.add_argument("--preset", "--recipe", dest="preset", default=None, choices=("paper", "demo"),
                   help="train the paper's Corrformer + UniRepLKNet (TPAMI Table 12) with the paper's recipe on a "
                        "Global Temp/Wind folder; demo: the same pipeline sized for the data of forecast-make-weather")
    g.add_argument("--encoder-size", default=None,
                   help="Corrformer encoder: a, f, p, n, t, s (the paper) … or tiny (default: the preset's)")
    g.add_argument("--encoder", default=None, choices=("unireplknet", "convnext"),
                   help="Corrformer encoder family: unireplknet (the paper) or convnext, timm's ConvNeXt of the same "
                        "depths and widths as a peer backbone (default: unireplknet)")
    g.add_argument("--node-list", type=_node_list, default=None,
                   help="Corrformer node tree, e.g. 7,50 (the paper: 350 nodes of 11 stations); its product × "
                        "--enc-in must equal the number of station series")
    g.add_argument("--memory-layout", default=None, choices=("tokens", "raw"),
                   help="Corrformer memory from the stage-4 map: one token per position (tokens, default) or the "
                        "official code's plain reshape (raw)")
    g.add_argument("--dry-run", action="store_true", help="build the model, print its size and stop")
    g.add_argument("--enc-in", type=int, default=None, help="stations per node (paper: 11)")
    g.add_argument("--d-model", type=int, default=None, help="embedding width (paper 768; default 48)")
    g.add_argument("--no-coords", action="store_true", help="no station-coordinate embedding")
    g.add_argument("--linear-skip", action="store_true",
                   help="linear-head forecaster: add a linear map from each node's normalised input window to its "
                        "forecast, so the encoder learns only what a linear model cannot")
    g.add_argument("--norm", default=None, choices=("revin", "node"),
                   help="linear-head forecaster's window normalisation: revin (each variable to unit variance, "
                        "the paper's) or node (each variable minus its last value, over one scale per node, so "
                        "the stations' ratios survive) (co2 and the synthetic grids: node; else revin)")
    g.add_argument("--dropout", type=RATE, default=None, help="dropout of the embedding and the head (0.05)")
    g.add_argument("--data-scale", type=float, default=None,
                   help="the files' values per physical unit, for the physical-unit metrics (Corrformer presets 10, "
                        "as the released files; else 1)")
    g = p.add_argument_group("forecasting recipe")
    g.add_argument("--constant-lr", action="store_true",
                   help="do not halve the learning rate every epoch (default of co2 and the synthetic grids)")
    g.add_argument("--halve-lr", action="store_true",
                   help="halve the learning rate after every epoch (the official schedule; default of folders and files)")
    g.add_argument("--patience", type=int, default=None,
                   help="early stop after N evaluations without a better validation loss (3)")
    g.add_argument("--calendar", default=None, metavar="NAMES",
                   help="calendar features the model sees, comma-separated: hour,dow,dom,doy (hourly data), "
                        "dow,dom,doy (daily), dom,woy (weekly), month (monthly); the others are held at 0. "
                        "'all' = the paper's timeF (default). On a few months of data the day features name the "
                        "date and let a network memorise the training weather: try 'hour'")
    g.add_argument("--train-stride", type=int, default=None, help="use every N-th training window (1; demo 4)")
    g.add_argument("--val-stride", type=int, default=None, help="use every N-th validation window (1; demo 4)")
    add_engine_arguments(p, dict(
        weight_decay="0", min_lr="demo 1e-5 (its cosine schedule); unused by the step halving",
        model="custom (a tiny net), unireplknet_a … unireplknet_s, or a timm ConvNet as a peer encoder "
              "(e.g. convnext_atto)", drop_path="0; paper 0.4",
        epochs="co2 and the synthetic grids 15 (early stop); paper 10; demo 4",
        batch_size="co2 16; synthetic-grid and -advection 8; paper 1; demo 2",
        lr="Adam, 1e-3, constant for co2 and the synthetic grids, halved every epoch for folders and files; paper "
           "1e-4 halved every epoch; demo 1e-3 cosine to 1e-5", warmup_epochs="0",
        workers="0",
        output="runs/forecast-co2, runs/forecast-grid, runs/forecast-advection, runs/forecast or "
               "runs/corrformer-PRESET"))
    p.set_defaults(func=cmd_forecast_train)

    p = sub.add_parser("forecast-eval", help="MSE/MAE of a forecasting checkpoint and the baselines on a split")
    p.add_argument("checkpoint", help="best.pth or last.pth of a forecast-train run")
    p.add_argument("--data", default=None, help="default: the data the checkpoint was trained on")
    p.add_argument("--eval-split", dest="split", default="test", choices=("train", "val", "test"),
                   help="which split to score (test)")
    p.add_argument("--data-scale", type=float, default=None,
                   help="the files' values per physical unit (default: the run's; the released files: 10)")
    p.add_argument("--linear-baseline", action="store_true",
                   help="Corrformer runs: also fit and score the ridge linear model of the same inputs")
    add_common_arguments(p, device=True, json=True)
    p.set_defaults(func=cmd_forecast_eval)

    p = sub.add_parser("forecast-make-grid", help="write the synthetic station grid in the Global Temp layout")
    p.add_argument("output", help="destination folder")
    p.add_argument("--stations", type=int, default=22, help="stations of the grid (22)")
    p.add_argument("--days", type=int, default=100, help="days of hourly values (100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--variable", default="temp", help="file prefix: temp or wind (temp)")
    add_overwrite_argument(p, "the files of a folder that is not empty")
    add_common_arguments(p)
    p.set_defaults(func=cmd_forecast_make_grid)

    p = sub.add_parser("forecast-make-weather",
                       help="write the generated global-weather set (the data of --preset demo) in the Global Temp "
                            "layout")
    p.add_argument("output", help="destination folder")
    p.add_argument("--stations", type=int, default=308, help="stations, a multiple of 308 (308)")
    p.add_argument("--days", type=int, default=120, help="days of hourly values (120)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    add_overwrite_argument(p, "the files of a folder that is not empty")
    add_common_arguments(p)
    p.set_defaults(func=cmd_forecast_make_weather)
