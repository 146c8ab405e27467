"""Fewer passes over memory for inference: the fused eager forward of a deploy-structure block.

On a CPU the re-parameterized UniRepLKNet block is bound by its two 1×1 Linear layers and by the
element-wise tail between them (GELU, GRN, SE's scale, biases, the residual add), each of which the
module-by-module forward runs as a separate pass over a 4C-channel activation. This module computes the
same function with as few passes as the math allows in eager PyTorch:

* SE's per-sample, per-channel scale and GRN's per-sample, per-channel scale are *folded*: a scale ``s``
  of the input of a Linear equals the Linear with its weight columns scaled by ``s``
  (``(x·s) Wᵀ = x (W·s)ᵀ``), so each scale is applied to whichever side is smaller — the activation
  (in place) or a per-sample copy of the weight, used by a batched matmul;
* biases and GELU ride in the first GEMM's epilogue, bias and the residual add in the last one's
  (oneDNN's fused inner product for float32 CPU inference; ``addmm`` elsewhere);
* GRN's statistic (an L2 norm over H×W) is one reduction pass; nothing else touches the 4C tensor
  when its scale is folded into the weight (3 passes: written once, read twice), one more in-place pass
  when the activation is the smaller side (late stages).

Everything stays in NHWC order on the free view of a channels_last tensor, so no layout copies are made.

When it runs (:func:`use_fused_block`): only where its result is exactly the module graph's and nobody is
watching that graph — a deploy-structure block in eval mode, autograd off, a plain float32 CPU tensor,
float32 weights in the modules the block was built with (``nn.Linear``, ``nn.GELU``, … — not a quantized or
wrapped replacement), no autocast, no forward/backward hooks on the modules it bypasses (nor global ones),
no ``TorchDispatchMode`` / ``TorchFunctionMode`` active (``FlopCounterMode``, fake tensors …), no ``torch.func``
transform (``vmap``, ``grad`` …), and no tracing, scripting, compiling or exporting. Everywhere else the block runs module by module, so flop counters,
quantizers, hooks, autocast and tracers see and get exactly the modules they expect.

Set the environment variable ``UNIREPLKNET_FUSED=0`` (read at import) or ``unireplknet.fast.set_fused(False)``
(at any time) to run the plain module-by-module reference forward everywhere, e.g. to benchmark before/after.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F

from ._runtime import (
    any_autocast_enabled,
    dispatch_mode_active,
    env_flag,
    functorch_transform_active,
    graph_recording,
)
from .ops.cpu import is_channels_last

if TYPE_CHECKING:  # pragma: no cover - the model imports this module, never the other way round
    from .model import UniRepLKNetBlock

__all__ = ["FUSED", "fused_enabled", "set_fused", "use_fused_block", "deploy_block_forward", "spatial_sum_of_squares",
           "samples_per_group", "GROUP_BYTES", "use_sample_groups", "run_in_sample_groups", "graph_capture_active",
           "functorch_transform_active", "depthwise", "runs_as_built"]


#: Use the fused forward for deploy-structure blocks in eval mode (default on; ``UNIREPLKNET_FUSED=0``
#: turns it off at import time; assign to change it later).
FUSED: bool = env_flag("UNIREPLKNET_FUSED", True)


def fused_enabled() -> bool:
    """Whether the fused inference forward is on (see :data:`FUSED`)."""
    return FUSED


def set_fused(enabled: bool) -> bool:
    """Turn the fused inference forward on or off; returns the previous setting."""
    global FUSED
    previous, FUSED = FUSED, bool(enabled)
    return previous


def graph_capture_active() -> bool:
    """True while a tracer, compiler or exporter records the model (``torch.jit``, ``torch.compile``,
    ``torch.export``, ONNX), a ``TorchDispatchMode`` / ``TorchFunctionMode`` (``FlopCounterMode``, fake
    tensors, ``make_fx`` …) intercepts operators, or a ``torch.func`` transform runs: all of them must see the
    plain module graph."""
    # Exporters and compilers trace the plain module graph: their own fusion passes work on it, and the
    # shape-dependent choice of the folding side below is not something a traced graph should bake in. The
    # fused path calls private oneDNN ops that dispatch modes do not know, and writes into its own tensors,
    # which functorch transforms cannot batch.
    return graph_recording() or dispatch_mode_active() or functorch_transform_active()


def _hooked(module: torch.nn.Module) -> bool:
    return bool(
        module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
        or getattr(module, "_backward_pre_hooks", None)
    )


def _global_hooks() -> bool:
    from torch.nn.modules import module as nn_module

    return any(
        getattr(nn_module, name, None)
        for name in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                     "_global_backward_pre_hooks")
    )


def depthwise(conv: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for one of the model's depthwise convs, run by :func:`unireplknet.ops.depthwise_conv2d`
    (the fastest implementation for the call) where nobody watches the module.

    The model's depthwise convs are plain ``nn.Conv2d`` modules, so tools that look modules up by exact type
    (thop, ptflops) count them; the faster implementation is chosen here instead of in a subclass. The module
    itself is called (``F.conv2d``) when it has hooks (those tools), under global hooks, a tracer, compiler,
    dispatch mode or ``torch.func`` transform, for a tensor subclass, or when it was replaced by another type.
    """
    if (
        type(conv) is not torch.nn.Conv2d
        or type(x) is not torch.Tensor
        or _hooked(conv)
        or _global_hooks()
        or graph_capture_active()
    ):
        return conv(x)
    from .ops import depthwise_conv2d

    return depthwise_conv2d(x, conv.weight, conv.bias, conv.padding[0], conv.dilation[0], getattr(conv, "impl", None))


def use_fused_block(block: "UniRepLKNetBlock", x: torch.Tensor) -> bool:
    """True when ``block`` may run :func:`deploy_block_forward` on ``x``: only where it is exactly the module
    graph's result and no tool watches or changed that graph (see the module docstring for the list)."""
    return (
        FUSED
        and not block.training
        and not torch.is_grad_enabled()
        and type(x) is torch.Tensor
        and x.dim() == 4
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and block.deployed
        and not any_autocast_enabled()
        and not graph_capture_active()
        and not _global_hooks()
        and runs_as_built(block)
    )


#: The model's own modules that :func:`deploy_block_forward` reads weights from instead of calling, by
#: qualified name: this module cannot import :mod:`unireplknet.model`, which imports it.
_MODEL_MODULE = "unireplknet.model"


def _is_model_class(module: torch.nn.Module, name: str) -> bool:
    kind = type(module)
    return kind.__module__ == _MODEL_MODULE and kind.__qualname__ == name


def runs_as_built(block: "UniRepLKNetBlock") -> bool:
    """Whether the modules that :func:`deploy_block_forward` reads weights from instead of calling are still
    exactly the types the block was built with, fp32 and without hooks (a quantized or NNCF-wrapped Linear, a
    hook of thop / torchinfo must be called, so the fused forward steps aside)."""
    nn = torch.nn
    se, pw1, act, pw2 = block.se, block.pwconv1, block.act, block.pwconv2
    if not (len(pw1) == 2 and len(act) == 2 and len(pw2) == 2):
        return False
    torch_types = ((se.down, nn.Conv2d), (se.up, nn.Conv2d), (se.nonlinear, nn.ReLU), (pw1[1], nn.Linear),
                   (act[0], nn.GELU), (pw2[0], nn.Linear), (block.norm, nn.Identity))
    own_types = ((pw1[0], "NCHWtoNHWC"), (act[1], "GRNwithNHWC"), (pw2[1], "NHWCtoNCHW"))
    if any(type(module) is not kind for module, kind in torch_types):
        return False
    if not all(_is_model_class(module, name) for module, name in own_types):
        return False
    if act[0].approximate != "none" or hasattr(act[1], "beta"):
        return False
    if any(_hooked(m) for m in (se, pw1, act, pw2) + tuple(m for m, _ in torch_types + own_types)):
        return False
    weights = (se.down.weight, se.up.weight, pw1[1].weight, pw1[1].bias, pw2[0].weight, pw2[0].bias, act[1].gamma)
    return all(w is not None and w.dtype == torch.float32 and type(w) is torch.nn.Parameter for w in weights)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → (N, H·W, C), a view for channels_last tensors (a copy otherwise)."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


def _mkldnn_fusable(x: torch.Tensor) -> bool:
    # oneDNN's fused inner-product (bias + GELU, or bias + add, in the GEMM's epilogue) is an inference-only
    # op (no autograd formula) for float32 CPU tensors.
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops, "mkldnn")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


#: Fold GRN's scale into per-sample copies of the last Linear's weight (a batched matmul) when the
#: activation is larger than the weight, instead of scaling the 4C-channel activation in place. Off by
#: default: in-place scaling followed by oneDNN's fused GEMM measured 1.1-4.6x faster at every A/T stage at
#: batch 16 except A's first (0.85-0.89x) (benchmarks/bench_cpu_details.py, docs/performance.md).
FOLD_GRN_INTO_WEIGHT: bool = False

#: Rows (H·W positions, all samples at once) per chunk of the GRN statistic: a chunk's squares stay in
#: cache instead of making a full-size temporary.
_SUMSQ_CHUNK_BYTES = 1 << 20


def spatial_sum_of_squares(hid: torch.Tensor) -> torch.Tensor:
    """Σ_hw hid[n, hw, c]² for (N, HW, C) → (N, 1, C); equal to ``vector_norm(hid, 2, dim=1)²``.

    ``torch.linalg.vector_norm`` over a non-innermost dimension measured 2.3-8.8x slower than this on CPU
    (benchmarks/bench_cpu_details.py); squaring in cache-sized chunks keeps the temporary small, so this is one read of ``hid``.
    """
    n, hw, c = hid.shape
    if torch.is_grad_enabled() and hid.requires_grad:
        return (hid * hid).sum(dim=1, keepdim=True)
    rows = max(1, _SUMSQ_CHUNK_BYTES // max(1, n * c * hid.element_size()))
    if rows >= hw:
        return (hid * hid).sum(dim=1, keepdim=True)
    total = torch.zeros((n, 1, c), dtype=hid.dtype, device=hid.device)
    for start in range(0, hw, rows):
        chunk = hid[:, start:start + rows]
        total += (chunk * chunk).sum(dim=1, keepdim=True)
    return total


def deploy_block_forward(block: "UniRepLKNetBlock", x: torch.Tensor) -> torch.Tensor:
    """The deploy-structure block ``x + pwconv2(GRN(GELU(pwconv1(SE(dwconv(x))))))`` in few passes.

    Equal to the module-by-module forward up to float rounding (the order of a few multiplications
    changes). ``x`` is (N, C, H, W), preferably channels_last; the result is channels_last.
    """
    n, c, h, w = x.shape
    hw = h * w
    no_grad = not torch.is_grad_enabled()
    onednn = no_grad and _mkldnn_fusable(x)

    # dwconv goes through unireplknet.ops (depthwise); norm is Identity in the deploy structure.
    y = block.norm(block.run_dwconv(x))

    # SE: squeeze on (N, C); its 1×1 convs on a 1×1 map are Linear layers on the pooled vector.
    se = block.se
    pooled = y.mean((2, 3))
    hidden = F.relu(F.linear(pooled, se.down.weight.flatten(1), se.down.bias))
    se_scale = torch.sigmoid(F.linear(hidden, se.up.weight.flatten(1), se.up.bias))  # (N, C)

    act = _nhwc(y)  # (N, HW, C): a view of y when y is channels_last, else a fresh copy
    residual = _nhwc(x)
    # The C-channel map may be scaled in place when it is this call's own tensor, never when it is x.
    act_is_own = no_grad and (y is not x or act.data_ptr() != x.data_ptr())
    def tail(act: torch.Tensor, residual: torch.Tensor, se_scale: torch.Tensor) -> torch.Tensor:
        return _ffn_tail(block, act, residual, se_scale, act_is_own, onednn)

    if no_grad:  # sample groups keep the 4C-channel temporaries small (see GROUP_BYTES)
        ffn = block.pwconv1[1].weight.shape[0]
        out = run_in_sample_groups(tail, (act, residual, se_scale), hw * ffn * x.element_size())
    else:
        out = tail(act, residual, se_scale)
    return out.view(n, h, w, c).permute(0, 3, 1, 2)


#: Largest 4C-channel temporary (bytes) the fused forward makes at once under no_grad; bigger batches
#: run the FFN in groups of samples. glibc serves allocations above 32 MiB with fresh mmap()ed pages;
#: smaller groups reuse the heap (a T batch-16 forward: 4k-18k page faults instead of 47k-88k) and keep the
#: peak temporary small; the forward's time changed by 0-14% at 2 threads (benchmarks/bench_cpu_details.py).
GROUP_BYTES: int = 16 << 20


def samples_per_group(n: int, bytes_per_sample: int) -> int:
    """How many of ``n`` samples to process at once so a temporary of ``bytes_per_sample`` each stays ≤ GROUP_BYTES."""
    return max(1, min(n, GROUP_BYTES // max(1, bytes_per_sample)))


def _ffn_tail(
    block: "UniRepLKNetBlock",
    act: torch.Tensor,
    residual: torch.Tensor,
    se_scale: torch.Tensor,
    act_is_own: bool,
    onednn: bool,
) -> torch.Tensor:
    """``residual + pwconv2(GRN(GELU(pwconv1(act · se_scale))))`` on (G, HW, C) maps → (G, HW, C)."""
    n, hw, c = act.shape
    no_grad = not torch.is_grad_enabled()
    fc1, fc2 = block.pwconv1[1], block.pwconv2[0]
    w1, b1, w2, b2 = fc1.weight, fc1.bias, fc2.weight, fc2.bias
    ffn = w1.shape[0]

    # pwconv1 (C → 4C) on SE's output. SE's scale goes on the smaller side: a batch of one scales the
    # weight's columns when the C-channel map is larger than the weight; otherwise the map is scaled (in
    # place when it is this call's own tensor: a C-channel pass, a quarter of a 4C one).
    if n == 1 and hw > ffn:
        w1 = w1 * se_scale  # (4C, C) * (1, C)
    elif act_is_own:
        act = act.mul_(se_scale.unsqueeze(1))
    else:
        act = act * se_scale.unsqueeze(1)
    act2d = act.reshape(n * hw, c)
    if onednn:  # bias and GELU in the GEMM's epilogue: the 4C tensor is written once
        hid = torch.ops.mkldnn._linear_pointwise.default(act2d, w1, b1, "gelu", [], "none")
    else:
        hid = F.gelu(torch.addmm(b1, act2d, w1.t()))
    hid = hid.view(n, hw, ffn)

    # GRN (deploy: no beta): scale = gamma · ‖hid‖₂,HW / (mean_C ‖hid‖₂,HW + 1e-6) + 1, per sample & channel.
    gx = spatial_sum_of_squares(hid).sqrt_()  # (N, 1, 4C) = ‖hid‖₂ over H·W: one read pass
    nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
    grn_scale = block.act[1].gamma.view(1, 1, ffn) * nx + 1

    # pwconv2 (4C → C) on GRN's output, plus bias, plus the residual x.
    residual = residual.reshape(n * hw, c)
    if hw > c and (n == 1 or (FOLD_GRN_INTO_WEIGHT and no_grad)):
        if n == 1:  # scale the weight's columns once; the activation is untouched
            w2s = w2 * grn_scale.view(1, ffn)
            if onednn:
                out = torch.ops.mkldnn._linear_pointwise.binary(hid.view(hw, ffn), residual, w2s, b2, "add")
            else:
                out = torch.addmm(residual + b2, hid.view(hw, ffn), w2s.t())
        else:  # per-sample scaled weights (N, 4C, C), accumulated onto residual + bias
            w2s_t = grn_scale.transpose(1, 2) * w2.t()
            out = torch.empty((n, hw, c), dtype=act.dtype, device=act.device)
            torch.add(residual.view(n, hw, c), b2, out=out)
            out.baddbmm_(hid, w2s_t)
    else:
        hid = hid.mul_(grn_scale) if no_grad else hid * grn_scale
        if onednn:
            out = torch.ops.mkldnn._linear_pointwise.binary(hid.view(n * hw, ffn), residual, w2, b2, "add")
        else:
            out = torch.addmm(residual + b2, hid.view(n * hw, ffn), w2.t())
    return out.view(n, hw, c)


def use_sample_groups(module: torch.nn.Module, x: torch.Tensor) -> bool:
    """True when ``module`` may run ``x`` in sample groups (fused on, eval, autograd off, batch > 1)."""
    return (
        FUSED and not module.training and not torch.is_grad_enabled() and type(x) is torch.Tensor
        and x.dim() == 4 and x.shape[0] > 1 and not graph_capture_active()
    )


def run_in_sample_groups(
    fn: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor], bytes_per_sample: int
) -> torch.Tensor:
    """``fn(*tensors)`` for a per-sample ``fn``, computed on groups of samples (dim 0 of every tensor)
    whose temporaries stay ≤ GROUP_BYTES; the result keeps ``fn``'s memory format."""
    n = tensors[0].shape[0]
    group = samples_per_group(n, bytes_per_sample)
    if group >= n:
        return fn(*tensors)
    first = fn(*(t[:group] for t in tensors))
    memory_format = torch.channels_last if is_channels_last(first) else torch.contiguous_format
    out = torch.empty((n,) + tuple(first.shape[1:]), dtype=first.dtype, device=first.device,
                      memory_format=memory_format)
    out[:group] = first
    for start in range(group, n, group):
        out[start:start + group] = fn(*(t[start:start + group] for t in tensors))
    return out
