"""The paper's global weather forecaster: a Corrformer with a UniRepLKNet encoder (TPAMI §3.3 / Table 12).

UniRepLKNet reports Global Temp / Global Wind results by replacing the encoder of Corrformer (Wu et al.,
"Interpretable weather forecasting for worldwide stations with a unified deep model", Nature Machine
Intelligence 2023) with UniRepLKNet-S, which reads each node's embedded window as a one-channel image
(paper eq. (2): H·W = L·D′, 48·768 = 192²). One forward pass, for ``x`` of shape (B, L, V) with V = nodes ×
``enc_in`` stations:

1. per-window, per-variable standardisation with a learnable affine shared by the nodes (undone at the end);
2. series decomposition (moving average 25) gives the decoder's initial trend ``[last label_len trend; window
   mean]`` and seasonal part ``[last label_len seasonal; zeros]``;
3. per node, a DataEmbedding: circular Conv1d token embedding + calendar ('timeF') Linear + a Linear of the
   node's standardised station coordinates, then dropout;
4. the (L × d_model) tokens are reshaped into a (1, H, W) image and encoded by UniRepLKNet; the stage-4 map
   (C × h × w, 768 × 6 × 6 in the paper) becomes the decoder's memory of h·w tokens;
5. one Corrformer decoder layer: multi-correlation on itself, multi-correlation on the memory, a GELU
   feed-forward, three moving-average decompositions whose trends are projected and accumulated; then a
   seasonal LayerNorm and a Linear(d_model → enc_in); the forecast is trend + seasonal over the last
   ``pred_len`` steps, regrouped to (B, pred_len, V).

Multi-correlation (Corrformer §"Multi-Correlation") = auto-correlation over time within each node (the
Autoformer mechanism: FFT correlation, top-k lags, time-delay aggregation) + cross-correlation between nodes
on a multiscale tree (``node_list``, 7 × 50 = 350 in the paper): at each level every node is compared with
the level's mean ("pivot") series, its values are shifted by the best lag, the nodes are sorted by that lag
and a causal TCN runs along the sorted node axis, so a node only receives information from nodes whose weather
leads it; the result is shifted back. The TCN's channels are head_dim × decoder length (48 · 48 = 2304 in the
paper), which is where most of the paper's 132 M parameters sit (see docs/timeseries.md).

This module is the model, the data windows, the loss, the evaluation and the recipe constants; it trains
through the engine as the forecasting task's model choice (:mod:`unireplknet.tasks.forecast.linear`):
``unireplknet forecast-train --data DIR --preset paper [--encoder-size a|t|s]`` (or ``--preset demo``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ...data.timeseries import (
    TIME_FEATURE_DIMS,
    SeriesError,
    WindowDataset,
    load_global_station_folder,
)
from ...engine.config import plain
from ...engine.task import StepContext, StepOutput, TaskData
from .base import ForecastTask, forecast_batch
from .layers import TINY_FORECAST_MODEL_KWARGS, SeriesNormalizer, TokenEmbedding, forecast_metrics, image_shape

__all__ = [
    "CorrformerForecasting",
    "resolve_node_list",
    "build_preset_model",
    "variable_groups",
    "CorrformerConfig",
    "PRESETS",
    "PAPER_RECIPE",
    "DEMO_RECIPE",
    "PAPER_DATA_SCALE",
    "PAPER_PARAMS_M",
    "paper_learning_rate",
    "moving_average",
    "SeriesDecomposition",
    "circular_correlation",
    "delay_gather",
    "standardize_coordinates",
    "to_nodes",
    "from_nodes",
    "tokens_to_image",
    "image_to_tokens",
    "CausalTCN",
    "AutoCorrelation",
    "CrossCorrelation",
    "MultiCorrelation",
    "CorrformerDecoderLayer",
    "SeasonalLayerNorm",
    "CorrformerUniRepLKNet",
    "build_model",
    "encoder_kernel_sizes",
    "ENCODERS",
    "global_station_windows",
    "forecast_loss",
    "evaluate",
    "LinearWindowBaseline",
    "ridge_solution",
]

#: The paper's numbers for UniRepLKNet-S on Global Temp (TPAMI Table 12), for the parameter-count comparison.
PAPER_PARAMS_M = 132.0

#: The released Global Temp / Wind files hold the NCEI values multiplied by 10 (Corrformer README); the paper's
#: MSE/MAE are on that scale, so physical units are MSE / 100 and MAE / 10.
PAPER_DATA_SCALE = 10.0

#: The training recipe of the official run (R `exp/exp_main.py`, `run.py` defaults): MSE loss, Adam, lr 1e-4
#: halved after every epoch ('type1'), 10 epochs, early stop after 3 epochs without a better validation loss,
#: batch 1 window (= all 350 node images), no AMP.
PAPER_RECIPE: Dict[str, Any] = dict(loss="mse", optimizer="adam", lr=1e-4, lr_decay_per_epoch=0.5, epochs=10,
                                    patience=3, batch_size=1, amp=False)


#: The recipe of ``--preset demo`` (generated data, a few CPU minutes); docs/timeseries.md explains each
#: difference from :data:`PAPER_RECIPE`.
DEMO_RECIPE: Dict[str, Any] = dict(lr=1e-3, sched="cosine", min_lr=1e-5, epochs=4, batch_size=2, train_stride=4,
                                   val_stride=4)


def paper_learning_rate(epoch: int, base_lr: float = PAPER_RECIPE["lr"]) -> float:
    """The 'type1' schedule: ``base_lr`` in epoch 1, halved after every epoch (``epoch`` counts from 1)."""
    if epoch < 1:
        raise ValueError(f"epochs count from 1, got {epoch}")
    return base_lr * PAPER_RECIPE["lr_decay_per_epoch"] ** (epoch - 1)


# ----------------------------------------------------------------------------------------------- config
@dataclass
class CorrformerConfig:
    """Every size of the model. The defaults are the paper's (the official `Time-Series/` scripts, see module doc).

    ``memory_layout``: how the stage-4 map (N, C, h, w) becomes memory tokens. ``'tokens'`` (default): one
    token per position, its C channels as features (then a Linear to d_model if C ≠ d_model). ``'raw'``: the
    official code's plain ``reshape(N, -1, d_model)`` of the channel-major map, which the public code never
    ran (its encoder returned logits), kept one flag away.
    """

    seq_len: int = 48
    label_len: int = 24
    pred_len: int = 24
    enc_in: int = 11
    node_list: Tuple[int, ...] = (7, 50)
    d_model: int = 768
    n_heads: int = 16
    d_ff: int = 2048
    d_layers: int = 1
    moving_avg: int = 25
    factor_temporal: int = 1
    factor_spatial: int = 1
    tcn_layers: int = 1
    tcn_kernel: int = 3
    tcn_dropout: float = 0.2
    dropout: float = 0.05
    freq: str = "h"
    use_geo: bool = True
    encoder_size: str = "s"
    encoder: str = "unireplknet"  # or "convnext": timm's ConvNeXt of the same depths and widths (a peer row)
    encoder_stage4_kernel: int = 11
    drop_path: float = 0.4
    with_cp: bool = True
    memory_layout: str = "tokens"

    @property
    def node_num(self) -> int:
        return int(np.prod(self.node_list))

    @property
    def num_variables(self) -> int:
        return self.node_num * self.enc_in


#: ``paper``: the configuration of Table 12 (350 nodes × 11 stations = 3,850). ``demo``: the same pipeline
#: sized for the generated data set and a few CPU minutes (28 nodes × 11 = 308 stations).
PRESETS: Dict[str, CorrformerConfig] = {
    "paper": CorrformerConfig(),
    # 8 heads (head_dim 6) keep the TCNs at 288 channels; no dropout: the demo underfits (docs/timeseries.md)
    "demo": CorrformerConfig(node_list=(4, 7), d_model=48, n_heads=8, d_ff=128, encoder_size="tiny", drop_path=0.0,
                             dropout=0.0, tcn_dropout=0.0, with_cp=False),
}


# ----------------------------------------------------------------------------------------------- pieces
def moving_average(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Centred moving average over time of (N, L, C), the ends padded by repeating the first/last step."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"the moving-average kernel must be odd and positive, got {kernel_size}")
    half = (kernel_size - 1) // 2
    padded = torch.cat([x[:, :1].expand(-1, half, -1), x, x[:, -1:].expand(-1, half, -1)], dim=1)
    return F.avg_pool1d(padded.transpose(1, 2), kernel_size, stride=1).transpose(1, 2)


class SeriesDecomposition(nn.Module):
    """x → (seasonal, trend) with trend = moving average and seasonal = x − trend (Autoformer)."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        trend = moving_average(x, self.kernel_size)
        return x - trend, trend


def circular_correlation(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """R[..., τ] = Σ_t q[..., (t + τ) mod L] · k[..., t] over the last axis, computed as IFFT(FFT(q)·conj(FFT(k)))
    in O(L log L) (Wiener–Khinchin)."""
    length = q.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(q, dim=-1) * torch.conj(torch.fft.rfft(k, dim=-1)), n=length, dim=-1)


def delay_gather(values: torch.Tensor, delays: torch.Tensor) -> torch.Tensor:
    """out[..., t] = values[..., (t + delay) mod L], one delay per leading index: ``values`` (*lead, *inner, L),
    ``delays`` (*lead) integer."""
    length = values.shape[-1]
    extra = values.dim() - delays.dim() - 1
    shape = delays.shape + (1,) * extra + (1,)
    index = (torch.arange(length, device=values.device) + delays.reshape(shape)) % length
    return torch.gather(values, -1, index.expand_as(values))


def _fit_length(keys: torch.Tensor, values: torch.Tensor, length: int, time_dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Truncate or zero-pad keys/values along ``time_dim`` to the queries' length (memory has 36 tokens, the
    decoder 48 steps)."""
    s = keys.shape[time_dim]
    if s >= length:
        return keys.narrow(time_dim, 0, length), values.narrow(time_dim, 0, length)
    pad_shape = list(keys.shape)
    pad_shape[time_dim] = length - s
    zeros = keys.new_zeros(pad_shape)
    return torch.cat([keys, zeros], time_dim), torch.cat([values, zeros], time_dim)


def standardize_coordinates(coords: np.ndarray) -> np.ndarray:
    """Each coordinate column to zero mean and unit (population) standard deviation over the stations; a
    constant column becomes zeros."""
    coords = np.asarray(coords, dtype=np.float64)
    mean, std = coords.mean(0), coords.std(0)
    constant = std <= 1e-9 * np.maximum(np.abs(mean), 1.0)  # rounding noise of a constant column is not signal
    return np.where(constant, 0.0, (coords - mean) / np.where(constant, 1.0, std)).astype(np.float32)


def to_nodes(x: torch.Tensor, nodes: int) -> torch.Tensor:
    """(B, T, nodes·k) → (B·nodes, T, k): each node's k consecutive variables become one sequence."""
    b, t, v = x.shape
    return x.reshape(b, t, nodes, v // nodes).permute(0, 2, 1, 3).reshape(b * nodes, t, v // nodes)


def from_nodes(x: torch.Tensor, nodes: int) -> torch.Tensor:
    """The inverse of :func:`to_nodes`."""
    bn, t, k = x.shape
    return x.reshape(bn // nodes, nodes, t, k).permute(0, 2, 1, 3).reshape(bn // nodes, t, nodes * k)


def tokens_to_image(tokens: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """(N, L, D) → (N, 1, H, W), row-major, H·W = L·D (paper eq. (2))."""
    return tokens.reshape(tokens.shape[0], 1, *hw)


def image_to_tokens(image: torch.Tensor, length: int) -> torch.Tensor:
    """The inverse of :func:`tokens_to_image`."""
    return image.reshape(image.shape[0], length, -1)


# ----------------------------------------------------------------------------------------------- TCN
class _CausalBlock(nn.Module):
    """Two weight-normalised causal convolutions (left padding, so step n sees steps ≤ n) with ReLU and
    dropout, and a residual connection (Bai et al. 2018, the TCN Corrformer uses)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        convs = []
        for c in (c_in, c_out):
            conv = nn.Conv1d(c, c_out, kernel_size, dilation=dilation)
            nn.init.normal_(conv.weight, 0.0, 0.01)  # weight_norm takes g = ‖w‖, so this is the starting weight
            convs.append(weight_norm(conv))
        self.conv1, self.conv2 = convs
        self.dropout = nn.Dropout(dropout)
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(F.relu(self.conv1(F.pad(x, (self.left_pad, 0)))))
        y = self.dropout(F.relu(self.conv2(F.pad(y, (self.left_pad, 0)))))
        return F.relu(y + (x if self.residual is None else self.residual(x)))


class CausalTCN(nn.Sequential):
    """(N, channels, steps) → (N, channels, steps); layer i has dilation 3**i (kernel 3 covers 3**(i+1) steps)."""

    def __init__(self, channels: int, layers: int = 1, kernel_size: int = 3, dropout: float = 0.2):
        super().__init__(*[_CausalBlock(channels, channels, kernel_size, 3 ** i, dropout) for i in range(layers)])


# ----------------------------------------------------------------------------------------------- correlations
class _Projections(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)


class AutoCorrelation(_Projections):
    """Temporal auto-correlation within each sequence (Autoformer): per head, the lag correlation of queries
    and keys (averaged over the head's channels) picks the top ``int(factor · ln L)`` lags, and the output is
    the softmax-weighted sum of the values shifted by those lags."""

    def __init__(self, d_model: int, n_heads: int, factor: int = 1):
        super().__init__(d_model, n_heads)
        self.factor = factor

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        h = self.n_heads
        # (N, H, E, L): time on the last axis for the FFT.
        q = self.query(x).reshape(n, length, h, -1).permute(0, 2, 3, 1)
        k = self.key(memory).reshape(n, memory.shape[1], h, -1).permute(0, 2, 3, 1)
        v = self.value(memory).reshape(n, memory.shape[1], h, -1).permute(0, 2, 3, 1)
        k, v = _fit_length(k, v, length, -1)
        corr = circular_correlation(q, k).mean(2)  # (N, H, L)
        top = max(1, int(self.factor * math.log(length)))
        weights, lags = torch.topk(corr, top, dim=-1)
        weights = torch.softmax(weights, dim=-1)
        out = sum(delay_gather(v, lags[..., i]) * weights[..., i, None, None] for i in range(top))
        return self.out(out.permute(0, 3, 1, 2).reshape(n, length, -1))


class CrossCorrelation(_Projections):
    """Spatial cross-correlation between the ``nodes`` sequences of each group (Corrformer).

    Each node's keys are correlated with the group's mean ("pivot") query over lags; per head the best
    ``factor`` lags τ and their correlations w are kept. The node's values are delayed by τ (aligned with the
    pivot) and gated by sigmoid(w); the nodes are sorted by lag and a causal TCN runs along that sorted node
    axis (channels = head_dim × L), so each node aggregates the nodes that lead it; the result is sorted back,
    shifted back by τ and averaged over the ``factor`` lags.
    """

    def __init__(self, d_model: int, n_heads: int, length: int, factor: int = 1, tcn_layers: int = 1,
                 tcn_kernel: int = 3, tcn_dropout: float = 0.2):
        super().__init__(d_model, n_heads)
        self.factor, self.length = factor, length
        self.tcn = CausalTCN(d_model // n_heads * length, tcn_layers, tcn_kernel, tcn_dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, nodes: int) -> torch.Tensor:
        """x: (G·nodes, L, D), memory: (G·nodes, S, D) → (G·nodes, L, D)."""
        gn, length, d = x.shape
        if length != self.length:
            raise ValueError(f"cross-correlation built for {self.length} steps (its TCN width), got {length}")
        g, h = gn // nodes, self.n_heads
        # (G, nodes, H, E, L)
        q = self.query(x).reshape(g, nodes, length, h, -1).permute(0, 1, 3, 4, 2)
        k = self.key(memory).reshape(g, nodes, memory.shape[1], h, -1).permute(0, 1, 3, 4, 2)
        v = self.value(memory).reshape(g, nodes, memory.shape[1], h, -1).permute(0, 1, 3, 4, 2)
        k, v = _fit_length(k, v, length, -1)
        corr = circular_correlation(q.mean(1, keepdim=True), k).mean(3)  # (G, nodes, H, L)
        weights, lags = torch.topk(corr, self.factor, dim=-1)  # (G, nodes, H, K)
        e = v.shape[3]
        outs = []
        for i in range(self.factor):
            lag, gate = lags[..., i], torch.sigmoid(weights[..., i])  # (G, nodes, H)
            aligned = delay_gather(v, -lag) * gate[..., None, None]  # value at t − τ
            order = torch.argsort(lag.transpose(1, 2), dim=-1, descending=True, stable=True)  # (G, H, nodes)
            seq = aligned.transpose(1, 2).reshape(g, h, nodes, e * length)
            seq = torch.gather(seq, 2, order[..., None].expand_as(seq))
            seq = self.tcn(seq.reshape(g * h, nodes, e * length).transpose(1, 2)).transpose(1, 2)
            seq = torch.empty_like(seq).scatter_(1, order.reshape(g * h, nodes, 1).expand_as(seq), seq)
            seq = seq.reshape(g, h, nodes, e, length).transpose(1, 2)
            outs.append(delay_gather(seq, lag))
        out = torch.stack(outs).mean(0)  # (G, nodes, H, E, L)
        return self.out(out.permute(0, 1, 4, 2, 3).reshape(gn, length, d))


class MultiCorrelation(nn.Module):
    """Auto-correlation within each node + cross-correlation between nodes on the multiscale tree
    ``node_list``: at level i the nodes are grouped by their first i+1 tree indices, the finer indices are
    averaged away, the ``node_list[i]`` groups under each parent are cross-correlated, and the result is
    broadcast back to the nodes; the levels are averaged and added to the auto-correlation."""

    def __init__(self, d_model: int, n_heads: int, length: int, node_list: Sequence[int], factor_temporal: int = 1,
                 factor_spatial: int = 1, tcn_layers: int = 1, tcn_kernel: int = 3, tcn_dropout: float = 0.2,
                 dropout: float = 0.05):
        super().__init__()
        self.node_list = tuple(int(n) for n in node_list)
        self.node_num = int(np.prod(self.node_list))
        self.auto = AutoCorrelation(d_model, n_heads, factor_temporal)
        self.cross = CrossCorrelation(d_model, n_heads, length, factor_spatial, tcn_layers, tcn_kernel, tcn_dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        bn, length, d = x.shape
        s = memory.shape[1]
        leaf = self.auto(x, memory)
        levels = []
        for i, n_i in enumerate(self.node_list):
            parents = bn // self.node_num * int(np.prod(self.node_list[:i]))
            finer = int(np.prod(self.node_list[i + 1:]))
            xs = x.reshape(parents * n_i, finer, length, d).mean(1)
            ms = memory.reshape(parents * n_i, finer, s, d).mean(1)
            y = self.cross(xs, ms, n_i)  # (parents·n_i, L, D)
            levels.append(y[:, None].expand(-1, finer, -1, -1).reshape(bn, length, d))
        return self.dropout(leaf) + self.dropout(torch.stack(levels).mean(0))


class SeasonalLayerNorm(nn.Module):
    """LayerNorm over channels, then the time mean removed (the seasonal part has no level)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return x - x.mean(1, keepdim=True)


class CorrformerDecoderLayer(nn.Module):
    """Self multi-correlation → decomposition → multi-correlation with the memory → decomposition → GELU
    feed-forward → decomposition; the three trends are summed and projected to ``c_out`` by a circular
    Conv1d(k 3, no bias)."""

    def __init__(self, cfg: CorrformerConfig, c_out: int):
        super().__init__()
        length = cfg.label_len + cfg.pred_len

        def multi() -> MultiCorrelation:
            return MultiCorrelation(cfg.d_model, cfg.n_heads, length, cfg.node_list, cfg.factor_temporal,
                                    cfg.factor_spatial, cfg.tcn_layers, cfg.tcn_kernel, cfg.tcn_dropout, cfg.dropout)

        self.self_correlation = multi()
        self.cross_correlation = multi()
        self.ff1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.ff2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.decomp = SeriesDecomposition(cfg.moving_avg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.trend_projection = nn.Conv1d(cfg.d_model, c_out, 3, padding=1, padding_mode="circular", bias=False)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x, trend1 = self.decomp(x + self.self_correlation(x, x))
        x, trend2 = self.decomp(x + self.cross_correlation(x, memory))
        y = self.dropout(self.ff2(self.dropout(F.gelu(self.ff1(x)))))
        x, trend3 = self.decomp(x + y)
        trend = self.trend_projection((trend1 + trend2 + trend3).transpose(1, 2)).transpose(1, 2)
        return x, trend


# ----------------------------------------------------------------------------------------------- encoder
def encoder_kernel_sizes(size: str, stage4_kernel: int = 11) -> Tuple[Tuple[int, ...], ...]:
    """The variant's official kernel layout with stage 4 set to ``stage4_kernel`` (the time-series code uses
    K = 11 there; docs/timeseries.md, pipeline step 5). ``'tiny'``: the small forecasting encoder (depths 1-1-2-1, dims
    16…128, kernels 3 / 7 / 3,3 / 3) for CPU demos and tests on 48 × 48 images."""
    from ...model import default_kernel_sizes
    from ...zoo import VARIANTS

    if size == "tiny":
        return TINY_FORECAST_MODEL_KWARGS["kernel_sizes"]
    if size not in VARIANTS:
        raise ValueError(f"unknown encoder size {size!r}; choose 'tiny' or one of {', '.join(VARIANTS)}")
    depths = VARIANTS[size].depths
    layout = list(default_kernel_sizes(depths))
    layout[3] = (stage4_kernel,) * depths[3]
    return tuple(tuple(stage) for stage in layout)


#: Encoders the decoder can read: the paper's, and timm's ConvNeXt (Liu et al., CVPR 2022, the design UniRepLKNet's
#: blocks start from, paper section 3) with the same depths and widths, for a peer-backbone row of the demo.
ENCODERS = ("unireplknet", "convnext")


def _build_encoder(cfg: CorrformerConfig) -> nn.Module:
    from ...model import UniRepLKNet
    from ...zoo import VARIANTS, create_model

    if cfg.encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {cfg.encoder!r}; choose one of {', '.join(ENCODERS)}")
    kernels = encoder_kernel_sizes(cfg.encoder_size, cfg.encoder_stage4_kernel)
    if cfg.encoder == "convnext":
        import timm

        # ConvNeXt's 4×4 patchify stem and 2×2 stride-2 downsampling floor odd sizes, so a 48 × 48 node image
        # ends as a 1 × 1 stage-4 map (UniRepLKNet's stride-2 3×3 convolutions give 2 × 2): one memory token.
        shape = TINY_FORECAST_MODEL_KWARGS if cfg.encoder_size == "tiny" else dict(
            depths=VARIANTS[cfg.encoder_size].depths, dims=VARIANTS[cfg.encoder_size].dims)
        encoder = timm.create_model("convnext_atto", pretrained=False, depths=tuple(shape["depths"]),
                                    dims=tuple(shape["dims"]), in_chans=1, num_classes=0,
                                    drop_path_rate=cfg.drop_path)
        encoder.set_grad_checkpointing(cfg.with_cp)
    elif cfg.encoder_size == "tiny":
        encoder = UniRepLKNet(in_chans=1, num_classes=0, drop_path_rate=cfg.drop_path, with_cp=cfg.with_cp,
                              **TINY_FORECAST_MODEL_KWARGS)
    else:
        encoder = create_model(f"unireplknet_{cfg.encoder_size}", num_classes=0, in_chans=1, kernel_sizes=kernels,
                               drop_path_rate=cfg.drop_path, with_cp=cfg.with_cp)
    # Only the stage-4 map is used: drop the pooled-feature LayerNorm so that no parameter goes unused.
    encoder.prune_intermediate_layers(indices=[3], prune_norm=True, prune_head=True)
    return encoder


# ----------------------------------------------------------------------------------------------- model
class CorrformerUniRepLKNet(nn.Module):
    """The forecaster of the module docstring.

    Args:
        cfg: sizes (:class:`CorrformerConfig`); ``cfg.node_num · cfg.enc_in`` must equal the stations V.
        coords: (V, k) station coordinates for the geo embedding (standardised here), or None.
    """

    reads_decoder_calendar = True  # forward(x, x_mark, y_mark): the decoder reads its span's calendar features

    def __init__(self, cfg: CorrformerConfig, coords: Optional[np.ndarray] = None):
        super().__init__()
        if cfg.memory_layout not in ("tokens", "raw"):
            raise ValueError(f"memory_layout must be 'tokens' or 'raw', got {cfg.memory_layout!r}")
        if cfg.label_len > cfg.seq_len or min(cfg.seq_len, cfg.pred_len, cfg.label_len) < 1:
            raise ValueError(f"need 1 <= label_len <= seq_len and pred_len >= 1, got {cfg.seq_len}/{cfg.label_len}/"
                             f"{cfg.pred_len}")
        self.cfg = cfg
        self.nodes, self.enc_in = cfg.node_num, cfg.enc_in
        self.num_variables = cfg.num_variables
        self.seq_len, self.label_len, self.pred_len = cfg.seq_len, cfg.label_len, cfg.pred_len
        self.image_hw = image_shape(cfg.seq_len, cfg.d_model)
        coord_dim = 0
        if cfg.use_geo and coords is not None:
            coords = np.asarray(coords, dtype=np.float32)
            if coords.ndim != 2 or coords.shape[0] != self.num_variables:
                raise SeriesError(
                    f"station counts differ: the model has {self.num_variables} stations ({self.nodes} nodes × "
                    f"{self.enc_in}) but the coordinates have shape {coords.shape}; pass one row per station")
            coord_dim = coords.shape[1]
            geo = standardize_coordinates(coords).reshape(self.nodes, self.enc_in * coord_dim)
            self.register_buffer("geo", torch.from_numpy(geo))
        else:
            self.register_buffer("geo", None)
        self.coord_dim = coord_dim
        time_dim = TIME_FEATURE_DIMS[cfg.freq]
        self.norm = SeriesNormalizer(cfg.enc_in)
        self.decomp = SeriesDecomposition(cfg.moving_avg)
        self.enc_embedding = TokenEmbedding(cfg.enc_in, cfg.d_model, time_dim, coord_dim, cfg.dropout)
        self.dec_embedding = TokenEmbedding(cfg.enc_in, cfg.d_model, time_dim, coord_dim, cfg.dropout)
        self.encoder = _build_encoder(cfg)
        channels = self.encoder.num_features
        if cfg.memory_layout == "tokens":
            self.memory_projection = nn.Linear(channels, cfg.d_model) if channels != cfg.d_model else nn.Identity()
        else:
            if cfg.encoder != "unireplknet":
                raise ValueError("memory_layout='raw' is the official reshape of UniRepLKNet's stage-4 map; use "
                                 f"memory_layout='tokens' with encoder={cfg.encoder!r}")
            self.memory_projection = nn.Identity()
            h, w = (math.ceil(s / 32) for s in self.image_hw)
            if (channels * h * w) % cfg.d_model:
                raise ValueError(f"memory_layout='raw' needs the stage-4 map ({channels}×{h}×{w}) to split into "
                                 f"tokens of d_model={cfg.d_model}; use memory_layout='tokens'")
        self.decoder_layers = nn.ModuleList([CorrformerDecoderLayer(cfg, cfg.enc_in) for _ in range(cfg.d_layers)])
        self.decoder_norm = SeasonalLayerNorm(cfg.d_model)
        self.projection = nn.Linear(cfg.d_model, cfg.enc_in)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the encoder blocks in backward (the official run's ``with_cp``; numbers unchanged)."""
        self.encoder.set_grad_checkpointing(enable)

    def memory(self, x_nodes: torch.Tensor, x_mark: Optional[torch.Tensor]) -> torch.Tensor:
        """(B·nodes, L, enc_in) normalised input → (B·nodes, h·w, d_model) encoder memory."""
        geo = self._geo(x_nodes.shape[0])
        tokens = self.enc_embedding(x_nodes, x_mark, geo)
        fmap = self.encoder.forward_features(tokens_to_image(tokens, self.image_hw))  # (N, C, h, w)
        if self.cfg.memory_layout == "raw":
            return fmap.reshape(fmap.shape[0], -1, self.cfg.d_model)
        return self.memory_projection(fmap.flatten(2).transpose(1, 2))

    def _geo(self, n: int) -> Optional[torch.Tensor]:
        return None if self.geo is None else self.geo.repeat(n // self.nodes, 1)

    def _marks(self, mark: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if mark is None else mark.repeat_interleave(self.nodes, dim=0)

    def forward(self, x: torch.Tensor, x_mark: Optional[torch.Tensor] = None,
                y_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, seq_len, V), x_mark (B, seq_len, time_dim), y_mark (B, label_len + pred_len, time_dim) →
        forecast (B, pred_len, V) in the units of x."""
        b, length, v = x.shape
        if length != self.seq_len or v != self.num_variables:
            raise ValueError(f"expected input (batch, {self.seq_len}, {self.num_variables}), got {tuple(x.shape)}")
        if x.device.type != "meta" and not torch.isfinite(x).all():  # meta tensors (FLOP counting) hold no values
            raise SeriesError("the input window contains NaN/inf; fill gaps first (nan_policy='interpolate')")
        xn, stats = self.norm.normalize(x)
        seasonal, trend = self.decomp(xn)
        trend_init = torch.cat([trend[:, -self.label_len:], xn.mean(1, keepdim=True).expand(-1, self.pred_len, -1)], 1)
        seasonal_init = torch.cat([seasonal[:, -self.label_len:], xn.new_zeros(b, self.pred_len, v)], 1)
        memory = self.memory(to_nodes(xn, self.nodes), self._marks(x_mark))
        dec = self.dec_embedding(to_nodes(seasonal_init, self.nodes), self._marks(y_mark), self._geo(b * self.nodes))
        trend_part = to_nodes(trend_init, self.nodes)
        for layer in self.decoder_layers:
            dec, residual_trend = layer(dec, memory)
            trend_part = trend_part + residual_trend
        out = trend_part + self.projection(self.decoder_norm(dec))
        out = from_nodes(out[:, -self.pred_len:], self.nodes)
        return self.norm.denormalize(out, stats)


def build_model(preset: str = "paper", encoder_size: Optional[str] = None, coords: Optional[np.ndarray] = None,
                **overrides: Any) -> CorrformerUniRepLKNet:
    """The forecaster of a preset (``'paper'`` or ``'demo'``), optionally with another encoder size
    (``'a'``, ``'t'``, ``'s'`` …) and other :class:`CorrformerConfig` fields (e.g. ``node_list=(4, 7)``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if encoder_size is not None:
        overrides["encoder_size"] = encoder_size
    unknown = sorted(set(overrides) - set(CorrformerConfig.__dataclass_fields__))
    if unknown:
        raise TypeError(f"unknown Corrformer option(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(CorrformerConfig.__dataclass_fields__)}")
    if "node_list" in overrides:
        overrides["node_list"] = tuple(int(n) for n in overrides["node_list"])
    return CorrformerUniRepLKNet(replace(PRESETS[preset], **overrides), coords)


# ----------------------------------------------------------------------------------------------- data
def global_station_windows(root: Union[str, Path], variable: str = "temp", split: str = "train",
                           cfg: CorrformerConfig = PRESETS["paper"], stride: int = 1,
                           nan_policy: str = "error", calendar: Optional[Sequence[str]] = None
                           ) -> Tuple[WindowDataset, Optional[np.ndarray]]:
    """Windows ``(x, x_mark, y, y_mark)`` of one split of a folder in the official layout
    (``{variable}_global_hourly_{split}.npy``, ``data_time_{split}.npy``, ``stations_sorted.npy``) and the
    station coordinates. All features of a (hours, stations, features) file are kept, station-major, as the
    official loader does. ``calendar``: the calendar features kept (``time_features``; None: all, as the paper)."""
    series = load_global_station_folder(root, variable, split, nan_policy, feature=None)
    if series.num_variables != cfg.num_variables:
        raise SeriesError(
            f"{root}: {series.num_variables} station series, but the model expects {cfg.num_variables} "
            f"({cfg.node_num} nodes of {cfg.enc_in}, node_list {cfg.node_list}); pass node_list whose product × "
            f"enc_in equals the number of stations")
    return WindowDataset(series, cfg.seq_len, cfg.label_len, cfg.pred_len, stride, calendar), series.coords


def forecast_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's loss: MSE between the forecast and the last ``pred_len`` steps of the target, on the data's
    scale (no per-variable weighting)."""
    return F.mse_loss(pred, target[:, -pred.shape[1]:])


@torch.no_grad()
def evaluate(model: nn.Module, windows: Iterable, groups: Optional[Dict[str, Sequence[int]]] = None,
             data_scale: float = PAPER_DATA_SCALE, device: Union[str, torch.device] = "cpu",
             batch_size: int = 1) -> Dict[str, Dict[str, float]]:
    """MSE and MAE per variable group, on the files' scale (the paper's tables) and in physical units
    (``mse / data_scale²``, ``mae / data_scale``; the released files are ×10, so data_scale = 10; use 1 for data
    in physical units). ``windows``: a dataset of ``(x, x_mark, y, y_mark)``; ``groups``: name → variable
    indices (default: one group ``'all'``)."""
    from torch.utils.data import DataLoader

    was = model.training
    model.eval()
    preds, targets = [], []
    for x, xm, y, ym in DataLoader(windows, batch_size=batch_size, shuffle=False):
        preds.append(model(x.to(device), xm.to(device), ym.to(device)).cpu())
        targets.append(y[:, -preds[-1].shape[1]:])
    model.train(was)
    pred, target = torch.cat(preds), torch.cat(targets)
    out = {}
    for name, idx in (groups or {"all": range(pred.shape[-1])}).items():
        idx = torch.as_tensor(list(idx), dtype=torch.long)
        m = forecast_metrics(pred[..., idx], target[..., idx])
        out[name] = dict(mse=m["mse"], mae=m["mae"], mse_physical=m["mse"] / data_scale ** 2,
                         mae_physical=m["mae"] / data_scale, windows=int(pred.shape[0]))
    return out


# ----------------------------------------------------------------------------------------------- baseline
def ridge_solution(gram: torch.Tensor, cross: torch.Tensor, ridge: float) -> torch.Tensor:
    """W = (AᵀA + λ·mean(diag(AᵀA))·I)⁻¹ AᵀY from gram = AᵀA and cross = AᵀY: ridge with a scale-free λ."""
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + eye * ridge * gram.diagonal().mean(), cross)


class LinearWindowBaseline:
    """A linear model of the forecaster's inputs, fitted by ridge least squares: per node and window, the
    standardised window (seq_len × enc_in, the same normalisation as the model), the calendar features of the
    decoder span and the node's standardised coordinates map to the standardised forecast (pred_len × enc_in).
    One weight matrix is shared by all nodes, as the network's weights are."""

    def __init__(self, cfg: CorrformerConfig, coords: Optional[np.ndarray] = None, ridge: float = 1e-3):
        self.cfg, self.ridge = cfg, ridge
        self.geo = None
        if coords is not None and cfg.use_geo:
            self.geo = torch.from_numpy(standardize_coordinates(coords).reshape(cfg.node_num, -1))
        self.weight: Optional[torch.Tensor] = None

    def design(self, x: torch.Tensor, y_mark: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The design matrix (B·nodes, features) of a batch, in float64, and the window mean and std that
        standardise it (the forecast is ``design @ weight`` on that standardised scale)."""
        mean = x.mean(1, keepdim=True)
        std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
        xn = to_nodes((x - mean) / std, self.cfg.node_num).flatten(1)  # (B·nodes, L·enc_in)
        parts = [xn, y_mark.repeat_interleave(self.cfg.node_num, 0).flatten(1)]
        if self.geo is not None:
            parts.append(self.geo.repeat(x.shape[0], 1))
        parts.append(torch.ones(xn.shape[0], 1))
        return torch.cat(parts, 1).double(), mean, std

    def target(self, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """The forecast span of ``y`` per node, (B·nodes, pred_len·enc_in), on the window's standardised scale."""
        return to_nodes((y[:, -self.cfg.pred_len:] - mean) / std, self.cfg.node_num).flatten(1)

    def fit(self, windows: Iterable) -> "LinearWindowBaseline":
        from torch.utils.data import DataLoader

        gram, cross = None, None
        for x, _, y, ym in DataLoader(windows, batch_size=64, shuffle=False):
            a, mean, std = self.design(x, ym)
            target = self.target(y, mean, std).double()
            gram = a.T @ a if gram is None else gram + a.T @ a
            cross = a.T @ target if cross is None else cross + a.T @ target
        self.weight = ridge_solution(gram, cross, self.ridge)
        return self

    def __call__(self, x: torch.Tensor, x_mark: Optional[torch.Tensor] = None,
                 y_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.weight is None:
            raise RuntimeError("fit the linear baseline first")
        a, mean, std = self.design(x, y_mark)
        out = (a @ self.weight).float().reshape(-1, self.cfg.pred_len, self.cfg.enc_in)
        return from_nodes(out, self.cfg.node_num) * std + mean

    # evaluate() calls .eval()/.train() and reads .training on the model
    training = False

    def eval(self) -> "LinearWindowBaseline":
        return self

    def train(self, mode: bool = True) -> "LinearWindowBaseline":
        return self


# ----------------------------------------------------------------------------------------------- the task
def resolve_node_list(cfg: Any, num_variables: int) -> Tuple[int, ...]:
    """The preset's node tree when it fits the data's station count, else ``cfg.node_list`` (checked)."""
    enc_in = cfg.enc_in or PRESETS[cfg.preset].enc_in
    if num_variables % enc_in:
        raise SeriesError(f"{num_variables} station series cannot be grouped into nodes of {enc_in} (--enc-in); pass "
                          "an --enc-in that divides the number of stations")
    nodes = num_variables // enc_in
    default = PRESETS[cfg.preset].node_list
    if cfg.node_list is None and int(np.prod(default)) != nodes and str(cfg.data or "").lower().endswith(".csv"):
        default = (nodes,)  # a table: one level, one node per station
    node_list = tuple(cfg.node_list or default)
    if int(np.prod(node_list)) != nodes:
        raise SeriesError(
            f"the data has {num_variables} station series = {nodes} nodes of {enc_in}, but the node tree "
            f"{','.join(map(str, node_list))} holds {int(np.prod(node_list))} nodes (the paper: 7,50 = 350 nodes of "
            f"11 = 3,850 stations); pass --node-list A,B with A·B = {nodes}, stations ordered so that each group of "
            f"B consecutive nodes is a region")
    return node_list


def build_preset_model(cfg: Any, train: Any) -> nn.Module:
    """The paper's Corrformer + UniRepLKNet of ``cfg.preset`` with the sizes the options override."""
    preset = PRESETS[cfg.preset]
    overrides: Dict[str, Any] = dict(
        seq_len=cfg.seq_len, label_len=cfg.label_len, pred_len=cfg.pred_len, enc_in=cfg.enc_in or preset.enc_in,
        d_model=cfg.d_model, dropout=cfg.dropout, drop_path=cfg.drop_path, freq=cfg.freq or train.freq,
        use_geo=cfg.use_coords, node_list=resolve_node_list(cfg, train.num_variables),
        with_cp=preset.with_cp or cfg.grad_checkpointing, memory_layout=cfg.memory_layout or preset.memory_layout,
        encoder=cfg.encoder or preset.encoder)
    return build_model(cfg.preset, cfg.encoder_size, train.coords if cfg.use_coords else None, **overrides)


def variable_groups(cfg: Any, model: nn.Module, label: str, targets: Optional[Sequence[int]] = None
                    ) -> Dict[str, List[int]]:
    """The variable groups that forecast-eval reports: all series (``label``), then each region of the node
    tree's first level (the paper's 7 × 50: 7 regions of 50 nodes; the generated data: 4 latitude bands of 7;
    a long table: each station). ``targets``: only these variables count (a table's ``--target`` columns)."""
    wanted = list(targets) if targets is not None else list(range(model.num_variables))
    groups: Dict[str, List[int]] = {label: wanted}
    regions = model.cfg.node_list[0]
    if regions > 1:
        per = model.num_variables // regions
        for r in range(regions):
            groups[f"region {r + 1}/{regions} (series {r * per}-{(r + 1) * per - 1})"] = [
                i for i in wanted if r * per <= i < (r + 1) * per]
    return groups


class CorrformerForecasting(ForecastTask):
    """The engine task of the paper's Corrformer + UniRepLKNet (``--preset paper`` / ``demo``): trained on the
    plain MSE on the files' scale (the paper's loss), station data in the Global Temp/Wind layout."""

    eval_batch_size = 8
    reads_decoder_calendar = True

    def build_data(self, cfg: Any, seed: int) -> TaskData:
        data = super().build_data(cfg, seed)
        cfg.node_list = resolve_node_list(cfg, self.splits["train"].num_variables)  # stored in the checkpoint
        return data

    def create_model(self, cfg: Any, train: Any) -> nn.Module:
        return build_preset_model(cfg, train)

    def model_config(self, cfg: Any, data: TaskData, model: nn.Module) -> Dict[str, Any]:
        return dict(task="forecast", architecture="corrformer", preset=cfg.preset, coord_dim=model.coord_dim,
                    corrformer=plain(asdict(model.cfg)))

    def training_loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        y = ctx.to_device(batch.targets[:, -self.pred_len:])
        if self.columns is not None:  # a table's --target columns, each in units of its spread
            return StepOutput(self.target_loss(forecast_batch(model, batch, ctx.device), y), len(y))
        return StepOutput(forecast_loss(forecast_batch(model, batch, ctx.device), y), len(y))
