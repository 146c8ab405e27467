"""The series layers and measures both forecasters share (the linear-head forecaster and the Corrformer).

The normaliser (RevIN-style per-window standardisation with a learnable affine), the token embedding (value
Conv1d + calendar + station coordinates), the (H, W) of the embedded window read as an image, the MSE/MAE and
the last-value / seasonal-naive baselines.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

__all__ = ["TINY_FORECAST_MODEL_KWARGS", "image_shape", "SeriesNormalizer", "TokenEmbedding", "naive_forecast",
           "seasonal_naive_forecast", "forecast_metrics"]

#: Small encoder of the embedded-data defaults: at 48 × 48 input the stage maps are 12, 6, 3 and 2 wide.
TINY_FORECAST_MODEL_KWARGS: Dict[str, Any] = dict(
    depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), kernel_sizes=((3,), (7,), (3, 3), (3,)))

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
