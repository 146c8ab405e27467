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
make this task train that model instead (:mod:`unireplknet.tasks.corrformer`), on the same engine loop, with
the paper's recipe as defaults; docs/timeseries.md has both.
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..engine.checkpointing import load_training_checkpoint
from ..engine.config import EngineConfig, plain
from ..engine.distributed import all_gather_object
from ..engine.task import StepContext, StepOutput, TaskData
from ..modalities.timeseries import (
    TIME_FEATURE_DIMS,
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

__all__ = [
    "image_shape",
    "SeriesNormalizer",
    "TokenEmbedding",
    "UniRepLKNetForecaster",
    "naive_forecast",
    "seasonal_naive_forecast",
    "forecast_metrics",
    "ForecastTrainConfig",
    "ForecastResult",
    "TINY_FORECAST_MODEL_KWARGS",
    "ADVECTION_DEMO",
    "PAPER_GLOBAL_TEMP",
    "build_forecast_splits",
    "evaluate_forecaster",
    "evaluate_baselines",
    "CORRFORMER_PRESETS",
    "corrformer_defaults",
    "metrics_table",
    "build_forecast_model",
    "evaluate_run",
    "train_forecaster",
    "load_forecaster",
]

_logger = logging.getLogger(__name__)

#: Small encoder of the embedded-data defaults: at 48 × 48 input the stage maps are 12, 6, 3 and 2 wide.
TINY_FORECAST_MODEL_KWARGS: Dict[str, Any] = dict(
    depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), kernel_sizes=((3,), (7,), (3, 3), (3,)))

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


def image_shape(length: int, d_model: int, min_side: int = 32) -> Tuple[int, int]:
    """(H, W) with H · W = length · d_model, H ≤ W and H as close to the square root as divisors allow."""
    n = length * d_model
    h = int(math.isqrt(n))
    while n % h:
        h -= 1
    w = n // h
    if h < min_side:
        raise ValueError(
            f"the embedded series ({length} steps × d_model {d_model} = {n} values) makes a {h} × {w} image; the "
            f"backbone needs at least {min_side} × {min_side}: raise d_model so that seq_len · d_model is a square "
            f"≥ {min_side * min_side} (e.g. d_model = seq_len, or 768 for seq_len 48)"
        )
    return h, w


class SeriesNormalizer(nn.Module):
    """Per-window standardisation with a learnable affine shared by the nodes.

    ``mode='revin'`` (the paper's, as Corrformer and RevIN): each variable minus its window mean, divided by its
    window standard deviation. ``mode='node'``: each variable minus its last input value, divided by one
    standard deviation pooled over the node's ``enc_in`` variables — the ratios between a node's stations
    survive, so a forecast can carry one station's swings to another in their own units (RevIN scales each
    station to unit variance and hides them). Both are equivariant to affine changes of units.
    """

    MODES = ("revin", "node")

    def __init__(self, enc_in: int, affine: bool = True, eps: float = 1e-5, mode: str = "revin"):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"normalisation {mode!r}: choose one of {', '.join(self.MODES)}")
        self.eps, self.mode, self.enc_in = eps, mode, enc_in
        self.weight = nn.Parameter(torch.ones(enc_in)) if affine else None
        self.bias = nn.Parameter(torch.zeros(enc_in)) if affine else None

    def _tile(self, p: torch.Tensor, variables: int) -> torch.Tensor:
        return p.repeat(variables // p.numel())

    def normalize(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        if self.mode == "node":
            b, length, v = x.shape
            mean = x[:, -1:, :].detach()
            nodes = (x - mean).reshape(b, length, v // self.enc_in, self.enc_in)
            std = torch.sqrt(nodes.pow(2).mean(dim=(1, 3), keepdim=True) + self.eps).detach()
            std = std.expand(b, 1, v // self.enc_in, self.enc_in).reshape(b, 1, v)
        else:
            mean = x.mean(dim=1, keepdim=True).detach()
            std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        x = (x - mean) / std
        if self.weight is not None:
            x = x * self._tile(self.weight, x.shape[-1]) + self._tile(self.bias, x.shape[-1])
        return x, (mean, std)

    def denormalize(self, y: torch.Tensor, stats: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = stats
        if self.weight is not None:
            y = (y - self._tile(self.bias, y.shape[-1])) / (self._tile(self.weight, y.shape[-1]) + self.eps * self.eps)
        return y * std + mean


class TokenEmbedding(nn.Module):
    """Value Conv1d (circular, kernel 3, no bias) + calendar Linear + optional station-coordinate Linear."""

    def __init__(self, enc_in: int, d_model: int, time_dim: int, coord_dim: int = 0, dropout: float = 0.05):
        super().__init__()
        self.value = nn.Conv1d(enc_in, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.value.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.time = nn.Linear(time_dim, d_model, bias=False) if time_dim > 0 else None
        self.geo = nn.Linear(enc_in * coord_dim, d_model) if coord_dim > 0 else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, x_mark: Optional[torch.Tensor], geo: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (N, L, enc_in); x_mark: (N, L, time_dim); geo: (N, enc_in·coord_dim) → (N, L, d_model)."""
        out = self.value(x.transpose(1, 2)).transpose(1, 2)
        if self.time is not None and x_mark is not None:
            out = out + self.time(x_mark)
        if self.geo is not None and geo is not None:
            out = out + self.geo(geo)[:, None, :]
        return self.dropout(out)


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
        from ..engine.trainer import build_model

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
        from ..model import UniRepLKNet

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


# ----------------------------------------------------------------------------------------------- baselines
def naive_forecast(x: torch.Tensor, pred_len: int) -> torch.Tensor:
    """Last value repeated: (B, L, V) → (B, pred_len, V)."""
    return x[:, -1:, :].expand(-1, pred_len, -1).clone()


def seasonal_naive_forecast(x: torch.Tensor, pred_len: int, period: int) -> torch.Tensor:
    """The value one season earlier, from the input window: ŷ[t + h] = x[t + h - period·ceil(h/period)]."""
    length = x.shape[1]
    if not 1 <= period <= length:
        raise ValueError(f"seasonal period {period} must be between 1 and the input length {length}")
    idx = torch.tensor([length - period + (h % period) for h in range(pred_len)], device=x.device)
    return x[:, idx, :]


def forecast_metrics(pred: torch.Tensor, target: torch.Tensor) -> Dict[str, float]:
    """MSE and MAE over every window, horizon step and variable, in the series' own units."""
    diff = (pred.double() - target.double())
    return dict(mse=float(diff.pow(2).mean()), mae=float(diff.abs().mean()))


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

    Unset (None) options take the defaults of the data (:data:`EMBEDDED_DEFAULTS`) or, with ``preset``
    'paper' / 'demo' (the paper's Corrformer model), of :func:`corrformer_defaults`.
    """

    data: Optional[str] = None
    variable: str = "temp"
    time_column: str = "date"
    freq: Optional[str] = None
    nan_policy: str = "error"
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

    def __post_init__(self) -> None:
        if not self.lr_halving:
            self.decay_rate = 1.0

    @classmethod
    def for_data(cls, **options: Any) -> "ForecastTrainConfig":
        options = {k: v for k, v in options.items() if v is not None}
        data = options.get("data")
        preset = options.get("preset")
        if preset is not None and preset not in CORRFORMER_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(CORRFORMER_PRESETS)}")
        defaults = corrformer_defaults(preset) if preset else EMBEDDED_DEFAULTS.get(data or "co2", {})
        for k, v in defaults.items():
            options.setdefault(k, copy.deepcopy(v))
        if options.get("node_list") is not None:
            options["node_list"] = tuple(int(n) for n in options["node_list"])
        return cls(**options)


#: The presets that train the paper's Corrformer + UniRepLKNet model (``unireplknet.tasks.corrformer.PRESETS``).
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


#: The cross-station demo (``--data synthetic-advection``): chains of 11 stations in which the weather moves one
#: station per day (24 h, the forecast length), half of it through a nonlinear coupling.
ADVECTION_DEMO: Dict[str, Any] = dict(num_stations=22, days=100, advection_hours=24, chain=11, linear_share=0.5)

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


#: Seasonal-naive period by frequency when none is given: a day of hours, a week of days, a year of weeks/months.
DEFAULT_SEASONAL_PERIOD = {"h": 24, "d": 7, "w": 52, "m": 12}


@dataclass
class ForecastResult:
    history: List[Dict[str, Any]]
    best_epoch: int
    test: Dict[str, float]
    baselines: Dict[str, Dict[str, float]]
    checkpoint: Path
    best_checkpoint: Path
    wall_s: float
    description: str
    model: Optional[nn.Module] = None
    result: Any = None  # the engine's TrainResult (deploy file, …)
    groups: Dict[str, Dict[str, float]] = field(default_factory=dict)  # Corrformer runs: per variable group
    data_scale: float = 1.0

    def table(self) -> str:
        """Model and baselines side by side on the test windows (original units; with ``data_scale`` ≠ 1 also
        in physical units, i.e. MSE / scale², MAE / scale)."""
        name = "UniRepLKNet-Corrformer" if self.groups else getattr(self.model, "encoder_label",
                                                                     "UniRepLKNet forecaster")
        rows = [(name, self.test)] + [(k, v) for k, v in self.baselines.items()]
        return metrics_table(rows, self.data_scale)


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


# ----------------------------------------------------------------------------------------------- data
def build_forecast_splits(cfg: ForecastTrainConfig) -> Tuple[Dict[str, Series], str]:
    """``{'train', 'val', 'test'}`` series and a description, for the config's data source."""
    data = cfg.data
    if cfg.preset and (data is None or not Path(data).is_dir()):
        raise SeriesError(f"--preset {cfg.preset} trains the Corrformer on station data: --data must be a folder in the "
                          f"Global Temp/Wind layout ({cfg.variable}_global_hourly_{{train,val,test}}.npy, "
                          f"data_time_*.npy, stations_sorted.npy), not {data or 'the default co2'!r}; "
                          "scripts/make_global_weather.py OUT or `unireplknet forecast-make-grid OUT` writes one")
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
        splits = {k: load_global_station_folder(path, cfg.variable, k, cfg.nan_policy, feature=feature)
                  for k in ("train", "val", "test")}
        counts = {k: s.num_variables for k, s in splits.items()}
        if len(set(counts.values())) != 1:
            raise SeriesError(f"station counts differ between splits: {counts}")
        return splits, f"{path.name} ({cfg.variable})"
    if path.suffix.lower() == ".csv":
        s = load_csv_series(path, cfg.time_column, freq=cfg.freq or "h", nan_policy=cfg.nan_policy)
    elif path.suffix.lower() in (".npy", ".npz"):
        s = load_array_series(path, freq=cfg.freq or "h", nan_policy=cfg.nan_policy)
    else:
        raise SeriesError(f"--data {data}: expected co2, synthetic-grid, synthetic-advection, a Global Temp/Wind "
                          "folder, a .csv or a .npy/.npz file")
    return chronological_split(s, cfg.seq_len), path.name


def _collate(batch):
    return tuple(torch.stack([b[i] for b in batch]) for i in range(4))


def calendar_names(cfg: ForecastTrainConfig) -> Optional[Tuple[str, ...]]:
    """The calendar features of ``cfg.calendar`` ('hour,dow' -> ('hour', 'dow')); None keeps them all."""
    if cfg.calendar is None or cfg.calendar == "all":
        return None
    return tuple(name.strip() for name in cfg.calendar.split(",") if name.strip())


def forecast_windows(series: Series, cfg: ForecastTrainConfig, stride: int = 1) -> WindowDataset:
    """The windows of one split as a run with ``cfg`` sees them (lengths and calendar features)."""
    return WindowDataset(series, cfg.seq_len, cfg.label_len, cfg.pred_len, stride, calendar=calendar_names(cfg))


def _loader(ds: WindowDataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=_collate,
                      generator=torch.Generator().manual_seed(seed))


def _is_corrformer(model: nn.Module) -> bool:
    from .corrformer import CorrformerUniRepLKNet

    return isinstance(getattr(model, "module", model), CorrformerUniRepLKNet)


def _forecast(model: nn.Module, batch: Sequence[torch.Tensor], device: Union[str, torch.device],
              corrformer: bool) -> torch.Tensor:
    """The model's forecast of a ``(x, x_mark, y, y_mark)`` batch: the Corrformer decoder also reads the
    calendar features of its label + forecast span."""
    x, xm, _, ym = batch
    if corrformer:
        return model(x.to(device), xm.to(device), ym.to(device))
    return model(x.to(device), xm.to(device))


@torch.no_grad()
def evaluate_forecaster(model: nn.Module, loader: DataLoader, device: Union[str, torch.device] = "cpu",
                        scale: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """MSE/MAE of the model's forecasts (original units) and ``loss`` (MSE in units of ``scale``; without a
    ``scale``, the plain MSE — the paper's loss for the Corrformer)."""
    was = model.training
    model.eval()
    corrformer = _is_corrformer(model)
    preds, targets = [], []
    for batch in loader:
        preds.append(_forecast(model, batch, device, corrformer).float().cpu())
        targets.append(batch[2][:, -model.pred_len:])
    model.train(was)
    gathered = all_gather_object((preds, targets))  # every rank's windows (one process: just its own)
    pred = torch.cat([t for p, _ in gathered for t in p])
    target = torch.cat([t for _, tg in gathered for t in tg])
    out = forecast_metrics(pred, target)
    out["loss"] = float(((pred - target) / scale).pow(2).mean()) if scale is not None else out["mse"]
    out["windows"] = int(pred.shape[0])
    return out


def evaluate_baselines(loader: DataLoader, pred_len: int, period: Optional[int]) -> Dict[str, Dict[str, float]]:
    """Last-value and (when ``period`` fits in the input) seasonal-naive forecasts on the same windows."""
    xs, ys = [], []
    for x, _, y, _ in loader:
        xs.append(x)
        ys.append(y[:, -pred_len:])
    x, y = torch.cat(xs), torch.cat(ys)
    out = {"last value (naive)": forecast_metrics(naive_forecast(x, pred_len), y)}
    if period and period <= x.shape[1]:
        out[f"seasonal naive (period {period})"] = forecast_metrics(seasonal_naive_forecast(x, pred_len, period), y)
    return out



def _build(cfg: ForecastTrainConfig, train: Series) -> nn.Module:
    if cfg.preset:
        return _build_corrformer(cfg, train)
    return UniRepLKNetForecaster(
        train.num_variables, cfg.seq_len, cfg.pred_len, cfg.enc_in, cfg.d_model, cfg.freq or train.freq,
        train.coords if cfg.use_coords else None, cfg.model, cfg.model_kwargs, cfg.drop_path, cfg.dropout,
        norm=cfg.norm, linear_skip=cfg.linear_skip)


def _resolve_node_list(cfg: ForecastTrainConfig, num_variables: int) -> Tuple[int, ...]:
    """The preset's node tree when it fits the data's station count, else ``cfg.node_list`` (checked)."""
    from .corrformer import PRESETS

    enc_in = cfg.enc_in or PRESETS[cfg.preset].enc_in
    if num_variables % enc_in:
        raise SeriesError(f"{num_variables} station series cannot be grouped into nodes of {enc_in} (--enc-in); pass "
                          "an --enc-in that divides the number of stations")
    nodes = num_variables // enc_in
    node_list = tuple(cfg.node_list or PRESETS[cfg.preset].node_list)
    if int(np.prod(node_list)) != nodes:
        raise SeriesError(
            f"the data has {num_variables} station series = {nodes} nodes of {enc_in}, but the node tree "
            f"{','.join(map(str, node_list))} holds {int(np.prod(node_list))} nodes (the paper: 7,50 = 350 nodes of "
            f"11 = 3,850 stations); pass --node-list A,B with A·B = {nodes}, stations ordered so that each group of "
            f"B consecutive nodes is a region")
    return node_list


def _build_corrformer(cfg: ForecastTrainConfig, train: Series) -> nn.Module:
    """The paper's Corrformer + UniRepLKNet of ``cfg.preset`` with the sizes the options override."""
    from .corrformer import PRESETS, build_model

    preset = PRESETS[cfg.preset]
    overrides: Dict[str, Any] = dict(
        seq_len=cfg.seq_len, label_len=cfg.label_len, pred_len=cfg.pred_len, enc_in=cfg.enc_in or preset.enc_in,
        d_model=cfg.d_model, dropout=cfg.dropout, drop_path=cfg.drop_path, freq=cfg.freq or train.freq,
        use_geo=cfg.use_coords, node_list=_resolve_node_list(cfg, train.num_variables),
        with_cp=preset.with_cp or cfg.grad_checkpointing, memory_layout=cfg.memory_layout or preset.memory_layout,
        encoder=cfg.encoder or preset.encoder)
    return build_model(cfg.preset, cfg.encoder_size, train.coords if cfg.use_coords else None, **overrides)


def target_label(cfg: ForecastTrainConfig, series: Series) -> str:
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
    if len(names) == n and n == 1:
        return names[0]
    if len(names) == n and n <= 3:
        return ", ".join(names)
    if len(names) == n:
        return f"{names[0]} … {names[-1]} ({n} series)"
    stem = Path(data).stem if data not in (None, "co2") else "value"
    return stem if n == 1 else f"{stem} ({n} series)"


def _variable_groups(cfg: ForecastTrainConfig, model: nn.Module, label: str) -> Dict[str, List[int]]:
    """The variable groups that forecast-eval reports: all series (``label``), then each region of the node
    tree's first level (the paper's 7 × 50: 7 regions of 50 nodes; the generated data: 4 latitude bands of 7)."""
    groups: Dict[str, List[int]] = {label: list(range(model.num_variables))}
    regions = model.cfg.node_list[0]
    if regions > 1:
        per = model.num_variables // regions
        for r in range(regions):
            groups[f"region {r + 1}/{regions} (series {r * per}-{(r + 1) * per - 1})"] = list(range(r * per, (r + 1) * per))
    return groups


class Forecasting:
    """The engine task of :func:`train_forecaster`: sliding windows and the validation loss as the key metric.

    Two models: the linear-head forecaster, trained on the MSE in units of each variable's training standard
    deviation (so variables of different units weigh alike); or, with ``cfg.preset`` ('paper', 'demo'), the
    paper's Corrformer + UniRepLKNet, trained on the plain MSE on the files' scale (the paper's loss).
    ``announce(model)`` is called once the model is built (the command line prints its size there)."""

    name = "forecast"
    metric = "loss"
    higher_is_better = False
    find_unused_parameters = True  # the backbone's final norm is not used by the forecasting head

    def __init__(self, announce: Optional[Callable[[nn.Module], None]] = None):
        self.announce = announce

    def build_data(self, cfg: ForecastTrainConfig, seed: int) -> TaskData:
        splits, description = build_forecast_splits(cfg)
        if cfg.freq is None:
            cfg.freq = splits["train"].freq
        if cfg.seasonal_period is None:
            cfg.seasonal_period = DEFAULT_SEASONAL_PERIOD[cfg.freq]
        self.corrformer = bool(cfg.preset)
        if self.corrformer:
            cfg.node_list = _resolve_node_list(cfg, splits["train"].num_variables)  # stored in the checkpoint
        self.splits, self.description = splits, description
        strides = dict(train=cfg.train_stride, val=cfg.val_stride, test=1)
        self.windows = {k: forecast_windows(s, cfg, strides[k]) for k, s in splits.items()}
        self.scale = None if self.corrformer else torch.from_numpy(
            np.maximum(splits["train"].values.std(0), 1e-6)).float()
        self.pred_len = cfg.pred_len
        data_config = dict(description=description, scale=None if self.scale is None else self.scale.tolist(),
                           data_scale=cfg.data_scale)
        return TaskData(self.windows["train"], self.windows["val"], _collate, _collate, description,
                        data_config=data_config, eval_batch_size=8 if self.corrformer else 64)

    def build_model(self, cfg: ForecastTrainConfig, data: TaskData, pretrained: bool) -> nn.Module:
        if pretrained:
            raise ValueError("--pretrained: the forecaster's backbone takes embedded series, not images; "
                             "use --checkpoint to start from other forecasting weights")
        model = _build(cfg, self.splits["train"])
        if self.announce is not None:
            self.announce(model)
        return model

    def model_config(self, cfg: ForecastTrainConfig, data: TaskData, model: nn.Module) -> Dict[str, Any]:
        if self.corrformer:
            from dataclasses import asdict

            return dict(task="forecast", architecture="corrformer", preset=cfg.preset, coord_dim=model.coord_dim,
                        corrformer=plain(asdict(model.cfg)))
        return dict(plain(model.config), task="forecast")

    def training_loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        y = ctx.to_device(batch[2][:, -self.pred_len:])
        pred = _forecast(model, batch, ctx.device, self.corrformer)
        if self.corrformer:
            from .corrformer import forecast_loss

            return StepOutput(forecast_loss(pred, y), len(y))
        return StepOutput(((pred - y) / self.scale.to(ctx.device)).pow(2).mean(), len(y))

    def evaluate(self, model: nn.Module, loader: Any, ctx: StepContext) -> Dict[str, float]:
        return evaluate_forecaster(model, loader, ctx.device, self.scale)

    def deploy_example(self, data: TaskData) -> Tuple[torch.Tensor, ...]:
        x, xm, _, ym = _collate([self.windows["val"][0], self.windows["val"][min(1, len(self.windows["val"]) - 1)]])
        return (x, xm, ym) if self.corrformer else (x, xm)



def build_forecast_model(cfg: ForecastTrainConfig) -> Tuple[nn.Module, "Forecasting"]:
    """The model a ``forecast-train`` run with these options trains (and its task, with the data loaded),
    without training; ``forecast-train --dry-run`` prints its size."""
    task = Forecasting()
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
    loader = _loader(windows, 8 if _is_corrformer(model) else 64, False, 0)
    baselines = evaluate_baselines(loader, cfg.pred_len, cfg.seasonal_period)
    label = target_label(cfg, windows.series)
    if not _is_corrformer(model):
        m = evaluate_forecaster(model.to(device), loader, device)
        m.update(mse_physical=m["mse"] / cfg.data_scale ** 2, mae_physical=m["mae"] / cfg.data_scale)
        return {label: m}, baselines
    from .corrformer import LinearWindowBaseline, evaluate

    groups = evaluate(model.to(device), windows, _variable_groups(cfg, model, label), cfg.data_scale, device,
                      batch_size=8)
    if train_windows is not None:
        coords = train_windows.series.coords if cfg.use_coords else None
        linear = LinearWindowBaseline(model.cfg, coords).fit(train_windows)
        baselines["linear (ridge, same inputs)"] = evaluate(linear, windows, None, cfg.data_scale,
                                                            batch_size=64)["all"]
    return groups, baselines


def train_forecaster(cfg: ForecastTrainConfig, callbacks: Sequence[Callable[[Any], None]] = (),
                     announce: Optional[Callable[[nn.Module], None]] = None) -> ForecastResult:
    """Train on the engine (``last.pth``, ``best.pth``, deploy file), then report the best checkpoint's test
    MSE/MAE (the data's own units) next to the naive baselines (and, for the Corrformer presets, per variable
    group and next to the ridge linear model). ``resume='auto'`` continues ``output/last.pth``."""
    from ..engine import fit

    task = Forecasting(announce)
    r = fit(task, cfg, callbacks)
    model = r.best_model()
    device = next(model.parameters()).device
    groups: Dict[str, Dict[str, float]] = {}
    if task.corrformer:
        train_all = forecast_windows(task.splits["train"], cfg)
        groups, baselines = evaluate_run(model, cfg, task.windows["test"], device, train_all)
        test = dict(next(iter(groups.values())))  # every series (the first group)
    else:
        test_loader = _loader(task.windows["test"], 64, False, 0)
        test = evaluate_forecaster(model, test_loader, device, task.scale)
        baselines = evaluate_baselines(test_loader, cfg.pred_len, cfg.seasonal_period)
    return ForecastResult(history=r.history, best_epoch=int(r.best["epoch"]) if r.best else 0, test=test,
                          baselines=baselines, checkpoint=r.checkpoint, best_checkpoint=r.best_checkpoint,
                          wall_s=r.wall_s, description=task.description, model=model, result=r, groups=groups,
                          data_scale=cfg.data_scale)


def load_forecaster(path: Union[str, Path]) -> Tuple[nn.Module, ForecastTrainConfig]:
    """Model (eval mode) and training config from a forecasting checkpoint (either model)."""
    ckpt = load_training_checkpoint(path, task="forecast", command="forecast-train")
    cfg = ForecastTrainConfig(**{k: v for k, v in ckpt["config"].items()
                                 if k in ForecastTrainConfig.__dataclass_fields__})
    if cfg.node_list is not None:
        cfg.node_list = tuple(cfg.node_list)
    mc = ckpt["model_config"]
    if mc.get("architecture") == "corrformer":
        from .corrformer import CorrformerConfig, CorrformerUniRepLKNet

        sizes = dict(mc["corrformer"], node_list=tuple(mc["corrformer"]["node_list"]))
        sizes["with_cp"] = False  # inference: checkpointing saves nothing
        c = CorrformerConfig(**sizes)
        coords = np.zeros((c.num_variables, mc["coord_dim"]), np.float32) if mc["coord_dim"] else None
        model: nn.Module = CorrformerUniRepLKNet(c, coords)
    else:
        # The geo buffer (standardised coordinates) comes from the state dict; zeros only give it its shape.
        coords = np.zeros((mc["num_variables"], mc["coord_dim"]), np.float32) if mc["coord_dim"] else None
        model = UniRepLKNetForecaster(mc["num_variables"], mc["seq_len"], mc["pred_len"], mc["enc_in"],
                                      mc["d_model"], mc["freq"], coords, mc["model"], mc["model_kwargs"], 0.0, 0.0,
                                      mc["affine"], mc.get("norm", "revin"), mc.get("linear_skip", False))
    model.load_state_dict(ckpt["model"])
    return model.eval(), cfg
