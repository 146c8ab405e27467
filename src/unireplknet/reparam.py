"""The linear algebra of structural re-parameterization, as pure functions from tensors to tensors.

Training structure → deploy structure (the official `reparameterize_unireplknet()`; docs/reparameterization.md) is a composition of four identities:

* :func:`fuse_conv_bn` — a convolution followed by an eval-mode BatchNorm is one convolution with a bias;
* :func:`dilate_kernel` — a dilated convolution is a dense convolution whose kernel has zeros between taps;
* :func:`pad_kernel` / :func:`merge_parallel_kernels` — parallel same-centre stride-1 convolutions whose
  outputs are summed are one convolution with the summed (centre-aligned, zero-padded) kernels and biases;
* :func:`fold_ffn_tail` — GRN's bias, the BatchNorm after the second Linear and the layer scale are one
  affine map, absorbed into that Linear.

None of these functions touches a module; :mod:`unireplknet.model` calls them from ``reparameterize()``.
Every function accepts any float dtype and device and returns tensors of the input's dtype and device.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

__all__ = [
    "bn_scale_shift",
    "fuse_conv_bn",
    "dilate_kernel",
    "pad_kernel",
    "merge_parallel_kernels",
    "merge_dilated_branches",
    "fold_ffn_tail",
]

Tensor = torch.Tensor


def bn_scale_shift(
    weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor, eps: float
) -> Tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``y = scale·x + shift``: scale = γ/√(σ²+ε), shift = β − μ·scale."""
    scale = weight / torch.sqrt(running_var + eps)
    return scale, bias - running_mean * scale


def fuse_conv_bn(
    kernel: Tensor,
    conv_bias: Optional[Tensor],
    bn_weight: Tensor,
    bn_bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    eps: float,
) -> Tuple[Tensor, Tensor]:
    """BN(conv(x; W, b)) = conv(x; W·γ/σ, β + (b − μ)·γ/σ) with σ = √(running_var + ε)."""
    scale, shift = bn_scale_shift(bn_weight, bn_bias, running_mean, running_var, eps)
    fused_kernel = kernel * scale.reshape(-1, *([1] * (kernel.dim() - 1)))
    fused_bias = shift if conv_bias is None else shift + conv_bias * scale
    return fused_kernel, fused_bias


def dilate_kernel(kernel: Tensor, dilation: int) -> Tensor:
    """conv(x; W, dilation=r) = conv(x; W_r) where W_r has r−1 zeros between neighbouring taps of W."""
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if dilation == 1:
        return kernel
    kh, kw = kernel.shape[-2:]
    dense = kernel.new_zeros(*kernel.shape[:-2], (kh - 1) * dilation + 1, (kw - 1) * dilation + 1)
    dense[..., ::dilation, ::dilation] = kernel
    return dense


def pad_kernel(kernel: Tensor, size: int) -> Tensor:
    """A centred k×k kernel equals the size×size kernel with it in the middle and zeros around (k, size odd)."""
    kh, kw = kernel.shape[-2:]
    if (size - kh) % 2 or (size - kw) % 2 or size < max(kh, kw):
        raise ValueError(f"cannot centre a {kh}x{kw} kernel in a {size}x{size} one")
    ph, pw = (size - kh) // 2, (size - kw) // 2
    return torch.nn.functional.pad(kernel, (pw, pw, ph, ph))


def merge_parallel_kernels(
    kernels: Sequence[Tensor], biases: Sequence[Tensor]
) -> Tuple[Tensor, Tensor]:
    """Σ_i conv(x; W_i, b_i) = conv(x; Σ_i pad(W_i), Σ_i b_i) for centred, 'same'-padded, stride-1 convs."""
    size = max(k.shape[-1] for k in kernels)
    merged = sum(pad_kernel(k, size) for k in kernels)
    return merged, sum(biases)


def merge_dilated_branches(
    large_kernel: Tensor,
    large_bias: Tensor,
    branches: Sequence[Tuple[Tensor, Tensor, int]],
) -> Tuple[Tensor, Tensor]:
    """K×K conv + Σ_branches dilated k×k convs (each BN-fused, as (W, b, r)) = one K×K conv."""
    kernels = [large_kernel] + [dilate_kernel(w, r) for w, _, r in branches]
    biases = [large_bias] + [b for _, b, _ in branches]
    if max(k.shape[-1] for k in kernels) != large_kernel.shape[-1]:
        raise ValueError("a dilated branch is larger than the large kernel it merges into")
    return merge_parallel_kernels(kernels, biases)


def fold_ffn_tail(
    linear_weight: Tensor,
    grn_beta: Optional[Tensor],
    bn_weight: Tensor,
    bn_bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    eps: float,
    layer_scale: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """s⊙BN(W(z + β_g)) = W'z + b' with W' = diag(s·γ/σ)·W, b' = s⊙(β + (W·β_g − μ)·γ/σ).

    ``linear_weight`` is the (C, 4C) weight of the bias-free second Linear, ``grn_beta`` GRN's additive
    bias (any shape with 4C elements), the BN statistics are over C, ``layer_scale`` is the block's
    per-channel ``gamma`` (None when layer scale is off).
    """
    scale, shift = bn_scale_shift(bn_weight, bn_bias, running_mean, running_var, eps)
    bias = shift if grn_beta is None else shift + (linear_weight @ grn_beta.reshape(-1)) * scale
    if layer_scale is not None:
        scale = scale * layer_scale
        bias = bias * layer_scale
    return linear_weight * scale[:, None], bias
