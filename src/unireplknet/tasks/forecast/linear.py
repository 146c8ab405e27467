"""Time-series forecasting with UniRepLKNet as the encoder (paper Table 12; official `Time-Series/` code, described in docs/timeseries.md, the paper's Global Temp/Wind model).

Per forward pass (``x``: B × L × V, V = nodes × ``enc_in`` variables):

1. per-window, per-variable normalisation — subtract the mean over time, divide by sqrt(biased var + 1e-5) —
   then a learnable per-variable affine (``enc_in`` weights/biases tiled over the nodes), as Corrformer
   (``norm='node'``: relative to each variable's last value, over one scale per node; :class:`SeriesNormalizer`);
2. regroup to nodes: (B·nodes, L, enc_in);
3. token embedding: Conv1d(enc_in → d_model, kernel 3, circular padding, no bias, Kaiming init) + a
   Linear(calendar features → d_model, no bias) + optionally a Linear(enc_in · coord_dim → d_model) of the
   standardised station coordinates of the node, then dropout;
4. the (L × d_model) embedding is reshaped into a 1-channel image of H × W = L · d_model (192 × 192 for the
   paper's 48 × 768);
5. the UniRepLKNet backbone (``in_chans=1``; or a timm model that ``model`` names, as a peer) encodes it;
   its last-stage map (C × h × w) is the encoder output
   (the official code needs exactly this but its backbone returns 1000 logits — docs/timeseries.md, pipeline step 6);
6. the forecasting head maps it to (pred_len × enc_in); the affine and the normalisation are undone.

The head here is a linear projection of the flattened last-stage map. The paper (TPAMI §3.3, Table 12) feeds
the map as memory into one Corrformer decoder layer (multi-correlation + TCN): ``--preset paper`` / ``demo``
make this task train that model instead (:mod:`unireplknet.tasks.forecast.corrformer`), on the same engine loop, with
the paper's recipe as defaults; docs/timeseries.md has both.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ...data.timeseries import TIME_FEATURE_DIMS, Series, SeriesError, WindowDataset
from ...engine.checkpointing import load_training_checkpoint
from ...engine.config import EngineConfig, plain
from ...engine.loop import TrainResult
from ...engine.task import StepContext, StepOutput, TaskData
from .base import (ForecastTask, target_columns, target_label, evaluate_baselines, evaluate_forecaster, forecast_batch, forecast_windows,
                   window_loader)
from .layers import TINY_FORECAST_MODEL_KWARGS, SeriesNormalizer, TokenEmbedding, image_shape

__all__ = [
    "UniRepLKNetForecaster",
    "ForecastTrainConfig",
    "forecast_table",
    "PAPER_GLOBAL_TEMP",
    "EMBEDDED_DEFAULTS",
    "CORRFORMER_PRESETS",
    "corrformer_defaults",
    "metrics_table",
    "LinearForecasting",
    "forecast_task",
    "build_forecast_model",
    "evaluate_run",
    "train_forecaster",
    "load_forecaster",
]

_logger = logging.getLogger(__name__)

#: The paper's configuration (paper Table 12; official `Time-Series/` code, described in docs/timeseries.md): UniRepLKNet-S dims/depths, stage-4 kernels 11, d_model 768,
#: 11 stations per node, input 48 / label 24 / forecast 24 hours, Adam 1e-4 halved every epoch, 10 epochs,
#: early stop after 3 epochs without improvement, batch 1 (all 350 nodes of one window).
PAPER_GLOBAL_TEMP: Dict[str, Any] = dict(
    seq_len=48, label_len=24, pred_len=24, enc_in=11, d_model=768, model="custom",
    model_kwargs=dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768),
                      kernel_sizes=((3, 3, 3), (13, 13, 13), (13, 3, 3) * 9, (11, 11, 11))),
    drop_path=0.4, dropout=0.05, lr=1e-4, lr_halving=True, epochs=10, patience=3, batch_size=1,
    use_coords=True, seasonal_period=24,
)


class UniRepLKNetForecaster(nn.Module):
    """The forecasting model described in the module docstring.

    Args:
        num_variables: V, the series' variables (stations); a multiple of ``enc_in``.
        seq_len / pred_len: input and forecast lengths.
        enc_in: variables per node (the paper: 11 stations); default V (one node).
        d_model: embedding width; ``seq_len · d_model`` must factor into an image ≥ 32 × 32.
        freq: calendar-feature frequency (``'h'``, ``'d'``, ``'w'``, ``'m'``), or None for no calendar term.
        coords: (V, k) station coordinates for the geo embedding (standardised here), or None.
        model / model_kwargs / drop_path: the backbone (variant name or ``'custom'`` with UniRepLKNet arguments).
    """

    def __init__(self, num_variables: int, seq_len: int = 48, pred_len: int = 24, enc_in: Optional[int] = None,
                 d_model: int = 768, freq: Optional[str] = "h", coords: Optional[np.ndarray] = None,
                 model: str = "unireplknet_s", model_kwargs: Optional[Dict[str, Any]] = None, drop_path: float = 0.0,
                 dropout: float = 0.05, affine: bool = True, norm: str = "revin", linear_skip: bool = False):
        super().__init__()
        from ...factory import build_model

        enc_in = int(enc_in or num_variables)
        if num_variables % enc_in:
            raise SeriesError(f"{num_variables} variables cannot be grouped into nodes of enc_in={enc_in}; "
                              "pass an enc_in that divides the number of stations")
        self.num_variables, self.seq_len, self.pred_len, self.enc_in = num_variables, seq_len, pred_len, enc_in
        self.nodes = num_variables // enc_in
        self.d_model = d_model
        self.freq = freq
        self.image_hw = image_shape(seq_len, d_model)
        coord_dim = 0
        if coords is not None:
            coords = np.asarray(coords, dtype=np.float32)
            if coords.shape[0] != num_variables:
                raise SeriesError(f"station counts differ: {num_variables} variables but {coords.shape[0]} coordinate rows")
            coord_dim = coords.shape[1]
            z = (coords - coords.mean(0)) / (coords.std(0) + 1e-6)
            self.register_buffer("geo", torch.from_numpy(z.reshape(self.nodes, enc_in * coord_dim)))
        else:
            self.register_buffer("geo", None)
        self.config = dict(num_variables=num_variables, seq_len=seq_len, pred_len=pred_len, enc_in=enc_in,
                           d_model=d_model, freq=freq, coord_dim=coord_dim, model=model,
                           model_kwargs=copy.deepcopy(model_kwargs or {}), drop_path=drop_path, dropout=dropout,
                           affine=affine, norm=norm, linear_skip=linear_skip)
        self.norm = SeriesNormalizer(enc_in, affine, mode=norm)
        self.embedding = TokenEmbedding(enc_in, d_model, TIME_FEATURE_DIMS[freq] if freq else 0, coord_dim, dropout)
        self.encoder = build_model(model, num_classes=0, in_chans=1, model_kwargs=model_kwargs,
                                   drop_path_rate=drop_path)
        self.head = nn.Linear(self._encoder_features(model), pred_len * enc_in)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        # optional linear map from a node's normalised input window straight to its forecast, so the encoder
        # only has to learn what a linear model cannot (starts at zero: the encoder's forecast alone)
        self.linear_skip = nn.Linear(seq_len * enc_in, pred_len * enc_in) if linear_skip else None
        if self.linear_skip is not None:
            nn.init.zeros_(self.linear_skip.weight)
            nn.init.zeros_(self.linear_skip.bias)

    def _encoder_features(self, name: str) -> int:
        """Size of the flattened ``forward_features`` output for one embedded image; refuses encoders without
        that interface or that cannot take the image (e.g. a ViT with a fixed input size). The probe runs in
        eval mode, so it leaves the BatchNorm statistics of a fresh encoder as they were."""
        forward_features = getattr(self.encoder, "forward_features", None)
        problem = None
        if not callable(forward_features):
            problem = "it has no forward_features method"
        else:
            was = self.encoder.training
            self.encoder.eval()
            try:
                with torch.no_grad():
                    out = forward_features(torch.zeros(1, 1, *self.image_hw))
            except (RuntimeError, ValueError, AssertionError, TypeError) as e:
                problem = f"its forward_features failed on it ({type(e).__name__}: {e})"
            else:
                if not isinstance(out, torch.Tensor) or out.ndim < 2 or out.shape[0] != 1:
                    problem = (f"its forward_features returned {type(out).__name__}"
                               f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}, not one feature "
                               "tensor per image")
            finally:
                self.encoder.train(was)
        if problem is not None:
            h, w = self.image_hw
            raise ValueError(
                f"--model {name}: cannot encode the forecaster's embedded series, a 1 × {h} × {w} image "
                f"(seq_len {self.seq_len} × d_model {self.d_model}): {problem}. The forecaster needs a backbone whose "
                "forward_features takes a one-channel image of any size and returns one feature map per image — "
                "UniRepLKNet, or a timm ConvNet such as convnext_atto or resnet18; for a model with a fixed input "
                f"size pass its size in --model-kwargs (e.g. '{{\"img_size\": [{h}, {w}]}}') or change --d-model")
        return int(out[0].numel())

    @property
    def encoder_label(self) -> str:
        """How result tables name this model: the UniRepLKNet forecaster, or the peer encoder it was given."""
        from ...model import UniRepLKNet

        return "UniRepLKNet forecaster" if isinstance(self.encoder, UniRepLKNet) \
            else f"forecaster, {self.config['model']} encoder"

    def _normalized_nodes(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """(B, L, V) → the normalised (B·nodes, L, enc_in) node series and the normalisation statistics."""
        b, length, v = x.shape
        if length != self.seq_len or v != self.num_variables:
            raise ValueError(f"expected input (batch, {self.seq_len}, {self.num_variables}), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise SeriesError("the input window contains NaN/inf; fill gaps before forecasting "
                              "(fill_missing(..., 'interpolate'))")
        x, stats = self.norm.normalize(x)
        x = x.reshape(b, length, self.nodes, self.enc_in).permute(0, 2, 1, 3).reshape(b * self.nodes, length, self.enc_in)
        return x, stats

    def _image(self, nodes: torch.Tensor, x_mark: Optional[torch.Tensor]) -> torch.Tensor:
        b = nodes.shape[0] // self.nodes
        mark = None
        if x_mark is not None and self.embedding.time is not None:
            mark = x_mark.repeat_interleave(self.nodes, dim=0)
        geo = self.geo.repeat(b, 1) if self.geo is not None else None
        tokens = self.embedding(nodes, mark, geo)  # (B·nodes, L, d_model)
        return tokens.reshape(b * self.nodes, 1, *self.image_hw)

    def embed_image(self, x: torch.Tensor, x_mark: Optional[torch.Tensor] = None
                    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """(B, L, V) → the (B·nodes, 1, H, W) image the backbone sees, and the normalisation statistics."""
        nodes, stats = self._normalized_nodes(x)
        return self._image(nodes, x_mark), stats

    def forward(self, x: torch.Tensor, x_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, seq_len, V) [+ (B, seq_len, time_dim) calendar features] → (B, pred_len, V) forecast."""
        b = x.shape[0]
        nodes, stats = self._normalized_nodes(x)
        feats = self.encoder.forward_features(self._image(nodes, x_mark)).flatten(1)
        y = self.head(feats)
        if self.linear_skip is not None:
            y = y + self.linear_skip(nodes.flatten(1))
        y = y.reshape(b, self.nodes, self.pred_len, self.enc_in)
        y = y.permute(0, 2, 1, 3).reshape(b, self.pred_len, self.num_variables)
        return self.norm.denormalize(y, stats)


# ----------------------------------------------------------------------------------------------- config
@dataclass
class ForecastTrainConfig(EngineConfig):
    """Options of :func:`train_forecaster`: the engine options (defaults: Adam, no weight decay, the rate halved
    after every epoch — the official ``type1`` schedule — and early stopping after ``patience`` evaluations
    without a better validation loss) and the forecasting ones.

    ``data``: ``None`` or ``'co2'`` = the embedded Mauna Loa CO2 (monthly); ``'synthetic-grid'`` = the synthetic
    hourly station grid; a folder in the Global Temp/Wind layout (``variable`` selects temp or wind); a
    ``.csv`` (``time_column`` + one column per variable); or a ``.npy``/``.npz`` array. Single-file and
    synthetic data are split chronologically 70/10/20 (Informer).

    :meth:`with_recipe`: unset (None) options take the recipe of the data (:data:`EMBEDDED_DEFAULTS`) or, with
    ``preset`` 'paper' / 'demo' (the paper's Corrformer model), of :func:`corrformer_defaults`.
    """

    data: Optional[str] = None
    variable: str = "temp"
    time_column: str = "date"
    series_column: Optional[str] = None  # a long CSV table: the column naming each row's station
    target: Optional[str] = None  # a CSV table's columns to forecast, comma-separated (None: every column)
    freq: Optional[str] = None
    nan_policy: str = "error"
    gap_policy: str = "error"
    seq_len: int = 48
    label_len: int = 24
    pred_len: int = 24
    enc_in: Optional[int] = None
    d_model: int = 48
    use_coords: bool = True
    seasonal_period: Optional[int] = None
    dropout: float = 0.05
    norm: str = "revin"  # the linear-head forecaster's window normalisation (SeriesNormalizer.MODES)
    linear_skip: bool = False  # add a linear map from each node's normalised input to its forecast
    lr_halving: bool = True  # False: a constant rate (decay_rate 1)
    train_stride: int = 1
    val_stride: int = 1
    # calendar features the model sees, comma-separated (``CALENDAR_FEATURES[freq]``); None: all (the paper's timeF)
    calendar: Optional[str] = None
    # The Corrformer model of the paper (``preset`` 'paper' or 'demo'; None: the linear-head forecaster above).
    preset: Optional[str] = None
    encoder_size: Optional[str] = None  # 'a' … 's' or 'tiny'; None: the preset's
    encoder: Optional[str] = None  # 'unireplknet' or 'convnext' (a peer of the same shape); None: the preset's
    node_list: Optional[Tuple[int, ...]] = None  # the multiscale node tree; None: the preset's
    memory_layout: Optional[str] = None  # 'tokens' or 'raw' (CorrformerConfig.memory_layout); None: the preset's
    data_scale: float = 1.0  # the files' values / physical units (the released Global Temp/Wind files: 10)
    # engine options with the forecasting recipe's values
    model: str = "custom"
    model_kwargs: Dict[str, Any] = field(default_factory=lambda: copy.deepcopy(TINY_FORECAST_MODEL_KWARGS))
    drop_path: float = 0.0
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    warmup_epochs: float = 0.0
    opt: str = "adam"
    weight_decay: float = 0.0
    sched: str = "step"
    decay_start: int = 1
    decay_rate: float = 0.5
    patience: Optional[int] = 3
    workers: int = 0
    output: Optional[str] = "runs/forecast"

    BUILTIN_DATA: ClassVar[Tuple[str, ...]] = ("co2", "synthetic-grid", "synthetic-advection")  # not paths

    def __post_init__(self) -> None:
        if not self.lr_halving:
            self.decay_rate = 1.0
        if self.node_list is not None:
            self.node_list = tuple(int(n) for n in self.node_list)

    @classmethod
    def default_recipe(cls, options: Dict[str, Any]) -> Optional[str]:
        """The ``preset`` (the Corrformer's), else the recipe of the embedded data (None for files)."""
        preset = options.get("preset")
        if preset is not None:
            if preset not in CORRFORMER_PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(CORRFORMER_PRESETS)}")
            return preset
        data = options.get("data") or "co2"
        return data if data in EMBEDDED_DEFAULTS else None

    @classmethod
    def recipe(cls, name: str, options: Dict[str, Any]) -> Dict[str, Any]:
        values = corrformer_defaults(name) if name in CORRFORMER_PRESETS else super().recipe(name, options)
        if str(options.get("data") or "").lower().endswith(".csv"):
            # a table is in its own units, and its stations are its nodes (a wide table: one node), so a
            # preset's scale and node width do not apply to it
            values = {k: v for k, v in values.items() if k not in ("data_scale", "enc_in")}
        return values


#: The presets that train the paper's Corrformer + UniRepLKNet model (``unireplknet.tasks.forecast.corrformer.PRESETS``).
CORRFORMER_PRESETS = ("paper", "demo")


def corrformer_defaults(preset: str) -> Dict[str, Any]:
    """The options a Corrformer preset sets unless given: the model sizes of ``corrformer.PRESETS[preset]`` and
    the training recipe. ``paper``: the official run (TPAMI Table 12; ``PAPER_RECIPE``: MSE, Adam 1e-4 halved
    after every epoch, 10 epochs, early stop after 3, batch 1 window, files ×10). ``demo``: the generated-data
    run of docs/timeseries.md (``DEMO_RECIPE``: Adam 1e-3 on a cosine schedule to 1e-5, 4 epochs, batch 2, every
    4th training and validation window; the documented numbers used ``--threads 1``)."""
    from .corrformer import PAPER_DATA_SCALE, PAPER_RECIPE, PRESETS

    c = PRESETS[preset]
    out = dict(seq_len=c.seq_len, label_len=c.label_len, pred_len=c.pred_len, enc_in=c.enc_in, d_model=c.d_model,
               dropout=c.dropout, drop_path=c.drop_path, freq=c.freq, seasonal_period=24, use_coords=c.use_geo,
               data_scale=PAPER_DATA_SCALE, lr=PAPER_RECIPE["lr"], epochs=PAPER_RECIPE["epochs"],
               patience=PAPER_RECIPE["patience"], batch_size=PAPER_RECIPE["batch_size"],
               decay_rate=PAPER_RECIPE["lr_decay_per_epoch"], output=f"runs/corrformer-{preset}",
               # the FFT of the auto-correlation (aten::fft_rfft) has no ONNX export in torch's exporter
               # (opset 18); the run ends with deploy.safetensors only
               export_onnx=False)
    if preset == "demo":
        from .corrformer import DEMO_RECIPE

        out.update(DEMO_RECIPE)
    return out


#: Defaults of the embedded data. CO2: monthly, season 12; the grid: hourly, 11 stations per node, season 24;
#: the advected grid as the grid, without the coordinate embedding (its test stations are not the training ones).
EMBEDDED_DEFAULTS: Dict[str, Dict[str, Any]] = {
    # recipes chosen on validation (docs/timeseries.md, "Choosing the recipe"): node normalisation and a constant
    # rate, up to 15 epochs with early stopping, beat RevIN with the rate halved every epoch on all three
    "co2": dict(freq="m", seasonal_period=12, norm="node", lr_halving=False, epochs=15, lr=1e-3, batch_size=16,
                output="runs/forecast-co2"),
    "synthetic-grid": dict(freq="h", seasonal_period=24, enc_in=11, norm="node", lr_halving=False, epochs=15,
                           lr=1e-3, batch_size=8, train_stride=3, output="runs/forecast-grid"),
    "synthetic-advection": dict(freq="h", seasonal_period=24, enc_in=11, use_coords=False, norm="node",
                                lr_halving=False, epochs=15, lr=1e-3, batch_size=8, train_stride=3,
                                output="runs/forecast-advection"),
}
ForecastTrainConfig.RECIPES = dict(EMBEDDED_DEFAULTS)  # and the Corrformer presets ("paper", "demo")


def forecast_table(result: TrainResult) -> str:
    """The model and the naive baselines side by side on the test windows of a :func:`train_forecaster` run
    (original units; with ``data_scale`` ≠ 1 also in physical units, i.e. MSE / scale², MAE / scale)."""
    x = result.extras
    name = "UniRepLKNet-Corrformer" if x["groups"] else getattr(result.model, "encoder_label",
                                                                "UniRepLKNet forecaster")
    rows = [(name, x["test"])] + [(k, v) for k, v in x["baselines"].items()]
    return metrics_table(rows, x["data_scale"])


def metrics_table(rows: Sequence[Tuple[str, Dict[str, float]]], data_scale: float = 1.0) -> str:
    """One line per (name, metrics) with MSE/MAE on the data's scale, and physical ones when it is not 1."""
    physical = data_scale != 1.0
    head = f"{'':<34}{'MSE':>12}{'MAE':>10}" + (f"{'MSE phys.':>12}{'MAE phys.':>11}" if physical else "")
    lines = [head, "-" * len(head)]
    for name, m in rows:
        line = f"{name:<34}{m['mse']:>12.4f}{m['mae']:>10.4f}"
        if physical:
            line += f"{m['mse'] / data_scale ** 2:>12.4f}{m['mae'] / data_scale:>11.4f}"
        lines.append(line)
    return "\n".join(lines)




class LinearForecasting(ForecastTask):
    """The engine task of the linear-head forecaster (:class:`UniRepLKNetForecaster`), trained on the MSE in
    units of each variable's training standard deviation (so variables of different units weigh alike)."""

    def loss_scale(self, train: Series) -> Optional[torch.Tensor]:
        scale = torch.from_numpy(np.maximum(train.values.std(0), 1e-6)).float()
        return scale if train.targets is None else scale[train.targets]

    def create_model(self, cfg: ForecastTrainConfig, train: Series) -> nn.Module:
        return UniRepLKNetForecaster(
            train.num_variables, cfg.seq_len, cfg.pred_len, cfg.enc_in, cfg.d_model, cfg.freq or train.freq,
            train.coords if cfg.use_coords else None, cfg.model, cfg.model_kwargs, cfg.drop_path, cfg.dropout,
            norm=cfg.norm, linear_skip=cfg.linear_skip)

    def model_config(self, cfg: ForecastTrainConfig, data: TaskData, model: nn.Module) -> Dict[str, Any]:
        return dict(plain(model.config), task="forecast")

    def training_loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        y = ctx.to_device(batch.targets[:, -self.pred_len:])
        return StepOutput(self.target_loss(forecast_batch(model, batch, ctx.device), y), len(y))


def forecast_task(cfg: ForecastTrainConfig, announce: Optional[Callable[[nn.Module], None]] = None) -> ForecastTask:
    """The task a config trains: the Corrformer for a ``preset``, else the linear-head forecaster."""
    if cfg.preset:
        from .corrformer import CorrformerForecasting

        return CorrformerForecasting(announce)
    return LinearForecasting(announce)


def build_forecast_model(cfg: ForecastTrainConfig) -> Tuple[nn.Module, ForecastTask]:
    """The model a ``forecast-train`` run with these options trains (and its task, with the data loaded),
    without training; ``forecast-train --dry-run`` prints its size."""
    task = forecast_task(cfg)
    data = task.build_data(cfg, cfg.seed)
    return task.build_model(cfg, data, False), task


@torch.no_grad()
def evaluate_run(model: nn.Module, cfg: ForecastTrainConfig, windows: WindowDataset,
                 device: Union[str, torch.device] = "cpu", train_windows: Optional[WindowDataset] = None
                 ) -> Tuple[Dict[str, Dict[str, float]], Dict[str, Dict[str, float]]]:
    """A trained model on ``windows``: its metrics per variable group (``mse``/``mae`` on the data's scale and
    ``mse_physical``/``mae_physical``; the first group is every series, named by :func:`target_label`; the
    linear-head forecaster has only that one) and the baselines' (last value, seasonal naive, and for the
    Corrformer the ridge linear model of the same inputs fitted on ``train_windows``)."""
    corrformer = bool(cfg.preset)
    loader = window_loader(windows, 8 if corrformer else 64, False, 0)
    columns = target_columns(windows.series)
    baselines = evaluate_baselines(loader, cfg.pred_len, cfg.seasonal_period, columns)
    label = target_label(cfg, windows.series)
    if not corrformer:
        m = evaluate_forecaster(model.to(device), loader, device, columns=columns)
        m.update(mse_physical=m["mse"] / cfg.data_scale ** 2, mae_physical=m["mae"] / cfg.data_scale)
        return {label: m}, baselines
    from .corrformer import LinearWindowBaseline, evaluate, variable_groups

    groups = evaluate(model.to(device), windows, variable_groups(cfg, model, label, windows.series.targets), cfg.data_scale, device,
                      batch_size=8)
    if train_windows is not None:
        coords = train_windows.series.coords if cfg.use_coords else None
        linear = LinearWindowBaseline(model.cfg, coords).fit(train_windows)
        targets = None if columns is None else {"all": columns.tolist()}
        baselines["linear (ridge, same inputs)"] = evaluate(linear, windows, targets, cfg.data_scale,
                                                            batch_size=64)["all"]
    return groups, baselines


def train_forecaster(cfg: ForecastTrainConfig, callbacks: Sequence[Callable[[Any], None]] = (),
                     announce: Optional[Callable[[nn.Module], None]] = None) -> TrainResult:
    """Train on the engine (``last.pth``, ``best.pth``, deploy file), then report the best checkpoint's test
    MSE/MAE (the data's own units) next to the naive baselines (and, for the Corrformer presets, per variable
    group and next to the ridge linear model). ``resume='auto'`` continues ``output/last.pth``.

    Returns the engine's :class:`~unireplknet.engine.TrainResult` (``model``: the best weights) with ``extras``:
    ``test`` (the best checkpoint's test metrics), ``baselines``, ``groups`` (Corrformer presets: per variable
    group), ``description`` (the data) and ``data_scale``; :func:`forecast_table` prints them."""
    from ...engine import fit

    task = forecast_task(cfg, announce)
    r = fit(task, cfg, callbacks)
    model = r.best_model()
    device = next(model.parameters()).device
    groups: Dict[str, Dict[str, float]] = {}
    if cfg.preset:
        train_all = forecast_windows(task.splits["train"], cfg)
        groups, baselines = evaluate_run(model, cfg, task.windows["test"], device, train_all)
        test = dict(next(iter(groups.values())))  # every series (the first group)
    else:
        test_loader = window_loader(task.windows["test"], 64, False, 0)
        test = evaluate_forecaster(model, test_loader, device, task.scale, task.columns)
        baselines = evaluate_baselines(test_loader, cfg.pred_len, cfg.seasonal_period, task.columns)
    r.extras.update(test=test, baselines=baselines, groups=groups, description=task.description,
                    data_scale=cfg.data_scale)
    return r


def _zero_coordinates(num_variables: int, coord_dim: int) -> Optional[np.ndarray]:
    return np.zeros((num_variables, coord_dim), np.float32) if coord_dim else None


def _check_coordinates(num_variables: Any, coord_dim: Any, state: Dict[str, Any], source: str) -> None:
    """The station count and coordinate width of a model_config against the file's ``geo`` tensor: the
    coordinates are the one thing built in NumPy, outside the meta-device check of ``build_checked``."""
    if not all(isinstance(v, int) and v >= 0 for v in (num_variables, coord_dim)):
        raise ValueError(f"{source}: model_config.num_variables ({num_variables!r}) and coord_dim ({coord_dim!r}) "
                         "must be whole numbers; the file was altered or not written by unireplknet")
    if not coord_dim:
        return
    geo = state.get("geo")
    stored = tuple(geo.shape) if hasattr(geo, "shape") else None
    if stored is None or int(np.prod(stored)) != num_variables * coord_dim:
        raise ValueError(f"{source}: model_config describes {num_variables:,} stations × {coord_dim} coordinates, "
                         f"but the file's tensor geo is {stored if stored is not None else 'missing'}; the metadata "
                         "does not belong to these weights (edited or corrupt). Use the file the run wrote")


def load_forecaster(path: Union[str, Path]) -> Tuple[nn.Module, ForecastTrainConfig]:
    """Model (eval mode) and training config from a forecasting checkpoint (either model)."""
    from ...checkpoint import require_fields
    from ...limits import build_checked

    ckpt = load_training_checkpoint(path, task="forecast", command="forecast-train")
    cfg = ForecastTrainConfig(**{k: v for k, v in ckpt["config"].items()
                                 if k in ForecastTrainConfig.__dataclass_fields__})
    if cfg.node_list is not None:
        cfg.node_list = tuple(cfg.node_list)
    mc, state, source = ckpt["model_config"], ckpt["model"], str(path)
    # Every size comes from the file: checked against its tensors and the memory limit before anything is built.
    if mc.get("architecture") == "corrformer":
        from .corrformer import CorrformerConfig, CorrformerUniRepLKNet

        require_fields(mc, ("corrformer", "coord_dim"), source)
        try:
            c = CorrformerConfig(**dict(mc["corrformer"], node_list=tuple(mc["corrformer"]["node_list"]),
                                        with_cp=False))  # inference: activation checkpointing saves nothing
        except (TypeError, KeyError) as e:
            raise ValueError(f"{source}: the field model_config.corrformer is not a Corrformer configuration ({e}); "
                             "the file was altered or not written by unireplknet") from None
        _check_coordinates(c.num_variables, mc["coord_dim"], state, source)
        model: nn.Module = build_checked(lambda: CorrformerUniRepLKNet(c, _zero_coordinates(c.num_variables,
                                                                                             mc["coord_dim"])),
                                         state, source)
    else:
        require_fields(mc, ("num_variables", "seq_len", "pred_len", "enc_in", "d_model", "freq", "coord_dim",
                            "model", "model_kwargs", "affine"), source)
        _check_coordinates(mc["num_variables"], mc["coord_dim"], state, source)
        # The geo buffer (standardised coordinates) comes from the state dict; zeros only give it its shape.
        model = build_checked(lambda: UniRepLKNetForecaster(
            mc["num_variables"], mc["seq_len"], mc["pred_len"], mc["enc_in"], mc["d_model"], mc["freq"],
            _zero_coordinates(mc["num_variables"], mc["coord_dim"]), mc["model"], mc["model_kwargs"], 0.0, 0.0,
            mc["affine"], mc.get("norm", "revin"), mc.get("linear_skip", False)), state, source)
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg
