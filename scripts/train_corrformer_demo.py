"""STAND-IN training run for the Corrformer + UniRepLKNet forecaster until the engine task exists.

    python scripts/make_global_weather.py /tmp/global_weather
    python scripts/train_corrformer_demo.py /tmp/global_weather --variable temp -o runs/corrformer-demo

Once the training engine has a forecasting task, ``unireplknet forecast-train --preset paper`` replaces this
script; it only strings together the library functions of :mod:`unireplknet.tasks.corrformer` (build_model,
global_station_windows, forecast_loss, evaluate, LinearWindowBaseline, paper_learning_rate) with the paper's
recipe shape: MSE, Adam, lr halved after every epoch, early stop after ``patience`` epochs without a better
validation MSE, the best-on-validation weights kept. Then it scores the test windows next to last value,
seasonal naive (24 h) and the ridge linear model of the same inputs, and writes ``results.json``.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from unireplknet.tasks.corrformer import (
    PRESETS,
    LinearWindowBaseline,
    build_model,
    evaluate,
    forecast_loss,
    global_station_windows,
    paper_learning_rate,
)
from unireplknet.tasks.forecasting import naive_forecast, seasonal_naive_forecast


class _Baseline(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, x_mark=None, y_mark=None):
        return self.fn(x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("--variable", default="temp", choices=("temp", "wind"))
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    p.add_argument("--encoder-size", default=None)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3, help="first-epoch rate, halved after every epoch")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--train-stride", type=int, default=4, help="use every n-th training window")
    p.add_argument("--val-stride", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", type=Path, default=Path("runs/corrformer-demo"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()

    cfg = PRESETS[args.preset]
    train_all, coords = global_station_windows(args.data, args.variable, "train", cfg)
    val_all, _ = global_station_windows(args.data, args.variable, "val", cfg)
    test, _ = global_station_windows(args.data, args.variable, "test", cfg)
    train = Subset(train_all, range(0, len(train_all), args.train_stride))
    val = Subset(val_all, range(0, len(val_all), args.val_stride))
    model = build_model(args.preset, args.encoder_size, coords)
    params = sum(q.numel() for q in model.parameters())
    print(f"model: {params / 1e6:.2f} M parameters; {len(train)} training windows per epoch", flush=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    best, best_state, best_epoch, stale, history = float("inf"), None, 0, 0, []
    for epoch in range(1, args.epochs + 1):
        for g in optimizer.param_groups:
            g["lr"] = paper_learning_rate(epoch, args.lr)
        model.train()
        te, total, n = time.perf_counter(), 0.0, 0
        loader = DataLoader(train, batch_size=args.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        for x, xm, y, ym in loader:
            loss = forecast_loss(model(x, xm, ym), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, n = total + loss.item() * len(x), n + len(x)
        val_mse = evaluate(model, val, data_scale=10.0, batch_size=8)["all"]["mse"]
        history.append(dict(epoch=epoch, train_mse=total / n, val_mse=val_mse, lr=optimizer.param_groups[0]["lr"],
                            epoch_s=round(time.perf_counter() - te, 1)))
        print(json.dumps(history[-1]), flush=True)
        if val_mse < best:
            best, best_state, best_epoch, stale = val_mse, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= args.patience:
                break
    model.load_state_dict(best_state)
    train_s = time.perf_counter() - t0

    linear = LinearWindowBaseline(cfg, coords).fit(train_all)
    rows = {
        "UniRepLKNet-Corrformer": evaluate(model, test, batch_size=8)["all"],
        "last value": evaluate(_Baseline(lambda x: naive_forecast(x, cfg.pred_len)), test, batch_size=64)["all"],
        "seasonal naive (24 h)": evaluate(_Baseline(lambda x: seasonal_naive_forecast(x, cfg.pred_len, 24)), test,
                                          batch_size=64)["all"],
        "linear (ridge, same inputs)": evaluate(linear, test, batch_size=64)["all"],
    }
    args.output.mkdir(parents=True, exist_ok=True)
    result = dict(data=str(args.data), variable=args.variable, preset=args.preset, parameters=params,
                  best_epoch=best_epoch, history=history, train_wall_s=round(train_s, 1),
                  total_wall_s=round(time.perf_counter() - t0, 1), test=rows)
    tmp = args.output / ".results.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.output / "results.json")
    unit = "°C" if args.variable == "temp" else "m/s"
    print(f"\ntest windows: {rows['last value']['windows']}; file scale (×10) and physical {unit}")
    print(f"{'method':<30}{'MSE ×10²':>10}{'MAE ×10':>9}{'MSE':>9}{'MAE':>8}")
    for name, m in rows.items():
        print(f"{name:<30}{m['mse']:>10.3f}{m['mae']:>9.3f}{m['mse_physical']:>9.4f}{m['mae_physical']:>8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
