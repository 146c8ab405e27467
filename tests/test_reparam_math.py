"""Each re-parameterization identity of unireplknet.reparam, checked against the unfused computation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unireplknet import reparam
from unireplknet.model import DILATED_BRANCHES, DilatedReparamBlock

KERNELS = [3, 5, 7, 9, 11, 13, 15, 17]
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


def _bn_stats(c: int, dtype, g):
    return dict(
        bn_weight=torch.rand(c, generator=g, dtype=dtype) + 0.5,
        bn_bias=torch.randn(c, generator=g, dtype=dtype),
        running_mean=torch.randn(c, generator=g, dtype=dtype),
        running_var=torch.rand(c, generator=g, dtype=dtype) + 0.1,
        eps=1e-5,
    )


def _bn_eval(y, s):
    return F.batch_norm(y, s["running_mean"], s["running_var"], s["bn_weight"], s["bn_bias"], False, 0.0, s["eps"])


def _close(a, b, dtype):
    scale = b.abs().max().clamp_min(1.0)
    assert (a - b).abs().max() / scale < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", KERNELS)
@pytest.mark.parametrize("with_conv_bias", [False, True])
def test_fuse_conv_bn(k, dtype, with_conv_bias):
    g = torch.Generator().manual_seed(k)
    c = 6
    x = torch.randn(2, c, 20, 20, generator=g, dtype=dtype)
    w = torch.randn(c, 1, k, k, generator=g, dtype=dtype)
    b = torch.randn(c, generator=g, dtype=dtype) if with_conv_bias else None
    stats = _bn_stats(c, dtype, g)
    expected = _bn_eval(F.conv2d(x, w, b, padding=k // 2, groups=c), stats)
    fw, fb = reparam.fuse_conv_bn(w, b, **stats)
    _close(F.conv2d(x, fw, fb, padding=k // 2, groups=c), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [3, 5, 7, 9])
@pytest.mark.parametrize("r", [1, 2, 3, 4, 5, 7])
def test_dilate_kernel(k, r, dtype):
    g = torch.Generator().manual_seed(100 * k + r)
    c = 4
    x = torch.randn(2, c, 40, 40, generator=g, dtype=dtype)
    w = torch.randn(c, 1, k, k, generator=g, dtype=dtype)
    pad = (k - 1) * r // 2
    expected = F.conv2d(x, w, padding=pad, dilation=r, groups=c)
    dense = reparam.dilate_kernel(w, r)
    assert dense.shape[-1] == (k - 1) * r + 1
    _close(F.conv2d(x, dense, padding=dense.shape[-1] // 2, groups=c), expected, dtype)


def test_dilate_kernel_rejects_bad_dilation():
    with pytest.raises(ValueError, match="dilation"):
        reparam.dilate_kernel(torch.ones(1, 1, 3, 3), 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("big", KERNELS)
def test_merge_parallel_kernels(big, dtype):
    g = torch.Generator().manual_seed(big)
    c = 3
    x = torch.randn(1, c, 24, 24, generator=g, dtype=dtype)
    sizes = [s for s in KERNELS if s <= big]
    kernels = [torch.randn(c, 1, s, s, generator=g, dtype=dtype) for s in sizes]
    biases = [torch.randn(c, generator=g, dtype=dtype) for _ in sizes]
    expected = sum(F.conv2d(x, w, b, padding=w.shape[-1] // 2, groups=c) for w, b in zip(kernels, biases))
    mw, mb = reparam.merge_parallel_kernels(kernels, biases)
    assert mw.shape[-1] == big
    _close(F.conv2d(x, mw, mb, padding=big // 2, groups=c), expected, dtype)


def test_pad_kernel_rejects_uncentrable_sizes():
    with pytest.raises(ValueError, match="centre"):
        reparam.pad_kernel(torch.ones(1, 1, 5, 5), 6)
    with pytest.raises(ValueError, match="centre"):
        reparam.pad_kernel(torch.ones(1, 1, 5, 5), 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("big", sorted(DILATED_BRANCHES))
def test_merge_dilated_branches_matches_the_block(big, dtype):
    """The official branch table of every K: the trained DRB (eval mode) equals its merged K×K conv."""
    torch.manual_seed(big)
    c = 4
    block = DilatedReparamBlock(c, big, deploy=False).to(dtype)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.2, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
            elif isinstance(m, torch.nn.Conv2d):
                m.weight.normal_()
    block.eval()
    x = torch.randn(2, c, 3 * big, 3 * big, dtype=dtype)
    expected = block(x)
    w, b = block.equivalent_kernel_bias()
    _close(F.conv2d(x, w, b, padding=big // 2, groups=c), expected, dtype)
    block.merge_dilated_branches()
    assert block.merged and not hasattr(block, "origin_bn")
    _close(block(x), expected, dtype)
    block.merge_dilated_branches()  # idempotent
    _close(block(x), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_beta", [True, False])
@pytest.mark.parametrize("with_layer_scale", [True, False])
def test_fold_ffn_tail(dtype, with_beta, with_layer_scale):
    g = torch.Generator().manual_seed(7)
    c, hidden = 6, 24
    z = torch.randn(2, 5, 5, hidden, generator=g, dtype=dtype)  # GRN output without its beta (NHWC)
    w2 = torch.randn(c, hidden, generator=g, dtype=dtype)
    beta = torch.randn(1, 1, 1, hidden, generator=g, dtype=dtype) if with_beta else None
    s = torch.rand(c, generator=g, dtype=dtype) + 0.1 if with_layer_scale else None
    stats = _bn_stats(c, dtype, g)
    y = F.linear(z + (beta if beta is not None else 0), w2).permute(0, 3, 1, 2)
    expected = _bn_eval(y, stats)
    if s is not None:
        expected = expected * s.view(1, -1, 1, 1)
    fw, fb = reparam.fold_ffn_tail(w2, beta, **stats, layer_scale=s)
    _close(F.linear(z, fw, fb).permute(0, 3, 1, 2), expected, dtype)
