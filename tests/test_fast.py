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
    from unireplknet._runtime import env_flag

    monkeypatch.setenv("UNIREPLKNET_FUSED", "0")
    assert env_flag("UNIREPLKNET_FUSED", True) is False
    monkeypatch.setenv("UNIREPLKNET_FUSED", "on")
    assert env_flag("UNIREPLKNET_FUSED", False) is True
    monkeypatch.delenv("UNIREPLKNET_FUSED")
    assert env_flag("UNIREPLKNET_FUSED", True) is True
    monkeypatch.setenv("UNIREPLKNET_FUSED", "maybe")
    with pytest.raises(ValueError, match="UNIREPLKNET_FUSED"):
        env_flag("UNIREPLKNET_FUSED", True)


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


# ------------------------------------------------------------------------------------------ where it runs
def _deploy_model(seed: int = 0) -> UniRepLKNet:
    """A small deploy-structure model with every block kind and non-trivial weights."""
    from conftest import randomize_bn_and_scales, tiny_model

    torch.manual_seed(seed)
    return unireplknet.reparameterize(randomize_bn_and_scales(tiny_model())).eval()


def _count_fused(monkeypatch) -> list:
    calls = []
    original = fast.deploy_block_forward

    def counting(block, x):
        calls.append(block)
        return original(block, x)

    monkeypatch.setattr(fast, "deploy_block_forward", counting)
    return calls


DTYPE_CASES = [
    # dtype of model and input, autocast dtype (None: off), whether the fused path may run, tolerance
    (torch.float32, None, True, 1e-5),
    (torch.float64, None, False, 0.0),
    (torch.float32, torch.bfloat16, False, 0.0),
]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # CUDA: always the module graph


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, autocast, fuses, tol", DTYPE_CASES)
def test_fused_model_equals_plain_model_where_it_runs(monkeypatch, device, dtype, autocast, fuses, tol):
    """Fused on vs off at model level: fp32 on the CPU runs the fused path and agrees to float noise; fp64,
    CPU bf16 autocast (where oneDNN's fused op cannot run) and CUDA fall back to the module graph exactly."""
    fuses = fuses and device == "cpu"
    tol = tol if fuses else 0.0
    model = _deploy_model().to(device=device, dtype=dtype)
    x = torch.randn(3, 3, 64, 64, dtype=dtype, device=device)
    calls = _count_fused(monkeypatch)
    context = torch.autocast(device, dtype=autocast) if autocast else contextlib.nullcontext()
    with torch.no_grad(), context:
        with fused(False):
            want = model(x)
        with fused(True):
            got = model(x)
    assert bool(calls) == fuses
    assert got.dtype == want.dtype and torch.isfinite(got).all()
    assert rel_err(got.float(), want.float()) <= tol


def test_fused_path_steps_aside_for_grad_hooks_modes_and_replaced_modules(monkeypatch):
    model = _deploy_model()
    x = torch.randn(2, 3, 64, 64)
    calls = _count_fused(monkeypatch)
    with torch.no_grad():
        model(x)
    assert calls, "baseline: fp32 CPU inference is fused"

    def runs_fused(**kwargs) -> bool:
        calls.clear()
        model(x)
        return bool(calls)

    with torch.enable_grad():
        assert not runs_fused()
    with torch.no_grad():
        # a forward hook on a bypassed Linear fires, so the block runs module by module
        seen = []
        handle = model.stages[1][0].pwconv1[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
        calls.clear()
        model(x)
        handle.remove()
        assert seen and model.stages[1][0] not in calls
        # a global hook (thop, torchinfo …)
        handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
        try:
            assert not runs_fused()
        finally:
            handle.remove()
        # a dispatch mode (here the flop counter)
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False):
            assert not runs_fused()
        assert runs_fused()


def test_dynamic_quantization_runs_the_quantized_linears():
    """quantize_dynamic swaps nn.Linear for a quantized module; the block must call it, not read weights."""
    model = _deploy_model()
    x = torch.randn(2, 3, 64, 64)
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    assert type(quantized.stages[1][0].pwconv1[1]) is not torch.nn.Linear
    with torch.no_grad():
        want, got = model(x), quantized(x)
    assert rel_err(got, want) < 0.1  # int8 weights: close, not equal …
    assert not torch.equal(got, want)  # … and really quantized (the fused path would have ignored them)


@pytest.mark.parametrize("variant, paper_gmacs", [("a", 0.64), ("t", 4.90)])
def test_flop_counter_and_count_macs_give_the_paper_macs_of_a_real_cpu_model(variant, paper_gmacs):
    """The paper's (README) FLOPs column is the deploy structure's multiply-accumulates at 224²."""
    from torch.utils.flop_counter import FlopCounterMode

    model = unireplknet.create_model(variant, deploy=True).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert round(counter.get_total_flops() / 2e9, 2) == paper_gmacs
    assert round(unireplknet.count_macs(model) / 1e9, 2) == paper_gmacs


def test_vmap_over_the_model_equals_the_batched_forward():
    """torch.func.vmap runs the CPU depthwise autograd Function (setup_context form) and the whole model."""
    from conftest import tiny_model

    torch.manual_seed(0)
    model = tiny_model().eval()
    xs = torch.randn(3, 2, 3, 32, 32)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def predict(p, x):
        return torch.func.functional_call(model, (p, buffers), (x,))

    got = torch.func.vmap(predict, in_dims=(None, 0))(params, xs)
    with torch.no_grad():
        want = torch.stack([model(x) for x in xs])
    assert rel_err(got, want) < 1e-5
    # per-sample gradients through the custom backward equal autograd's on F.conv2d
    from unireplknet.ops import depthwise_conv2d

    weight = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    x = torch.randn(3, 1, 4, 9, 9, dtype=torch.float64)
    per_sample = torch.func.vmap(
        torch.func.grad(lambda w, xi: depthwise_conv2d(xi, w, None, 2).square().sum()), in_dims=(None, 0)
    )(weight, x)
    for grad, xi in zip(per_sample, x):
        w = weight.clone().requires_grad_()
        (torch.nn.functional.conv2d(xi, w, None, 1, 2, 1, 4).square().sum()).backward()
        assert rel_err(grad, w.grad) < 1e-12


@pytest.mark.parametrize("variant, paper_gmacs", [("a", 0.64), ("t", 4.90)])
def test_fvcore_counts_the_paper_macs_of_a_real_cpu_model(variant, paper_gmacs):
    """fvcore traces the model (a tracer: the fused path steps aside) and counts one 'flop' per multiply-add."""
    from fvcore.nn import FlopCountAnalysis

    model = unireplknet.create_model(variant, deploy=True).eval()
    analysis = FlopCountAnalysis(model, torch.randn(1, 3, 224, 224))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert round(analysis.total() / 1e9, 2) == paper_gmacs


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode])
def test_vmap_over_the_reparameterized_model_steps_aside_from_the_fused_path(grad_mode):
    """Under a torch.func transform the fused path (in-place scaling, sample groups writing into a fresh output)
    would mix batched and unbatched tensors; vmap must give the plain batched forward's result."""
    torch.manual_seed(0)
    model = unireplknet.create_model("a", deploy=True).eval()
    for batch in (1, 2):  # batch 1: the weight-folding side; 2: sample groups and in-place scaling
        xs = torch.randn(3, batch, 3, 64, 64)
        with grad_mode():
            got = torch.func.vmap(model)(xs)
        with fused(False), torch.no_grad():
            want = torch.stack([model(x) for x in xs])
        assert got.shape == want.shape
        assert rel_err(got, want) < 1e-5
    # the fused path itself still runs outside the transform
    with grad_mode():
        assert fast.use_fused_block(model.stages[1][0], torch.randn(1, 80, 16, 16))
