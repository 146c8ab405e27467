"""What the two forecasting tasks share: the data splits and windows, the evaluation and the task base class.

The linear-head forecaster (:mod:`.linear`) and the paper's Corrformer (:mod:`.corrformer`) both derive their
task from :class:`ForecastTask`; a config is any object with the options of
:class:`~unireplknet.tasks.forecast.linear.ForecastTrainConfig`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ...data.timeseries import (
    Series,
    SeriesError,
    WindowDataset,
    chronological_split,
    co2_series,
    load_array_series,
    load_csv_series,
    load_global_station_folder,
    make_synthetic_station_grid,
)
from ...engine.distributed import all_gather_object
from ...engine.task import Batch, StepContext, Task, TaskData
from .layers import forecast_metrics, naive_forecast, seasonal_naive_forecast

__all__ = ["ADVECTION_DEMO", "DEFAULT_SEASONAL_PERIOD", "build_forecast_splits", "collate_windows", "calendar_names",
           "forecast_windows", "target_columns", "window_loader", "forecast_batch", "evaluate_forecaster", "evaluate_baselines",
           "ForecastTask"]

#: The cross-station demo (``--data synthetic-advection``): chains of 11 stations in which the weather moves one
#: station per day (24 h, the forecast length), half of it through a nonlinear coupling.
ADVECTION_DEMO: Dict[str, Any] = dict(num_stations=22, days=100, advection_hours=24, chain=11, linear_share=0.5)

#: Seasonal-naive period by frequency when none is given: a day of hours, a week of days, a year of weeks/months.
DEFAULT_SEASONAL_PERIOD = {"h": 24, "d": 7, "w": 52, "m": 12}


# ----------------------------------------------------------------------------------------------- data
def build_forecast_splits(cfg: Any) -> Tuple[Dict[str, Series], str]:
    """``{'train', 'val', 'test'}`` series and a description, for the config's data source."""
    data = cfg.data
    if cfg.preset and (data is None or not (Path(data).is_dir() or Path(data).suffix.lower() == ".csv")):
        raise SeriesError(f"--preset {cfg.preset} trains the Corrformer on station data: --data must be a folder in the "
                          f"Global Temp/Wind layout ({cfg.variable}_global_hourly_{{train,val,test}}.npy, "
                          f"data_time_*.npy, stations_sorted.npy) or a CSV table (long, with --series-column, or wide), not "
                          f"{data or 'the default co2'!r}; "
                          "`unireplknet forecast-make-weather OUT` or `unireplknet forecast-make-grid OUT` writes one")
    if data in (None, "co2"):
        s = co2_series(monthly=True)
        return chronological_split(s, cfg.seq_len), "Mauna Loa CO2, monthly (ppm)"
    if data == "synthetic-grid":
        s = make_synthetic_station_grid()
        return chronological_split(s, cfg.seq_len), s.description + " (°C)"
    if data == "synthetic-advection":
        # Disjoint in time and in stations: each split is its own time span (70/10/20 %) of its own draw of the
        # generator (seed 0 train, 2 validation, 1 test: other stations, amplitudes and weather, the same chain
        # structure), so early stopping and every choice made on validation also reward new stations.
        draws = {k: make_synthetic_station_grid(seed=seed, **ADVECTION_DEMO)
                 for k, seed in (("train", 0), ("val", 2), ("test", 1))}
        splits = {k: chronological_split(s, cfg.seq_len)[k] for k, s in draws.items()}
        return splits, (draws["train"].description.replace(", seed 0", "")
                        + "; train, validation, test on the stations of seeds 0, 2, 1 (°C)")
    path = Path(data)
    if path.is_dir():
        # the Corrformer keeps every feature of every station, station-major, as the official loader does
        feature = None if cfg.preset else 0
        splits = {k: load_global_station_folder(path, cfg.variable, k, cfg.nan_policy, feature=feature,
                                                gap_policy=getattr(cfg, "gap_policy", "error"))
                  for k in ("train", "val", "test")}
        counts = {k: s.num_variables for k, s in splits.items()}
        if len(set(counts.values())) != 1:
            raise SeriesError(f"station counts differ between splits: {counts}")
        return splits, f"{path.name} ({cfg.variable})"
    if path.suffix.lower() == ".csv":
        s = load_csv_series(path, cfg.time_column, freq=cfg.freq or "h", nan_policy=cfg.nan_policy,
                            gap_policy=getattr(cfg, "gap_policy", "error"),
                            series_column=getattr(cfg, "series_column", None), targets=getattr(cfg, "target", None))
    elif path.suffix.lower() in (".npy", ".npz"):
        s = load_array_series(path, freq=cfg.freq or "h", nan_policy=cfg.nan_policy,
                              gap_policy=getattr(cfg, "gap_policy", "error"))
        if getattr(cfg, "series_column", None) or getattr(cfg, "target", None):
            raise SeriesError(f"--series-column and --target read a .csv table; {path.name} is an array file")
    else:
        raise SeriesError(f"--data {data}: expected co2, synthetic-grid, synthetic-advection, a Global Temp/Wind "
                          "folder, a .csv or a .npy/.npz file")
    return chronological_split(s, cfg.seq_len), path.name


def collate_windows(windows: Sequence[Tuple[torch.Tensor, ...]]) -> Batch:
    """``(x, x_mark, y, y_mark)`` windows as the engine's :class:`~unireplknet.engine.Batch`: ``inputs`` the
    model's ``(x, x_mark, y_mark)``, ``targets`` ``y`` (the label span followed by the forecast span)."""
    x, xm, y, ym = (torch.stack([w[i] for w in windows]) for i in range(4))
    return Batch((x, xm, ym), y)


def calendar_names(cfg: Any) -> Optional[Tuple[str, ...]]:
    """The calendar features of ``cfg.calendar`` ('hour,dow' -> ('hour', 'dow')); None keeps them all."""
    if cfg.calendar is None or cfg.calendar == "all":
        return None
    return tuple(name.strip() for name in cfg.calendar.split(",") if name.strip())


def forecast_windows(series: Series, cfg: Any, stride: int = 1) -> WindowDataset:
    """The windows of one split as a run with ``cfg`` sees them (lengths and calendar features)."""
    return WindowDataset(series, cfg.seq_len, cfg.label_len, cfg.pred_len, stride, calendar=calendar_names(cfg))


def window_loader(ds: WindowDataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_windows,
                      generator=torch.Generator().manual_seed(seed))


def forecast_batch(model: nn.Module, batch: Batch, device: Union[str, torch.device]) -> torch.Tensor:
    """The model's forecast of a batch of :func:`collate_windows`; a model whose ``reads_decoder_calendar`` is
    True (the Corrformer decoder) also reads the calendar features of its label + forecast span."""
    x, xm, ym = batch.inputs
    if getattr(getattr(model, "module", model), "reads_decoder_calendar", False):
        return model(x.to(device), xm.to(device), ym.to(device))
    return model(x.to(device), xm.to(device))


def target_columns(series: Series) -> Optional[torch.Tensor]:
    """The indices of the forecast targets (``--target``) among the series' variables; None: all of them."""
    return None if series.targets is None else torch.as_tensor(series.targets, dtype=torch.long)


@torch.no_grad()
def evaluate_forecaster(model: nn.Module, loader: DataLoader, device: Union[str, torch.device] = "cpu",
                        scale: Optional[torch.Tensor] = None, columns: Optional[torch.Tensor] = None
                        ) -> Dict[str, float]:
    """MSE/MAE of the model's forecasts (original units) and ``loss`` (MSE in units of ``scale``; without a
    ``scale``, the plain MSE — the paper's loss for the Corrformer); ``columns``: only these variables (the
    ``--target`` columns of a table), ``scale`` then of the same columns."""
    was = model.training
    model.eval()
    preds, targets = [], []
    for batch in loader:
        preds.append(forecast_batch(model, batch, device).float().cpu())
        targets.append(batch.targets[:, -model.pred_len:])
    model.train(was)
    gathered = all_gather_object((preds, targets))  # every rank's windows (one process: just its own)
    pred = torch.cat([t for p, _ in gathered for t in p])
    target = torch.cat([t for _, tg in gathered for t in tg])
    if columns is not None:
        pred, target = pred[..., columns], target[..., columns]
    out = forecast_metrics(pred, target)
    out["loss"] = float(((pred - target) / scale).pow(2).mean()) if scale is not None else out["mse"]
    out["windows"] = int(pred.shape[0])
    return out


def evaluate_baselines(loader: DataLoader, pred_len: int, period: Optional[int],
                       columns: Optional[torch.Tensor] = None) -> Dict[str, Dict[str, float]]:
    """Last-value and (when ``period`` fits in the input) seasonal-naive forecasts on the same windows (of the
    ``columns`` variables only, when given)."""
    xs, ys = [], []
    for batch in loader:
        xs.append(batch.inputs[0])
        ys.append(batch.targets[:, -pred_len:])
    x, y = torch.cat(xs), torch.cat(ys)
    if columns is not None:
        x, y = x[..., columns], y[..., columns]
    out = {"last value (naive)": forecast_metrics(naive_forecast(x, pred_len), y)}
    if period and period <= x.shape[1]:
        out[f"seasonal naive (period {period})"] = forecast_metrics(seasonal_naive_forecast(x, pred_len, period), y)
    return out


class ForecastTask(Task):
    """What both forecasting tasks share (:class:`~unireplknet.tasks.forecast.linear.LinearForecasting`,
    :class:`~unireplknet.tasks.forecast.corrformer.CorrformerForecasting`): the sliding windows of the
    chronological splits, the validation loss as the key metric, the evaluation and the deploy example.
    ``announce(model)`` is called once the model is built (the command line prints its size there)."""

    name = "forecast"
    metric = "loss"
    higher_is_better = False
    find_unused_parameters = True  # the backbone's final norm is not used by the forecasting head
    eval_batch_size = 64

    def __init__(self, announce: Optional[Callable[[nn.Module], None]] = None):
        self.announce = announce

    def loss_scale(self, train: Series) -> Optional[torch.Tensor]:
        """Per-variable units of the training loss (None: the plain MSE on the files' scale). A table with
        ``--target`` columns mixes units (°F, mph, hPa …): there each target weighs in units of its training
        standard deviation."""
        if train.targets is None:
            return None
        return torch.from_numpy(np.maximum(train.values.std(0), 1e-6)).float()[target_columns(train)]

    def target_loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss on the target variables: MSE in units of ``self.scale`` (plain MSE without one)."""
        if self.columns is not None:
            pred, y = pred[..., self.columns.to(pred.device)], y[..., self.columns.to(pred.device)]
        if self.scale is None:
            return (pred - y).pow(2).mean()
        return ((pred - y) / self.scale.to(pred.device)).pow(2).mean()

    def build_data(self, cfg: Any, seed: int) -> TaskData:
        splits, description = build_forecast_splits(cfg)
        if cfg.freq is None:
            cfg.freq = splits["train"].freq
        if cfg.seasonal_period is None:
            cfg.seasonal_period = DEFAULT_SEASONAL_PERIOD[cfg.freq]
        self.splits, self.description = splits, description
        train = splits["train"]
        if train.node_size is not None and cfg.enc_in is None:
            cfg.enc_in = train.node_size  # a long table: one node per station
        self.columns = target_columns(train)
        strides = dict(train=cfg.train_stride, val=cfg.val_stride, test=1)
        self.windows = {k: forecast_windows(s, cfg, strides[k]) for k, s in splits.items()}
        self.scale = self.loss_scale(splits["train"])
        self.pred_len = cfg.pred_len
        data_config = dict(description=description, scale=None if self.scale is None else self.scale.tolist(),
                           data_scale=cfg.data_scale)
        return TaskData(self.windows["train"], self.windows["val"], collate_windows, collate_windows, description,
                        data_config=data_config, eval_batch_size=self.eval_batch_size)

    def create_model(self, cfg: Any, train: Series) -> nn.Module:
        raise NotImplementedError

    def build_model(self, cfg: Any, data: TaskData, pretrained: bool) -> nn.Module:
        if pretrained:
            raise ValueError("--pretrained: the forecaster's backbone takes embedded series, not images; "
                             "use --checkpoint to start from other forecasting weights")
        model = self.create_model(cfg, self.splits["train"])
        if self.announce is not None:
            self.announce(model)
        return model

    def evaluate(self, model: nn.Module, loader: Any, ctx: StepContext) -> Dict[str, float]:
        return evaluate_forecaster(model, loader, ctx.device, self.scale, self.columns)

    def deploy_example(self, data: TaskData) -> Tuple[torch.Tensor, ...]:
        val = self.windows["val"]
        x, xm, ym = collate_windows([val[0], val[min(1, len(val) - 1)]]).inputs
        return (x, xm, ym) if self.reads_decoder_calendar else (x, xm)

    reads_decoder_calendar = False


def target_label(cfg: Any, series: Series) -> str:
    """The name of the forecast target in reports: the variable of a Global Temp/Wind folder (``temp``, ``wind``),
    the series' own column names (``co2``; a CSV's columns), else what the data is (the generated grids'
    temperatures, an array file's name) — never ``--variable``'s default when the data is no station folder."""
    n = series.num_variables
    data = cfg.data
    if data in ("synthetic-grid", "synthetic-advection"):
        return f"temp ({n} stations)"
    if data not in (None, "co2") and Path(data).is_dir():
        return cfg.variable
    names = list(series.names or [])
    if series.targets is not None and len(names) == n:
        names, n = [names[i] for i in series.targets], len(series.targets)
    if len(names) == n and n == 1:
        return names[0]
    if len(names) == n and n <= 3:
        return ", ".join(names)
    if len(names) == n:
        return f"{names[0]} … {names[-1]} ({n} series)"
    stem = Path(data).stem if data not in (None, "co2") else "value"
    return stem if n == 1 else f"{stem} ({n} series)"
