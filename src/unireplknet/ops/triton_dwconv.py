"""Triton kernels for the stride-1 'same' depthwise convolution: forward, input gradient, weight gradient.

Triton ships with the CUDA builds of PyTorch and compiles kernels just in time, so users need no build
step. The kernels address tensors through their four strides, so one kernel serves NCHW and channels_last
(and any other dense layout); they accumulate in float32 for float16 / bfloat16 / float32 inputs (float64
accumulates in float64, which the CPU interpreter uses for gradcheck).

Work split (why): a program computes a tile of ``BLOCK_C`` channels × ``BLOCK_P`` flattened pixels of one
sample. Along the tile's contiguous axis the loads coalesce — pixels for NCHW, channels for channels_last —
so the autotuner gets both tall-thin and wide-flat tiles to choose from, keyed by shape and layout.

* forward: for each of the K×K taps, load the shifted input tile (zero outside the image) and
  multiply-accumulate with that tap's per-channel weight.
* input gradient: for 'same' padding it is the forward of the output gradient with the kernel rotated
  180°, so it reuses the forward kernel.
* weight gradient: a program loads its output-gradient tile once and, for every tap, reduces
  ``dy · x_shifted`` over the tile's pixels into a per-program partial row; the partial rows (a few per
  channel) are summed by PyTorch afterwards, which keeps the result deterministic (no atomics).

Tests run these kernels on the CPU with ``TRITON_INTERPRET=1`` (tests/test_ops_triton.py). Whether
they beat cuDNN on a given GPU is for ``benchmarks/bench_dwconv.py --device cuda`` to measure; the
dispatcher only picks them where such a measurement says so (see :mod:`unireplknet.ops`).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from .._runtime import env_text

__all__ = ["triton_available", "triton_supports", "triton_depthwise_conv2d", "TRITON_DTYPES"]

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: Largest kernel the kernels are tested for (the issue asks for 3…31).
MAX_KERNEL = 31


def _interpreting() -> bool:
    return env_text("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _triton_module() -> Any:
    """Import triton once; None when it is not installed (e.g. CPU-only PyTorch wheels without triton)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except ImportError:
        return None
    return triton


def triton_available(device: Optional[torch.device] = None) -> bool:
    """Whether the Triton kernels can run on ``device`` (CUDA/ROCm GPU, or any tensor under TRITON_INTERPRET=1)."""
    if _triton_module() is None:
        return False
    if _interpreting():
        return True
    return device is not None and device.type == "cuda" and torch.cuda.is_available()


def triton_supports(x: torch.Tensor, weight: torch.Tensor, padding: int, dilation: int) -> bool:
    """Whether the Triton kernels compute this call (stride 1, 'same' padding, odd K ≤ 31, supported dtype)."""
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[1] != 1 or weight.shape[0] != x.shape[1]:
        return False
    k = weight.shape[-1]
    if weight.shape[-2] != k or k % 2 == 0 or k > MAX_KERNEL or padding != (k - 1) * dilation // 2:
        return False
    if x.dtype not in TRITON_DTYPES or weight.dtype != x.dtype or x.numel() == 0:
        return False
    return triton_available(x.device)


@functools.lru_cache(maxsize=None)
def _kernels() -> Dict[str, Callable[..., Any]]:
    """Define (once, lazily) the jitted kernels; importing this module does not import triton."""
    triton = _triton_module()
    if triton is None:
        raise ImportError(
            "the 'triton' depthwise implementation needs the triton package (it ships with the CUDA builds of "
            "PyTorch; otherwise `pip install triton`)"
        )
    import triton.language as tl

    @triton.jit
    def dw_forward_kernel(
        x_ptr, w_ptr, b_ptr, y_ptr,
        C, H, W,
        sxn, sxc, sxh, sxw,
        syn, syc, syh, syw,
        K: tl.constexpr, DIL: tl.constexpr, PAD: tl.constexpr, HAS_BIAS: tl.constexpr,
        ACC_F64: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
    ):
        pid_p = tl.program_id(0)
        pid_c = tl.program_id(1)
        n = tl.program_id(2).to(tl.int64)
        acc_dtype = tl.float64 if ACC_F64 else tl.float32
        offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
        offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
        mask_c = offs_c < C
        mask_p = offs_p < H * W
        h = offs_p // W
        w = offs_p % W
        x_base = x_ptr + n * sxn + offs_c[:, None] * sxc
        acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=acc_dtype)
        for kh in range(K):
            ih = h + (kh * DIL - PAD)
            row_ok = mask_p & (ih >= 0) & (ih < H)
            for kw in range(K):
                iw = w + (kw * DIL - PAD)
                ok = row_ok & (iw >= 0) & (iw < W)
                xv = tl.load(x_base + (ih * sxh + iw * sxw)[None, :], mask=mask_c[:, None] & ok[None, :], other=0.0)
                wv = tl.load(w_ptr + offs_c * (K * K) + (kh * K + kw), mask=mask_c, other=0.0)
                acc += xv.to(acc_dtype) * wv.to(acc_dtype)[:, None]
        if HAS_BIAS:
            bv = tl.load(b_ptr + offs_c, mask=mask_c, other=0.0)
            acc += bv.to(acc_dtype)[:, None]
        y_off = n * syn + offs_c[:, None] * syc + (h * syh + w * syw)[None, :]
        tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask_c[:, None] & mask_p[None, :])

    @triton.jit
    def dw_weight_grad_kernel(
        x_ptr, g_ptr, part_ptr,
        N, C, H, W,
        sxn, sxc, sxh, sxw,
        sgn, sgc, sgh, sgw,
        ROWS_PER_SPLIT, SPLIT_N,
        K: tl.constexpr, DIL: tl.constexpr, PAD: tl.constexpr,
        ACC_F64: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
    ):
        pid_p = tl.program_id(0)
        pid_c = tl.program_id(1)
        pid_n = tl.program_id(2)
        acc_dtype = tl.float64 if ACC_F64 else tl.float32
        offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
        offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
        mask_c = offs_c < C
        mask_p = offs_p < H * W
        h = offs_p // W
        w = offs_p % W
        # This program owns partial row (pid_n, pid_p): it accumulates samples pid_n, pid_n + SPLIT_N, …
        # (masked past N), so no two programs write the same row.
        first_n = pid_n.to(tl.int64)
        part_row = part_ptr + (first_n * ROWS_PER_SPLIT + pid_p) * (C * K * K) + offs_c * (K * K)
        for n_step in range(0, N, SPLIT_N):
            n64 = first_n + n_step
            live = mask_p & (n64 < N)
            g_off = n64 * sgn + offs_c[:, None] * sgc + (h * sgh + w * sgw)[None, :]
            gv = tl.load(g_ptr + g_off, mask=mask_c[:, None] & live[None, :], other=0.0).to(acc_dtype)
            x_base = x_ptr + n64 * sxn + offs_c[:, None] * sxc
            for kh in range(K):
                ih = h + (kh * DIL - PAD)
                row_ok = live & (ih >= 0) & (ih < H)
                for kw in range(K):
                    iw = w + (kw * DIL - PAD)
                    ok = row_ok & (iw >= 0) & (iw < W)
                    xv = tl.load(
                        x_base + (ih * sxh + iw * sxw)[None, :], mask=mask_c[:, None] & ok[None, :], other=0.0
                    )
                    tap = tl.sum(gv * xv.to(acc_dtype), axis=1)
                    prev = tl.load(part_row + (kh * K + kw), mask=mask_c, other=0.0)
                    tl.store(part_row + (kh * K + kw), prev + tap, mask=mask_c)

    return {"forward": dw_forward_kernel, "weight_grad": dw_weight_grad_kernel}


#: (BLOCK_C, BLOCK_P, num_warps) candidates: pixel-major tiles suit NCHW, channel-major tiles channels_last.
_FORWARD_CONFIGS = [(1, 256, 4), (2, 128, 4), (4, 64, 4), (1, 512, 8), (16, 32, 4), (32, 16, 4), (64, 16, 8), (32, 32, 8)]
_WGRAD_CONFIGS = [(1, 256, 4), (4, 64, 4), (1, 512, 8), (16, 32, 4), (32, 16, 4), (64, 8, 4)]
#: The tile used when interpreting (no autotuning on the CPU: it would only time the interpreter).
_INTERPRET_CONFIG = (4, 64, 1)
_SMALLEST_WGRAD_BLOCK_P = min(p for _, p, _ in _WGRAD_CONFIGS + [_INTERPRET_CONFIG])


@functools.lru_cache(maxsize=None)
def _tuned(name: str) -> Callable[..., Any]:
    """The autotuned launcher for kernel ``name`` (built once, on first GPU use)."""
    triton = _triton_module()
    kernel = _kernels()[name]
    configs = _FORWARD_CONFIGS if name == "forward" else _WGRAD_CONFIGS
    tconfigs = [triton.Config({"BLOCK_C": c, "BLOCK_P": p}, num_warps=nw) for c, p, nw in configs]
    # The key holds shape and layout (a channels_last tensor has channel stride 1); dtypes are keyed by Triton.
    if name == "forward":
        return triton.autotune(tconfigs, key=["C", "H", "W", "sxc", "syc", "K", "DIL"])(kernel)
    return triton.autotune(tconfigs, key=["N", "C", "H", "W", "sxc", "sgc", "K", "DIL"], reset_to_zero=["part_ptr"])(
        kernel
    )


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when it is NCHW- or channels_last-contiguous, else an NCHW-contiguous copy."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.contiguous()


def _launch(name: str, args: Tuple[Any, ...], consts: Dict[str, Any], pixels: int, channels: int, grid_z: int,
            device: torch.device) -> None:
    """Run kernel ``name`` on a grid of (pixel tiles, channel tiles, ``grid_z``) programs.

    Under TRITON_INTERPRET=1 with the fixed :data:`_INTERPRET_CONFIG` tile; on a GPU through the autotuner,
    which picks the tile and so the grid (hence the grid as a function of the chosen meta-parameters).
    """
    if _interpreting():
        bc, bp, nw = _INTERPRET_CONFIG
        grid = (math.ceil(pixels / bp), math.ceil(channels / bc), grid_z)
        _kernels()[name][grid](*args, **consts, BLOCK_C=bc, BLOCK_P=bp, num_warps=nw)
    else:
        def tuned_grid(meta: Dict[str, Any]) -> Tuple[int, int, int]:
            return math.ceil(pixels / meta["BLOCK_P"]), math.ceil(channels / meta["BLOCK_C"]), grid_z

        with torch.cuda.device(device):
            _tuned(name)[tuned_grid](*args, **consts)


def _launch_forward(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], padding: int, dilation: int
) -> torch.Tensor:
    x = _dense(x)
    n, c, h, w = x.shape
    k = weight.shape[-1]
    y = torch.empty_like(x)  # same layout as x
    weight = weight.contiguous()
    bias_arg = bias.contiguous() if bias is not None else weight  # dummy pointer when HAS_BIAS is False
    args = (x, weight, bias_arg, y, c, h, w, *x.stride(), *y.stride())
    consts = dict(K=k, DIL=dilation, PAD=padding, HAS_BIAS=bias is not None, ACC_F64=x.dtype == torch.float64)
    _launch("forward", args, consts, h * w, c, n, x.device)
    return y


def _launch_weight_grad(
    x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int, padding: int, dilation: int, out_dtype: torch.dtype
) -> torch.Tensor:
    x, grad_out = _dense(x), _dense(grad_out)
    n, c, h, w = x.shape
    k = kernel_size
    # Enough programs to fill a GPU, but few partial rows: split the batch only as much as needed.
    rows_per_split = math.ceil(h * w / _SMALLEST_WGRAD_BLOCK_P)
    split_n = max(1, min(n, math.ceil(2048 / (rows_per_split * math.ceil(c / 16)))))
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    partial = torch.zeros(split_n * rows_per_split, c, k * k, device=x.device, dtype=acc_dtype)
    args = (x, grad_out, partial, n, c, h, w, *x.stride(), *grad_out.stride(), rows_per_split, split_n)
    consts = dict(K=k, DIL=dilation, PAD=padding, ACC_F64=acc_dtype == torch.float64)
    _launch("weight_grad", args, consts, h * w, c, split_n, x.device)
    return partial.sum(0).view(c, 1, k, k).to(out_dtype)


class _TritonDepthwiseConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], padding: int, dilation: int
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation, ctx.has_bias = padding, dilation, bias is not None
        return _launch_forward(x, weight, bias, padding, dilation)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            # 'same' padding: the input gradient is the forward conv with the kernel rotated by 180°.
            grad_x = _launch_forward(grad_out, weight.flip(-2, -1), None, ctx.padding, ctx.dilation)
        if ctx.needs_input_grad[1]:
            grad_w = _launch_weight_grad(x, grad_out, weight.shape[-1], ctx.padding, ctx.dilation, weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3), dtype=torch.float32 if grad_out.dtype != torch.float64 else None)
            grad_b = grad_b.to(grad_out.dtype)
        return grad_x, grad_w, grad_b, None, None


def triton_depthwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    padding: int = 0,
    dilation: int = 1,
) -> torch.Tensor:
    """Stride-1 'same' depthwise conv by the Triton kernels (differentiable in x, weight and bias)."""
    if _triton_module() is None:
        raise ImportError(
            "impl='triton' needs the triton package (shipped with PyTorch's CUDA wheels; or `pip install triton`)"
        )
    if not triton_supports(x, weight, padding, dilation):
        raise ValueError(
            "the 'triton' depthwise implementation needs a CUDA tensor (or TRITON_INTERPRET=1) of shape (N, C, H, W) "
            f"in {', '.join(str(d) for d in TRITON_DTYPES)}, a (C, 1, K, K) weight of the same dtype with odd "
            f"K ≤ {MAX_KERNEL}, and 'same' padding (K-1)*dilation/2; got x {tuple(x.shape)} {x.dtype} on {x.device}, "
            f"weight {tuple(weight.shape)} {weight.dtype}, padding={padding}, dilation={dilation}; "
            "use impl='torch' for other cases"
        )
    return _TritonDepthwiseConv2dFunction.apply(x, weight, bias, padding, dilation)
