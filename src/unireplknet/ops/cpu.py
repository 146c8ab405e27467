"""The CPU depthwise convolution: PyTorch's own kernels, driven in the layout where each is fastest,
and a weight gradient computed as a *forward* convolution with the roles of input and kernel swapped.

Why (measured with ``benchmarks/bench_dwconv.py``, numbers in ``docs/performance.md``):

* PyTorch's CPU weight gradient of a large depthwise kernel is by far the slowest part of a training step
  (13×13, batch 16, 80×56×56: ≈ 95 ms in channels_last, ≈ 290 ms in NCHW, against ≈ 12 ms for the forward).
  The weight gradient of a stride-1 depthwise conv is itself a depthwise correlation::

      dW[c, i, j] = Σ_n Σ_{h,w} x_pad[n, c, h + i·d, w + j·d] · dy[n, c, h, w]

  i.e. a depthwise conv of the padded input (batch folded into channels, ``N·C`` groups) with the output
  gradient as an ``H×W`` *kernel*, stride ``d``, giving a ``K×K`` map per (n, c), then summed over n.
  PyTorch's forward kernel (oneDNN) runs that about as fast as the forward itself: 8–30× faster than
  the native weight gradient at UniRepLKNet's shapes.
* The input gradient of a stride-1 'same' depthwise conv is a forward conv of the output gradient with
  the kernel rotated by 180°, which the forward kernel also runs faster than the native input gradient.
* In this PyTorch build the forward of a large (K ≥ 9) depthwise kernel is 2–3× faster in NCHW than in
  channels_last, so a channels_last input is computed in NCHW and the result handed back in channels_last
  (the two layout copies cost far less than the difference). Small kernels (3×3, 5×5, dilated 3×3) are
  somewhat faster in channels_last, but by less than the two copies cost, so they run in the caller's layout.
* With dilation d ≥ 4 the swapped-role convolution needs stride d, for which oneDNN takes a slow path;
  PyTorch's own weight gradient is used there (those are 3×3 kernels, where it is fast anyway).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "LARGE_KERNEL_MIN",
    "NATIVE_WGRAD_MIN_DILATION",
    "cpu_supports",
    "is_channels_last",
    "compute_layout",
    "cpu_depthwise_conv2d",
    "depthwise_input_grad",
    "depthwise_weight_grad",
]

#: Kernels with at least this many taps per side are computed in NCHW, smaller ones in channels_last
#: (the crossover measured by benchmarks/bench_dwconv.py lies between 7 and 13).
LARGE_KERNEL_MIN = 9

_CL = torch.channels_last
_SUPPORTED_DTYPES = (torch.float32, torch.float64)


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a 4-D tensor laid out channels_last (and not also plain contiguous)."""
    # A 1×1 map or a single channel is both layouts at once; count it as whatever is_contiguous says first.
    # torch.channels_last spelled out (not _CL): TorchScript compiles this function and resolves no such global.
    return x.dim() == 4 and (not x.is_contiguous()) and x.is_contiguous(memory_format=torch.channels_last)


def cpu_supports(x: torch.Tensor, weight: torch.Tensor, padding: int, dilation: int) -> bool:
    """Whether :func:`cpu_depthwise_conv2d` computes this call (else the caller falls back to F.conv2d)."""
    if x.device.type != "cpu" or x.dtype not in _SUPPORTED_DTYPES or weight.dtype != x.dtype:
        return False
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[1] != 1 or weight.shape[0] != x.shape[1]:
        return False
    k = weight.shape[-1]
    return weight.shape[-2] == k and k % 2 == 1 and padding == (k - 1) * dilation // 2


def compute_layout(kernel_size: int, channels_last_input: bool) -> torch.memory_format:
    """The memory format in which the CPU forward of a ``kernel_size``² depthwise conv is computed."""
    if kernel_size >= LARGE_KERNEL_MIN or not channels_last_input:
        return torch.contiguous_format
    return _CL


def _as_layout(x: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    return x if x.is_contiguous(memory_format=fmt) else x.contiguous(memory_format=fmt)


def _conv_in_layout(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    padding: int,
    dilation: int,
    out_channels_last: bool,
) -> torch.Tensor:
    fmt = compute_layout(weight.shape[-1], out_channels_last)
    y = F.conv2d(_as_layout(x, fmt), weight, bias, 1, padding, dilation, x.shape[1])
    return _as_layout(y, _CL if out_channels_last else torch.contiguous_format)


def depthwise_input_grad(grad_out: torch.Tensor, weight: torch.Tensor, padding: int, dilation: int) -> torch.Tensor:
    """dL/dx of a stride-1 'same' depthwise conv: the output gradient convolved with the rotated kernel."""
    return _conv_in_layout(
        grad_out, weight.flip(-2, -1), None, padding, dilation, out_channels_last=is_channels_last(grad_out)
    )


#: From this dilation on, the weight gradient is PyTorch's own (the swapped-role conv would need stride ≥ 4).
NATIVE_WGRAD_MIN_DILATION = 4


#: Up to this many pixels per map, dilation ≥ 4 weight gradients use the subsampled full correlation.
_SUBSAMPLE_MAX_PIXELS = 28 * 28


def _native_weight_grad_is_faster(kernel_size: int, dilation: int, channels_last: bool) -> bool:
    """Where PyTorch's weight gradient beats the swapped-role conv (measured; docs/performance.md).

    * dilation ≥ 4: the swapped-role conv needs stride ≥ 4, which oneDNN runs on a slow path (≈ 2× slower
      than PyTorch's weight gradient; splitting the input into d² undilated phases was slower still) — except
      on NCHW maps of ≤ 28² pixels, where a stride-1 full correlation subsampled by d wins (handled first);
    * an undilated 3×3 kernel: PyTorch's is as fast in NCHW and 3× faster in channels_last, where the
      swapped-role conv would first copy input and gradient to NCHW.
    """
    return dilation >= NATIVE_WGRAD_MIN_DILATION or (kernel_size == 3 and dilation == 1)


def depthwise_weight_grad(
    x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int, padding: int, dilation: int
) -> torch.Tensor:
    """dL/dW (shape (C, 1, K, K)) of a stride-1 'same' depthwise conv, as a swapped-role forward conv (module doc)."""
    n, c, h, w = x.shape
    k, d = kernel_size, dilation
    if padding != (k - 1) * d // 2 or grad_out.shape != x.shape:
        raise ValueError(
            f"the CPU weight gradient needs stride 1 and 'same' padding (K-1)*dilation/2 = {(k - 1) * d // 2}, "
            f"got padding={padding} and output {tuple(grad_out.shape)} for input {tuple(x.shape)}"
        )
    if not _native_weight_grad_is_faster(k, d, is_channels_last(x)):
        # Batch folded into channels: one group per (n, c) plane, whose "kernel" is that plane's output gradient.
        planes = x.reshape(1, n * c, h, w)
        kernels = grad_out.reshape(n * c, 1, h, w)
        taps = F.conv2d(planes, kernels, None, d, padding, 1, n * c)
        return taps.reshape(n, c, k, k).sum(0).unsqueeze(1)
    if d >= NATIVE_WGRAD_MIN_DILATION and h * w <= _SUBSAMPLE_MAX_PIXELS and not is_channels_last(x):
        # Dilation ≥ 4 on a small map: the full stride-1 correlation over all (K-1)·d+1 offsets, then every
        # d-th offset, is more arithmetic but runs on oneDNN's fast path (measured 1.1–2× faster than PyTorch).
        taps = F.conv2d(x.reshape(1, n * c, h, w), grad_out.reshape(n * c, 1, h, w), None, 1, padding, 1, n * c)
        return taps[:, :, ::d, ::d].reshape(n, c, k, k).sum(0).unsqueeze(1)
    # PyTorch's own weight gradient, where it is the faster one (see _native_weight_grad_is_faster).
    weight_shape = [c, 1, k, k]
    return torch.ops.aten.convolution_backward(
        grad_out, x, x.new_empty(weight_shape), None, [1, 1], [padding, padding], [d, d], False,
        [0, 0], c, [False, True, False],
    )[1]


class _CPUDepthwiseConv2dFunction(torch.autograd.Function):
    """Forward in the layout that is fastest for the kernel size; backward as forward convolutions.

    The input is saved as given and put into the compute layout in backward (a channels_last input of a large
    kernel is converted to NCHW once in forward and once in backward, and no copy is held in between); the
    output gradient is converted at most once for both gradients. ``backward`` is built from differentiable
    torch ops, so double backward works too.
    """

    # forward / setup_context kept apart (PyTorch's functorch-ready form), so torch.func transforms
    # (vmap, grad, jacrev …) can run it; vmap's batching rule is derived from the torch ops inside.
    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor],
        padding: int,
        dilation: int,
    ) -> torch.Tensor:
        channels_last = is_channels_last(x)
        x_compute = _as_layout(x, compute_layout(weight.shape[-1], channels_last))
        y = F.conv2d(x_compute, weight, bias, 1, padding, dilation, x.shape[1])
        return _as_layout(y, _CL if channels_last else torch.contiguous_format)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, weight, bias, padding, dilation = inputs
        channels_last = is_channels_last(x)
        # The input is saved as given (no copy held until backward); backward puts it into the compute layout.
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation, ctx.has_bias, ctx.channels_last = padding, dilation, bias is not None, channels_last

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        x = _as_layout(x, compute_layout(weight.shape[-1], ctx.channels_last))
        fmt = _CL if is_channels_last(x) else torch.contiguous_format
        grad = _as_layout(grad_out, fmt)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            # 'same' padding: the input gradient is the forward conv with the kernel rotated by 180°.
            grad_x = F.conv2d(grad, weight.flip(-2, -1), None, 1, ctx.padding, ctx.dilation, grad.shape[1])
            grad_x = _as_layout(grad_x, _CL if ctx.channels_last else torch.contiguous_format)
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(x, grad, weight.shape[-1], ctx.padding, ctx.dilation)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


def cpu_depthwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    padding: int = 0,
    dilation: int = 1,
) -> torch.Tensor:
    """Stride-1 'same' depthwise conv on the CPU (float32/float64), with the fast backward when grads are needed.

    The output has the caller's memory format. Check :func:`cpu_supports` first; unsupported calls raise.
    """
    if not cpu_supports(x, weight, padding, dilation):
        raise ValueError(
            "the 'cpu' depthwise implementation needs a float32/float64 CPU tensor (N, C, H, W), a (C, 1, K, K) "
            f"weight with odd K and 'same' padding (K-1)*dilation/2; got x {tuple(x.shape)} {x.dtype} on "
            f"{x.device}, weight {tuple(weight.shape)} {weight.dtype}, padding={padding}, dilation={dilation}; "
            "use impl='torch' for other cases"
        )
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    if not needs_grad:
        return _conv_in_layout(x, weight, bias, padding, dilation, is_channels_last(x))
    return _CPUDepthwiseConv2dFunction.apply(x, weight, bias, padding, dilation)
