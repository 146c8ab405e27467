"""The fused inference forward (unireplknet.fast) computes the same function as the module-by-module one."""
from __future__ import annotations

import contextlib

import pytest
import torch

import unireplknet
from unireplknet import UniRepLKNet, fast
from unireplknet.model import UniRepLKNetBlock

@contextlib.contextmanager
def fused(enabled: bool, fold_grn: bool = True):
    previous, previous_fold = fast.set_fused(enabled), fast.FOLD_GRN_INTO_WEIGHT
    fast.FOLD_GRN_INTO_WEIGHT = fold_grn
    try:
        yield
    finally:
        fast.set_fused(previous)
        fast.FOLD_GRN_INTO_WEIGHT = previous_fold


def randomized_block(dim: int, kernel_size: int, dtype: torch.dtype, seed: int = 0) -> UniRepLKNetBlock:
    """A deploy-structure block whose every parameter is non-trivial (GRN gamma is zero at init)."""
    torch.manual_seed(seed)
    block = UniRepLKNetBlock(dim, kernel_size, deploy=True).to(dtype).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0.0, 0.3)
    return block


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).abs().max() / want.abs().max()).item()


CASES = [
    # dim, kernel, batch, H: covers the activation-scaled and weight-folded sides of both scales
    (16, 3, 1, 12),
    (16, 3, 3, 12),
    (24, 13, 2, 14),
    (24, 13, 1, 14),
    (32, 3, 2, 4),  # H·W < C: GRN scale applied to the activation
    (8, 0, 2, 6),  # kernel 0: dwconv is Identity, the input itself feeds SE
]


@pytest.mark.parametrize("dim,kernel,batch,size", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_fused_block_equals_reference(dim, kernel, batch, size, channels_last, dtype, tol):
    check_block(dim, kernel, batch, size, channels_last, True, dtype, tol)


@pytest.mark.parametrize("dim,kernel,batch,size", [(16, 3, 3, 12), (24, 13, 2, 14)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_fused_block_with_grn_scale_on_activation_equals_reference(dim, kernel, batch, size, dtype, tol):
    check_block(dim, kernel, batch, size, True, False, dtype, tol)


def check_block(dim, kernel, batch, size, channels_last, fold_grn, dtype, tol):
    block = randomized_block(dim, kernel, dtype)
    x = torch.randn(batch, dim, size, size, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x_before = x.clone()
    with torch.no_grad():
        with fused(False):
            want = block(x)
        with fused(True, fold_grn):  # the fused math itself, in every dtype (the model gates it to fp32)
            got = fast.deploy_block_forward(block, x)
    assert torch.equal(x, x_before), "the fused forward must not modify its input"
    assert got.shape == want.shape
    assert rel_err(got, want) < tol


@pytest.mark.parametrize("kernel", [3, 13])
def test_fused_block_gradients_match_reference(kernel):
    """With autograd on, the fused math runs out of place and its gradients equal the reference's (the model
    itself only fuses without autograd; this keeps the function right for direct callers)."""
    block = randomized_block(12, kernel, torch.float64)
    x = torch.randn(2, 12, 15, 15, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    grads = []
    for enabled in (False, True):
        xi = x.clone().requires_grad_(True)
        block.zero_grad()
        with fused(enabled):
            out = fast.deploy_block_forward(block, xi) if enabled else block(xi)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append([xi.grad.clone()] + [p.grad.clone() for p in block.parameters()])
    for g_ref, g_fused in zip(*grads):
        assert rel_err(g_fused, g_ref) < 1e-10


def test_training_mode_and_unfused_model_use_reference_path(monkeypatch):
    """Train mode and a non-deployed block never call the fused forward."""
    calls = []
    monkeypatch.setattr(fast, "deploy_block_forward", lambda block, x: calls.append(1))
    block = randomized_block(8, 3, torch.float32)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        block.train()
        block(x)
        UniRepLKNetBlock(8, 3, deploy=False).eval()(x)
        with fused(False):
            block.eval()(x)
        assert calls == []
        with fused(True):
            block.eval()(x)
        assert calls == [1]


def test_env_flag_parsing(monkeypatch):
    monkeypatch.setenv("UNIREPLKNET_FUSED", "0")
    assert fast._env_flag("UNIREPLKNET_FUSED", True) is False
    monkeypatch.setenv("UNIREPLKNET_FUSED", "on")
    assert fast._env_flag("UNIREPLKNET_FUSED", False) is True
    monkeypatch.delenv("UNIREPLKNET_FUSED")
    assert fast._env_flag("UNIREPLKNET_FUSED", True) is True
    monkeypatch.setenv("UNIREPLKNET_FUSED", "maybe")
    with pytest.raises(ValueError, match="UNIREPLKNET_FUSED"):
        fast._env_flag("UNIREPLKNET_FUSED", True)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_model_matches_official_reference_logits(reference, channels_last):
    """The official training weights, re-parameterized (the official deploy tensors where the fixture has them),
    run by the fused path, give the official deploy logits."""
    model = UniRepLKNet(**reference["kwargs"])
    model.load_state_dict(reference["train"])
    model = unireplknet.reparameterize(model)
    model.load_state_dict({**model.state_dict(), **reference["deploy"]})
    model.eval()
    io = reference["io"]
    x, want = io["input"], io["logits_deploy"]
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with fused(True), torch.inference_mode():
        got = model(x)
    assert rel_err(got, want) < 1e-5


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 64, 1])
@pytest.mark.parametrize("shape", [(1, 49, 8), (3, 50, 5), (2, 7, 33)])
def test_spatial_sum_of_squares_equals_squared_norm(monkeypatch, chunk_bytes, shape):
    """Σ_hw x² (whole, or in chunks of any size incl. a ragged last one) equals vector_norm(x, dim=1)²."""
    monkeypatch.setattr(fast, "_SUMSQ_CHUNK_BYTES", chunk_bytes)
    x = torch.randn(*shape, dtype=torch.float64)
    want = torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True) ** 2
    with torch.no_grad():
        got = fast.spatial_sum_of_squares(x)
    assert got.shape == want.shape
    assert rel_err(got, want) < 1e-12


def test_fused_block_with_chunked_grn_statistic_equals_reference(monkeypatch):
    """The chunked GRN statistic (forced by a tiny chunk) gives the same block output."""
    monkeypatch.setattr(fast, "_SUMSQ_CHUNK_BYTES", 256)
    check_block(16, 13, 2, 14, True, False, torch.float64, 1e-12)
    check_block(16, 13, 2, 14, True, False, torch.float32, 1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_sample_groups_give_the_same_model_output(monkeypatch, channels_last, dtype, tol):
    """Stem and FFN run in groups of samples (forced by a tiny GROUP_BYTES) give the whole-batch result."""
    torch.manual_seed(0)
    model = UniRepLKNet(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), kernel_sizes=((3,), (13,), (13, 3), (7,)),
                        num_classes=5, deploy=True).eval().to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(5, 3, 64, 64, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        whole = model(x)
        stem_whole = model.downsample_layers[0](x)
        monkeypatch.setattr(fast, "GROUP_BYTES", 1)  # one sample per group
        assert fast.samples_per_group(5, 16 * 32 * 4) == 1
        grouped = model(x)
        stem_grouped = model.downsample_layers[0](x)
    assert stem_grouped.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert rel_err(stem_grouped, stem_whole) < tol
    assert rel_err(grouped, whole) < tol
