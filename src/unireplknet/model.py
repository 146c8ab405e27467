"""UniRepLKNet: blocks → stages → model.

A re-implementation of the official ``unireplknet.py`` (AILab-CVC/UniRepLKNet) that keeps its exact
state-dict layout, so official checkpoints load unchanged, and adds the timm model API
(``forward_features`` / ``forward_head`` / ``forward_intermediates`` / ``feature_info`` …).

Module layout (state-dict prefixes in brackets):

* stem [``downsample_layers.0``]: conv3×3/2 → LN → GELU → conv3×3/2 → LN (stride 4);
* down-sampling [``downsample_layers.{1,2,3}``]: conv3×3/2 → LN;
  (``downsample_norm="batchnorm"`` puts BatchNorm2d where these LNs are; the deploy structure fuses each into
  the convolution before it, leaving ``nn.Identity`` in its place);
* four stages [``stages.{i}.{j}``] of :class:`UniRepLKNetBlock`;
* logits mode: global average pool → LayerNorm [``norm``] → Linear [``head``];
  features mode (``num_classes=None``): a channels-first LayerNorm per stage [``norm0`` … ``norm3``].

Scripting and tracing (``torch.jit.script``, ``torch.fx.symbolic_trace``, timm's feature extractors, ONNX and
``torch.export``) see only the plain module graph: every Python-level choice — the input check, the fused
inference forward of :mod:`unireplknet.fast`, sample groups in the stem, the depthwise-conv implementation —
sits behind ``torch.jit.is_scripting()`` / :func:`python_dispatch_allowed`. This module does not use
``from __future__ import annotations``, which TorchScript cannot read in a module that defines ``forward``.

The official state-dict layouts (prefixes, training/deploy structure, timm's pretrained filter) are
:mod:`unireplknet.checkpoint`; when the fused inference forward may run is :mod:`unireplknet.fast`; the runtime
probes (tracers, autocast) are :mod:`unireplknet._runtime`.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from timm.layers import DropPath, SelectAdaptivePool2d, trunc_normal_
from timm.models._features import feature_take_indices

from . import fast, reparam
from ._runtime import autocast_enabled, python_dispatch_allowed
from .checkpoint import ARCHITECTURES, checkpoint_filter_fn, load_checkpoint, load_state_dict_pre_hook
from .ops import create_depthwise_conv2d
from .ops.cpu import is_channels_last as _is_channels_last

__all__ = [
    "UniRepLKNet",
    "UniRepLKNetBlock",
    "DilatedReparamBlock",
    "GRNwithNHWC",
    "SEBlock",
    "LayerNorm",
    "DILATED_BRANCHES",
    "default_kernel_sizes",
    "reparameterize",
    "GLOBAL_POOL_TYPES",
    "DOWNSAMPLE_NORMS",
    "ARCHITECTURES",
    "python_dispatch_allowed",
    "checkpoint_filter_fn",
]

#: Dilated Reparam Block branch table of the official code: K → (branch kernel sizes, dilations).
DILATED_BRANCHES: Dict[int, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    17: ((5, 9, 3, 3, 3), (1, 2, 4, 5, 7)),
    15: ((5, 7, 3, 3, 3), (1, 2, 3, 5, 7)),
    13: ((5, 7, 3, 3, 3), (1, 2, 3, 4, 5)),
    11: ((5, 5, 3, 3, 3), (1, 2, 3, 4, 5)),
    9: ((5, 5, 3, 3), (1, 2, 3, 4)),
    7: ((5, 3, 3), (1, 2, 3)),
    5: ((3, 3), (1, 2)),
}

#: Per-block kernel layouts chosen by the official code from the depth tuple.
_DEFAULT_KERNEL_SIZES: Dict[Tuple[int, ...], Tuple[Tuple[int, ...], ...]] = {
    (2, 2, 6, 2): ((3, 3), (13, 13), (13,) * 6, (13, 13)),
    (2, 2, 8, 2): ((3, 3), (13, 13), (13,) * 8, (13, 13)),
    (3, 3, 18, 3): ((3, 3, 3), (13, 13, 13), (13, 3) * 9, (13, 13, 13)),
    (3, 3, 27, 3): ((3, 3, 3), (13, 13, 13), (13, 3, 3) * 9, (13, 13, 13)),
}

#: Global pooling types of the classifier (timm's SelectAdaptivePool2d; '' keeps the (N, C, H, W) map).
#: 'catavgmax' is left out: it doubles the width that the official final LayerNorm [``norm``] normalises.
GLOBAL_POOL_TYPES = ("", "avg", "max", "avgmax")

#: The norms the stem and the down-sampling layers can use: the official channels-first LayerNorm (each pixel's
#: channels normalised on their own, which divides out the pixel's level) or BatchNorm2d (statistics over the
#: batch, fused into the convolution before it by re-parameterization).
DOWNSAMPLE_NORMS = ("layernorm", "batchnorm")

#: Constructor keywords that official downstream code passes and the official model ignores.
_IGNORED_OFFICIAL_KWARGS = ("attempt_use_lk_impl", "disable_iGEMM", "custom_set", "use_checkpoint")


def default_kernel_sizes(depths: Sequence[int]) -> Tuple[Tuple[int, ...], ...]:
    """The official per-block kernel layout for a depth tuple (ValueError for a tuple it does not know)."""
    key = tuple(int(d) for d in depths)
    if key not in _DEFAULT_KERNEL_SIZES:
        known = ", ".join(str(k) for k in _DEFAULT_KERNEL_SIZES)
        raise ValueError(
            f"no default kernel layout for depths={key} (known: {known}); "
            "pass kernel_sizes=(stage1, stage2, stage3, stage4) with one kernel size per block"
        )
    return _DEFAULT_KERNEL_SIZES[key]


def _batch_norm(dim: int, use_sync_bn: bool) -> nn.Module:
    return nn.SyncBatchNorm(dim) if use_sync_bn else nn.BatchNorm2d(dim)


def _downsample_norm(kind: str, dim: int, use_sync_bn: bool, deploy: bool) -> nn.Module:
    """The norm after a stem/down-sampling conv: the official LayerNorm, or a BatchNorm (none once deployed:
    fused into that conv)."""
    if kind == "layernorm":
        return LayerNorm(dim, eps=1e-6, data_format="channels_first")
    return nn.Identity() if deploy else _batch_norm(dim, use_sync_bn)


class NCHWtoNHWC(nn.Module):
    """Permute (N, C, H, W) → (N, H, W, C); free (a view) for channels_last tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class NHWCtoNCHW(nn.Module):
    """Permute (N, H, W, C) → (N, C, H, W); the result is channels_last in memory."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class LayerNorm(nn.Module):
    """LayerNorm over channels for (N, C, H, W) input ('channels_first') or (…, C) input ('channels_last').

    A channels_last-contiguous NCHW tensor is normalised by the fused library kernel on its free NHWC
    view; a plain NCHW tensor by the official element-wise formula, so no layout copy is made either way.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-6, data_format: str = "channels_first"):
        super().__init__()
        if data_format not in ("channels_first", "channels_last"):
            raise ValueError(f"data_format must be 'channels_first' or 'channels_last', got {data_format!r}")
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        if torch.jit.is_scripting():
            channels_last = _is_channels_last(x)
        else:  # a traced graph takes the formula, which is right for every layout
            channels_last = python_dispatch_allowed(x) and _is_channels_last(x)
        if channels_last:
            y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return f"{self.normalized_shape[0]}, eps={self.eps}, data_format={self.data_format}"


class DownsampleLayer(nn.Sequential):
    """conv3×3/2 → norm: an ``nn.Sequential`` (official keys) whose BatchNorms fold into the conv before them."""

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold every eval-mode BatchNorm into the convolution before it, in place (idempotent; timm's
        ``reparameterize_model`` calls it too). An ``nn.Identity`` takes its place, so the other keys keep their
        indices. LayerNorms stay: they normalise each pixel by its own statistics, which no convolution absorbs."""
        for i in range(1, len(self)):
            norm, conv = self[i], self[i - 1]
            if isinstance(norm, nn.modules.batchnorm._BatchNorm) and isinstance(conv, nn.Conv2d):
                kernel, bias = _fuse_with_bn(conv.weight, conv.bias, norm)
                conv.weight.copy_(kernel)
                conv.bias.copy_(bias)  # the stem/down-sampling convs always have a bias
                self[i] = nn.Identity()


class Stem(DownsampleLayer):
    """conv3×3/2 → LN → GELU → conv3×3/2 → LN (or BN in place of the LNs): an ``nn.Sequential`` (official keys), run in sample groups.

    Its first three outputs are the largest tensors of the network (half the first stage's width at half
    the input resolution); for inference (eval, autograd off) a large batch runs through it in groups of
    samples (:func:`unireplknet.fast.run_in_sample_groups`), which keeps them out of fresh mmap()ed memory.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if torch.jit.is_scripting():
            return self._run_layers(x)
        else:
            if python_dispatch_allowed(x) and fast.use_sample_groups(self, x):
                hidden = self[0].out_channels * ((x.shape[2] + 1) // 2) * ((x.shape[3] + 1) // 2)
                return fast.run_in_sample_groups(self._run_layers, (x,), hidden * x.element_size())
            return self._run_layers(x)

    def _run_layers(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return x


class GRNwithNHWC(nn.Module):
    """Global Response Normalization (ConvNeXt V2) on (N, H, W, C) input.

    ``out = (gamma·Nx + 1)·x + beta`` with ``Nx = ‖x‖₂,HW / (mean_C ‖x‖₂,HW + 1e-6)``; deploy drops ``beta``
    (folded into the next Linear).
    """

    def __init__(self, dim: int, use_bias: bool = True):
        super().__init__()
        self.use_bias = use_bias
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        if use_bias:
            self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ‖x‖₂ as sqrt(Σx²): torch.norm over the two spatial dims of NHWC ran 1.5-9x slower forward+backward
        # on CPU. The clamp gives an all-zero channel norm 1e-15 instead of 0 and, like torch.norm, zero gradient.
        gx = (x * x).sum(dim=(1, 2), keepdim=True).clamp_min(1e-30).sqrt()
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        if hasattr(self, "beta"):  # hasattr, not use_bias: TorchScript resolves it when compiling
            return (self.gamma * nx + 1) * x + self.beta
        return (self.gamma * nx + 1) * x


class SEBlock(nn.Module):
    """Squeeze-and-Excitation: x · σ(up(ReLU(down(avgpool(x))))), with 1×1 convs ``down``/``up``."""

    def __init__(self, input_channels: int, internal_neurons: int):
        super().__init__()
        self.down = nn.Conv2d(input_channels, internal_neurons, kernel_size=1, stride=1, bias=True)
        self.up = nn.Conv2d(internal_neurons, input_channels, kernel_size=1, stride=1, bias=True)
        self.input_channels = input_channels
        self.nonlinear = nn.ReLU(inplace=True)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(inputs, output_size=(1, 1))
        x = self.up(self.nonlinear(self.down(x)))
        return inputs * torch.sigmoid(x).view(-1, self.input_channels, 1, 1)


class DilatedReparamBlock(nn.Module):
    """A depthwise K×K conv with BN plus parallel dilated depthwise small convs, each with BN (paper §3.2.2, "Dilated Reparam Block").

    After :meth:`merge_dilated_branches` (or built with ``deploy=True``) it is a single K×K depthwise conv
    with bias, ``lk_origin``.
    """

    def __init__(self, channels: int, kernel_size: int, deploy: bool, use_sync_bn: bool = False):
        super().__init__()
        if kernel_size not in DILATED_BRANCHES:
            raise ValueError(
                f"Dilated Reparam Block supports kernel sizes {sorted(DILATED_BRANCHES)}, got {kernel_size}"
            )
        self.kernel_size = kernel_size
        self.lk_origin = create_depthwise_conv2d(channels, kernel_size, bias=deploy, plain=True)
        self.kernel_sizes, self.dilates = DILATED_BRANCHES[kernel_size]
        if not deploy:
            self.origin_bn = _batch_norm(channels, use_sync_bn)
            for k, r in zip(self.kernel_sizes, self.dilates):
                self.add_module(f"dil_conv_k{k}_{r}", create_depthwise_conv2d(channels, k, dilation=r, plain=True))
                self.add_module(f"dil_bn_k{k}_{r}", _batch_norm(channels, use_sync_bn))

    @property
    def merged(self) -> bool:
        return not hasattr(self, "origin_bn")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            if not hasattr(self, "origin_bn"):  # merged
                return self.lk_origin(x)
            return self._add_branches_scripted(x, self.origin_bn(self.lk_origin(x)))
        else:
            # The convs are plain nn.Conv2d (exact-type flop counters count them); fast.depthwise runs them
            # through unireplknet.ops unless a hook, tracer or transform needs the module itself called.
            if not hasattr(self, "origin_bn"):  # merged
                return fast.depthwise(self.lk_origin, x)
            out = self.origin_bn(fast.depthwise(self.lk_origin, x))
            for k, r in zip(self.kernel_sizes, self.dilates):
                out = out + getattr(self, f"dil_bn_k{k}_{r}")(fast.depthwise(getattr(self, f"dil_conv_k{k}_{r}"), x))
            return out

    def _add_branches_scripted(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        # TorchScript cannot look modules up by a computed name; it resolves hasattr() when compiling, so each
        # branch name that DILATED_BRANCHES uses is spelled out, in the table's order for every kernel size.
        if hasattr(self, "dil_conv_k3_1"):
            out = out + self.dil_bn_k3_1(self.dil_conv_k3_1(x))
        if hasattr(self, "dil_conv_k5_1"):
            out = out + self.dil_bn_k5_1(self.dil_conv_k5_1(x))
        if hasattr(self, "dil_conv_k9_2"):
            out = out + self.dil_bn_k9_2(self.dil_conv_k9_2(x))
        if hasattr(self, "dil_conv_k7_2"):
            out = out + self.dil_bn_k7_2(self.dil_conv_k7_2(x))
        if hasattr(self, "dil_conv_k5_2"):
            out = out + self.dil_bn_k5_2(self.dil_conv_k5_2(x))
        if hasattr(self, "dil_conv_k3_2"):
            out = out + self.dil_bn_k3_2(self.dil_conv_k3_2(x))
        if hasattr(self, "dil_conv_k3_3"):
            out = out + self.dil_bn_k3_3(self.dil_conv_k3_3(x))
        if hasattr(self, "dil_conv_k3_4"):
            out = out + self.dil_bn_k3_4(self.dil_conv_k3_4(x))
        if hasattr(self, "dil_conv_k3_5"):
            out = out + self.dil_bn_k3_5(self.dil_conv_k3_5(x))
        if hasattr(self, "dil_conv_k3_7"):
            out = out + self.dil_bn_k3_7(self.dil_conv_k3_7(x))
        return out

    def equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The (C, 1, K, K) kernel and (C,) bias of the single conv this block equals in eval mode."""
        if self.merged:
            return self.lk_origin.weight, self.lk_origin.bias
        large = _fuse_with_bn(self.lk_origin.weight, None, self.origin_bn)
        branches = []
        for k, r in zip(self.kernel_sizes, self.dilates):
            conv, bn = getattr(self, f"dil_conv_k{k}_{r}"), getattr(self, f"dil_bn_k{k}_{r}")
            branches.append((*_fuse_with_bn(conv.weight, None, bn), r))
        return reparam.merge_dilated_branches(*large, branches)

    @torch.no_grad()
    def merge_dilated_branches(self) -> None:
        """Replace the branches by the one equivalent K×K conv with bias (idempotent)."""
        if self.merged:
            return
        kernel, bias = self.equivalent_kernel_bias()
        merged = create_depthwise_conv2d(kernel.shape[0], self.kernel_size, bias=True, plain=True)
        merged = merged.to(device=kernel.device, dtype=kernel.dtype)
        merged.weight.copy_(kernel)
        merged.bias.copy_(bias)
        self.lk_origin = merged
        del self.origin_bn
        for k, r in zip(self.kernel_sizes, self.dilates):
            delattr(self, f"dil_conv_k{k}_{r}")
            delattr(self, f"dil_bn_k{k}_{r}")


def _fuse_with_bn(
    kernel: torch.Tensor, bias: Optional[torch.Tensor], bn: nn.modules.batchnorm._BatchNorm
) -> Tuple[torch.Tensor, torch.Tensor]:
    return reparam.fuse_conv_bn(kernel, bias, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)


class UniRepLKNetBlock(nn.Module):
    """dwconv (DRB for K ≥ 7) → BN → SE → Linear 4× → GELU → GRN → Linear → BN → layer scale → DropPath + x."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        drop_path: float = 0.0,
        layer_scale_init_value: Optional[float] = 1e-6,
        deploy: bool = False,
        with_cp: bool = False,
        use_sync_bn: bool = False,
        ffn_factor: int = 4,
        attempt_use_lk_impl: bool = True,  # accepted for signature compatibility; ops picks the kernel
    ):
        super().__init__()
        self.with_cp = with_cp
        self.kernel_size = kernel_size
        if kernel_size == 0:
            self.dwconv = nn.Identity()
            self.norm = nn.Identity()
        elif kernel_size >= 7:
            self.dwconv = DilatedReparamBlock(dim, kernel_size, deploy=deploy, use_sync_bn=use_sync_bn)
            self.norm = nn.Identity() if deploy else _batch_norm(dim, use_sync_bn)
        elif kernel_size in (3, 5):
            self.dwconv = create_depthwise_conv2d(dim, kernel_size, bias=deploy, plain=True)
            self.norm = nn.Identity() if deploy else _batch_norm(dim, use_sync_bn)
        else:
            raise ValueError(f"block kernel size must be 0, 3, 5 or one of 7…17 (odd), got {kernel_size}")
        self.se = SEBlock(dim, dim // 4)
        ffn_dim = int(ffn_factor * dim)
        self.pwconv1 = nn.Sequential(NCHWtoNHWC(), nn.Linear(dim, ffn_dim))
        self.act = nn.Sequential(nn.GELU(), GRNwithNHWC(ffn_dim, use_bias=not deploy))
        if deploy:
            self.pwconv2 = nn.Sequential(nn.Linear(ffn_dim, dim), NHWCtoNCHW())
        else:
            self.pwconv2 = nn.Sequential(
                nn.Linear(ffn_dim, dim, bias=False), NHWCtoNCHW(), _batch_norm(dim, use_sync_bn)
            )
        if (not deploy) and layer_scale_init_value is not None and layer_scale_init_value > 0:
            self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        else:
            self.gamma = None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    __jit_unused_properties__ = ["deployed"]

    @property
    def deployed(self) -> bool:
        return len(self.pwconv2) == 2

    def run_dwconv(self, x: torch.Tensor) -> torch.Tensor:
        """``self.dwconv(x)``; a plain depthwise ``nn.Conv2d`` goes through :func:`unireplknet.fast.depthwise`."""
        if torch.jit.is_scripting():
            return self.dwconv(x)
        else:
            if isinstance(self.dwconv, nn.Conv2d):
                return fast.depthwise(self.dwconv, x)
            return self.dwconv(x)

    def compute_residual(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.norm(self.run_dwconv(x)))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma.view(1, -1, 1, 1) * y
        return self.drop_path(y)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.compute_residual(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._forward(x)
        else:
            if python_dispatch_allowed(x):
                if fast.use_fused_block(self, x):  # deploy structure, eval, fp32 CPU inference: fewer passes
                    return fast.deploy_block_forward(self, x)
                if self.with_cp and x.requires_grad:
                    return torch.utils.checkpoint.checkpoint(self._forward, x, use_reentrant=False)
            return self._forward(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fuse this block into its deploy structure in place (idempotent; docs/reparameterization.md)."""
        if self.deployed:
            return
        if isinstance(self.dwconv, DilatedReparamBlock):
            self.dwconv.merge_dilated_branches()
        if isinstance(self.norm, nn.modules.batchnorm._BatchNorm):
            conv = self.dwconv.lk_origin if isinstance(self.dwconv, DilatedReparamBlock) else self.dwconv
            kernel, bias = _fuse_with_bn(conv.weight, conv.bias, self.norm)
            fused = create_depthwise_conv2d(kernel.shape[0], kernel.shape[-1], bias=True, plain=True)
            fused = fused.to(device=kernel.device, dtype=kernel.dtype)
            fused.weight.copy_(kernel)
            fused.bias.copy_(bias)
            if isinstance(self.dwconv, DilatedReparamBlock):
                self.dwconv.lk_origin = fused
            else:
                self.dwconv = fused
            self.norm = nn.Identity()
        linear, grn, bn = self.pwconv2[0], self.act[1], self.pwconv2[2]
        weight, bias = reparam.fold_ffn_tail(
            linear.weight,
            grn.beta if grn.use_bias else None,
            bn.weight,
            bn.bias,
            bn.running_mean,
            bn.running_var,
            bn.eps,
            self.gamma,
        )
        new_linear = nn.Linear(linear.in_features, linear.out_features, bias=True)
        new_linear = new_linear.to(device=weight.device, dtype=weight.dtype)
        new_linear.weight.copy_(weight)
        new_linear.bias.copy_(bias)
        self.pwconv2 = nn.Sequential(new_linear, NHWCtoNCHW())
        if grn.use_bias:
            grn.use_bias = False
            del grn.beta
        self.gamma = None


class UniRepLKNet(nn.Module):
    """The UniRepLKNet backbone and classifier, with the official constructor and state-dict layout.

    Args:
        in_chans: input channels (3 for images, 1 for spectrograms / time-series images …).
        num_classes: classes of the head; 0 gives pooled features (no head); ``None`` selects the official
            *features* mode: a list of four stage outputs, each through its own channels-first LayerNorm.
        depths: blocks per stage.
        dims: channels per stage.
        drop_path_rate: stochastic-depth rate, linearly increasing over all blocks.
        layer_scale_init_value: initial per-channel residual scale (``None`` or ≤ 0 disables it).
        head_init_scale: multiplies the head's initial weight and bias.
        kernel_sizes: per-stage tuples of per-block kernel sizes; ``None`` takes the official default for
            ``depths``.
        deploy: build the re-parameterized (inference) structure.
        with_cp: gradient checkpointing of every block.
        init_cfg: official MMDet/MMSeg-style dict; selects features mode; :meth:`init_weights` loads
            ``init_cfg['checkpoint']`` (classifier keys dropped) — the constructor itself only builds modules.
        attempt_use_lk_impl: accepted for compatibility; :mod:`unireplknet.ops` chooses the kernel.
        use_sync_bn: SyncBatchNorm instead of BatchNorm2d in the blocks.
        global_pool: the classifier's pooling (timm's convention): ``'avg'`` (official), ``'max'``,
            ``'avgmax'``, or ``''`` for no pooling — the (N, C, H, W) map, each pixel through the final
            LayerNorm (only with ``num_classes=0``).
        drop_rate: dropout before the classifier (timm's ``drop_rate``; 0 in the official recipe).
        downsample_norm: the norm after each stem and down-sampling convolution: ``'layernorm'`` (official; the
            layout of the official checkpoints) or ``'batchnorm'`` (BatchNorm2d, SyncBatchNorm with
            ``use_sync_bn``), which keeps each pixel's level — the signal of a series drawn as an image
            (docs/tsc.md); the deploy structure fuses it into the convolution.
    """

    __jit_unused_properties__ = ["deploy", "_model_args"]

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: Optional[int] = 1000,
        depths: Sequence[int] = (3, 3, 27, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        drop_path_rate: float = 0.0,
        layer_scale_init_value: Optional[float] = 1e-6,
        head_init_scale: float = 1.0,
        kernel_sizes: Optional[Sequence[Sequence[int]]] = None,
        deploy: bool = False,
        with_cp: bool = False,
        init_cfg: Optional[Dict[str, Any]] = None,
        attempt_use_lk_impl: bool = True,
        use_sync_bn: bool = False,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        downsample_norm: str = "layernorm",
        **kwargs: Any,
    ):
        super().__init__()
        unknown = [k for k in kwargs if k not in _IGNORED_OFFICIAL_KWARGS]
        if unknown:
            raise TypeError(f"UniRepLKNet got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        depths, dims = tuple(int(d) for d in depths), tuple(int(d) for d in dims)
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(f"depths and dims need four entries (one per stage), got {depths} and {dims}")
        if kernel_sizes is None:
            kernel_sizes = default_kernel_sizes(depths)
        kernel_sizes = tuple(tuple(int(k) for k in stage) for stage in kernel_sizes)
        if len(kernel_sizes) != 4 or any(len(ks) != d for ks, d in zip(kernel_sizes, depths)):
            raise ValueError(
                f"kernel_sizes must give one kernel size per block: depths={depths}, "
                f"got lengths {tuple(len(ks) for ks in kernel_sizes)}"
            )
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate is a dropout probability in [0, 1), got {drop_rate}")
        if downsample_norm not in DOWNSAMPLE_NORMS:
            raise ValueError(f"downsample_norm must be one of {', '.join(map(repr, DOWNSAMPLE_NORMS))}, "
                             f"got {downsample_norm!r}")
        self.downsample_norm = downsample_norm

        self.in_chans = in_chans
        self.depths, self.dims, self.kernel_sizes = depths, dims, kernel_sizes
        self.with_cp = with_cp
        self.drop_path_rate = drop_path_rate
        self.output_mode = "features" if (num_classes is None or init_cfg is not None) else "logits"
        if self.output_mode == "features" and num_classes not in (None, 0):
            raise ValueError("features mode (init_cfg given) has no classifier: pass num_classes=None")
        self.num_classes = 0 if num_classes is None else int(num_classes)
        _check_global_pool(global_pool, self.num_classes)
        self.drop_rate = drop_rate
        self.num_features = self.head_hidden_size = dims[-1]
        self.grad_checkpointing = with_cp

        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            Stem(
                nn.Conv2d(in_chans, dims[0] // 2, kernel_size=3, stride=2, padding=1),
                _downsample_norm(downsample_norm, dims[0] // 2, use_sync_bn, deploy),
                nn.GELU(),
                nn.Conv2d(dims[0] // 2, dims[0], kernel_size=3, stride=2, padding=1),
                _downsample_norm(downsample_norm, dims[0], use_sync_bn, deploy),
            )
        )
        for i in range(3):
            self.downsample_layers.append(
                DownsampleLayer(
                    nn.Conv2d(dims[i], dims[i + 1], kernel_size=3, stride=2, padding=1),
                    _downsample_norm(downsample_norm, dims[i + 1], use_sync_bn, deploy),
                )
            )

        dp_rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        cur = 0
        for i in range(4):
            self.stages.append(
                nn.Sequential(
                    *[
                        UniRepLKNetBlock(
                            dim=dims[i],
                            kernel_size=kernel_sizes[i][j],
                            drop_path=dp_rates[cur + j],
                            layer_scale_init_value=layer_scale_init_value,
                            deploy=deploy,
                            with_cp=with_cp,
                            use_sync_bn=use_sync_bn,
                        )
                        for j in range(depths[i])
                    ]
                )
            )
            cur += depths[i]

        # The modules whose outputs are the features: in features mode each stage's own LayerNorm (so timm's
        # hook-based extractor returns what forward_intermediates returns), else the stage itself.
        feature_module = "norm{}" if self.output_mode == "features" else "stages.{}"
        self.feature_info = [
            dict(num_chs=dims[i], reduction=4 * 2**i, module=feature_module.format(i)) for i in range(4)
        ]
        if self.output_mode == "logits":
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
            self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
            self.head_drop = nn.Dropout(drop_rate)
            self.head = nn.Linear(dims[-1], self.num_classes) if self.num_classes > 0 else nn.Identity()
        else:
            for i in range(4):
                self.add_module(f"norm{i}", LayerNorm(dims[i], eps=1e-6, data_format="channels_first"))

        self.apply(self._init_weights)
        self.register_load_state_dict_pre_hook(load_state_dict_pre_hook)
        if isinstance(getattr(self, "head", None), nn.Linear):
            self.head.weight.data.mul_(head_init_scale)
            self.head.bias.data.mul_(head_init_scale)
        self.init_cfg = dict(init_cfg) if init_cfg is not None else None

    def init_weights(self) -> None:
        """Load ``init_cfg['checkpoint']`` (classifier keys dropped), as MMEngine's initialisation asks.

        The constructor only builds modules; MMDet/MMSeg runners call this once the model is built (the official
        backbone loads its checkpoint at the same point), and so can any user of ``init_cfg``.
        """
        if self.init_cfg is not None and self.init_cfg.get("checkpoint"):
            load_checkpoint(self, self.init_cfg["checkpoint"], drop_head=True)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)

    # ---------------------------------------------------------------- timm model API
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r"^downsample_layers\.0\.",
            blocks=r"^(?:downsample_layers|stages)\.(\d+)"
            if coarse
            else [
                (r"^downsample_layers\.(\d+)\.", (0,)),
                (r"^stages\.(\d+)\.(\d+)\.", None),
                (r"^norm\d?\.", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self.stages:
            for block in stage:
                block.with_cp = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head if self.output_mode == "logits" else nn.Identity()

    @torch.jit.ignore
    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """Replace the head by a fresh ``num_classes``-way Linear (0 → features, no head), and optionally the
        pooling (``global_pool``: see the constructor; ``''`` needs ``num_classes=0``).

        A features-mode backbone has no classifier: ``reset_classifier(0)`` leaves it as it is (timm's feature
        wrappers call it), anything else is an error.
        """
        if self.output_mode != "logits":
            if num_classes == 0:
                return
            raise RuntimeError(
                "a features-mode backbone (num_classes=None / init_cfg / features_only) has no classifier; "
                f"build the model with num_classes={num_classes} instead"
            )
        pool_type = self.global_pool.pool_type if global_pool is None else global_pool
        _check_global_pool(pool_type, num_classes)
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=bool(global_pool))
        self.num_classes = num_classes
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(head, nn.Linear):
            self._init_weights(head)
            head = head.to(device=self.norm.weight.device, dtype=self.norm.weight.dtype)
        self.head = head

    @torch.jit.unused
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the problem when ``x`` is not a batch this network can take.

        Eager only: scripted and traced graphs leave it out (see the module docstring).
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"UniRepLKNet expects a torch.Tensor, got {type(x).__name__}")
        if not (x.is_floating_point() or x.is_complex()):
            raise TypeError(
                f"UniRepLKNet expects a floating-point image tensor, got {x.dtype}; convert it first, e.g. "
                "x.float() / 255 for 8-bit images (then normalise with the model's mean and std)"
            )
        weight = self.downsample_layers[0][0].weight
        if x.dtype != weight.dtype and not autocast_enabled(x.device.type):
            raise TypeError(
                f"the input is {x.dtype} but the model's weights are {weight.dtype}; convert one to the other, "
                f"e.g. x.to({weight.dtype}) (x.float() for float32), or model.to({x.dtype}), or run under "
                "torch.autocast"
            )
        if x.dim() != 4:
            raise ValueError(
                f"UniRepLKNet expects a 4-D (batch, channels, height, width) tensor, got shape {tuple(x.shape)}; "
                "add a batch dimension with x.unsqueeze(0) for a single image"
            )
        if x.shape[1] != self.in_chans:
            hint = " (channels-last NHWC data? use x.permute(0, 3, 1, 2))" if x.shape[-1] == self.in_chans else ""
            raise ValueError(
                f"UniRepLKNet was built for {self.in_chans} input channels, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)}){hint}; build the model with in_chans={x.shape[1]} "
                "or convert the input"
            )
        if x.shape[2] < 32 or x.shape[3] < 32:
            raise ValueError(
                f"input of {x.shape[2]}x{x.shape[3]} pixels is too small for the stride-32 network; "
                "resize or pad it to at least 32x32"
            )

    def _check_input_eager(self, x: torch.Tensor) -> None:
        if not torch.jit.is_scripting():
            if python_dispatch_allowed(x):
                self.check_input(x)

    def forward_stages(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The output of every stage (down-sampling then blocks, before any final norm)."""
        self._check_input_eager(x)
        outs: List[torch.Tensor] = []
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
            outs.append(x)
        return outs

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: Optional[bool] = None,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Stage outputs at ``indices``, and the final (raw) map.

        ``indices``: an int n takes the last n stages, a list the stages it names (negative from the end).

        ``norm``: ``True`` passes each stage output through its own channels-first LayerNorm ``norm{i}`` (the
        official features mode; only a features-mode model — ``features_only=True`` / ``num_classes=None`` —
        has them), ``False`` gives the raw stage outputs, ``None`` (default) the model's own convention:
        normalised in features mode, raw in logits mode (whose only LayerNorm acts on the pooled vector).
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        has_stage_norms = self.output_mode == "features"
        if norm is None:
            norm = has_stage_norms
        elif norm and not has_stage_norms:
            raise ValueError(
                "forward_intermediates(norm=True) applies the per-stage LayerNorms of the features mode, which a "
                "classifier model does not have; build the backbone with features_only=True (timm) or "
                "num_classes=None, whose stage norms come with the official checkpoints' detection/segmentation "
                "backbones"
            )
        self._check_input_eager(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        intermediates = []
        last = max_index if stop_early else len(self.stages) - 1
        for i in range(last + 1):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in take_indices:
                feat_norm = getattr(self, f"norm{i}", None) if norm else None
                intermediates.append(feat_norm(x) if feat_norm is not None else x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: Union[int, List[int]] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> List[int]:
        """Drop the stages after the last one in ``indices`` (and the head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        self.downsample_layers = self.downsample_layers[: max_index + 1]
        for i in range(max_index + 1, 4):
            if hasattr(self, f"norm{i}"):
                delattr(self, f"norm{i}")
        if prune_head and self.output_mode == "logits":
            self.reset_classifier(0)
            if prune_norm:
                self.norm = nn.Identity()
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's (N, dims[-1], H/32, W/32) feature map."""
        self._check_input_eager(x)
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pool → LayerNorm → dropout → head (``pre_logits=True`` stops before the head).

        With ``global_pool=''`` the map stays (N, C, H, W) and the LayerNorm normalises each pixel's channels.
        """
        x = self.global_pool(x)
        if self.global_pool.is_identity():
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        else:
            x = self.norm(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def _feature_maps(self, x: torch.Tensor) -> List[torch.Tensor]:
        # Features mode, written for TorchScript too: hasattr() on a literal name is resolved when compiling.
        outs = self.forward_stages(x)
        normed: List[torch.Tensor] = []
        if hasattr(self, "norm0") and len(outs) > 0:
            normed.append(self.norm0(outs[0]))
        if hasattr(self, "norm1") and len(outs) > 1:
            normed.append(self.norm1(outs[1]))
        if hasattr(self, "norm2") and len(outs) > 2:
            normed.append(self.norm2(outs[2]))
        if hasattr(self, "norm3") and len(outs) > 3:
            normed.append(self.norm3(outs[3]))
        return normed

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        if hasattr(self, "head"):  # logits mode (hasattr: resolved when scripting)
            return self.forward_head(self.forward_features(x))
        return self._feature_maps(x)

    @property
    def _model_args(self) -> Dict[str, Any]:
        """timm's record of the constructor arguments (``timm.models.get_model_args``, ``save_for_hf``), with the
        current structure: a re-parameterized model records ``deploy=True``, so it is rebuilt as one."""
        args = dict(self.__dict__.get("_timm_model_args", {}))
        if self.deploy:
            args["deploy"] = True
        return args

    @_model_args.setter
    def _model_args(self, value: Dict[str, Any]) -> None:
        self.__dict__["_timm_model_args"] = dict(value)

    # ---------------------------------------------------------------- re-parameterization
    def reparameterize_unireplknet(self) -> None:
        """Convert every block (and BatchNorm stem/down-sampling norms) to the deploy structure in place (the
        official method name)."""
        self.fuse_downsample_norms()
        for m in self.modules():
            if isinstance(m, UniRepLKNetBlock):
                m.reparameterize()

    def fuse_downsample_norms(self) -> None:
        """Fold every BatchNorm of the stem and down-sampling layers into the convolution before it (in place;
        see :meth:`DownsampleLayer.reparameterize`)."""
        for layer in self.downsample_layers:
            layer.reparameterize()

    @property  # type: ignore[misc]
    def deploy(self) -> bool:
        """True when every block is in the deploy (re-parameterized) structure and no BatchNorm of the stem and
        down-sampling layers is left unfused."""
        return all(block.deployed for stage in self.stages for block in stage) and not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for layer in self.downsample_layers for m in layer)


def _check_global_pool(global_pool: str, num_classes: int) -> None:
    if global_pool not in GLOBAL_POOL_TYPES:
        raise ValueError(
            f"global_pool={global_pool!r} is not supported; choose one of "
            + ", ".join(repr(p) for p in GLOBAL_POOL_TYPES)
            + " ('' keeps the unpooled map and needs num_classes=0)"
        )
    if global_pool == "" and num_classes > 0:
        raise ValueError(
            "global_pool='' (no pooling) leaves a (N, C, H, W) map, which a Linear classifier cannot take; "
            "pass num_classes=0 with it (timm.create_model(name, num_classes=0, global_pool=''))"
        )


def reparameterize(model: nn.Module, inplace: bool = True) -> nn.Module:
    """Fuse every UniRepLKNet block inside ``model`` (a UniRepLKNet or any module holding one) for inference.

    Returns the converted model (``model`` itself when ``inplace``, else a converted deep copy); the result
    computes the same function in eval mode and its state dict loads strictly into a ``deploy=True`` model.
    """
    if not inplace:
        import copy

        model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, UniRepLKNet):
            m.fuse_downsample_norms()
        elif isinstance(m, UniRepLKNetBlock):
            m.reparameterize()
    return model
