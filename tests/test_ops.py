"""The depthwise-conv entry point: the CPU implementation against torch.nn.functional.conv2d, and dispatch.

Truth is PyTorch's own convolution (forward and autograd) and torch.autograd.gradcheck in float64.
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unireplknet.ops as ops
from unireplknet.ops import (
    ENV_VAR,
    DepthwiseConv2d,
    create_depthwise_conv2d,
    crop_kernel_to_reach,
    depthwise_conv2d,
    select_implementation,
    set_default_impl,
)
from unireplknet.ops import gpu_table
from unireplknet.ops.cpu import cpu_depthwise_conv2d, depthwise_weight_grad

CL = torch.channels_last
#: (kernel, dilation) pairs of UniRepLKNet: the 13×13 LarK, its dilated branches, the 3×3 SmaK.
MODEL_KERNELS = [(13, 1), (5, 1), (7, 2), (3, 3), (3, 4), (3, 5), (3, 1)]


@pytest.fixture(autouse=True)
def _clean_dispatch_state(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("UNIREPLKNET_DWCONV_TABLE", raising=False)
    set_default_impl(None)
    yield
    set_default_impl(None)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max())


def _inputs(shape, k, bias=True, channels_last=False, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=CL)
    w = torch.randn(shape[1], 1, k, k, generator=gen, dtype=dtype) / k
    b = torch.randn(shape[1], generator=gen, dtype=dtype) if bias else None
    return x, w, b


# ------------------------------------------------------------------------------------------- CPU path
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@pytest.mark.parametrize("k,d", MODEL_KERNELS)
def test_cpu_forward_and_gradients_match_conv2d(k, d, channels_last):
    x, w, b = _inputs((2, 6, 15, 13), k, channels_last=channels_last)
    pad = (k - 1) * d // 2
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    ref_leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y = cpu_depthwise_conv2d(*leaves, pad, d)
    y_ref = F.conv2d(*ref_leaves, 1, pad, d, x.shape[1])
    assert y.is_contiguous(memory_format=CL if channels_last else torch.contiguous_format)
    assert _rel(y, y_ref) < 1e-5
    grad = torch.randn_like(y_ref)
    y.backward(grad)
    y_ref.backward(grad)
    for name, ours, ref in zip(("x", "weight", "bias"), leaves, ref_leaves):
        assert _rel(ours.grad, ref.grad) < 1e-5, f"grad of {name}"
    assert leaves[0].grad.is_contiguous(memory_format=CL if channels_last else torch.contiguous_format)


def test_cpu_weight_gradient_without_input_gradient_and_without_bias():
    x, w, _ = _inputs((3, 4, 9, 10), 7, bias=False)
    wl, wr = w.clone().requires_grad_(), w.clone().requires_grad_()
    cpu_depthwise_conv2d(x, wl, None, 3, 1).square().sum().backward()
    F.conv2d(x, wr, None, 1, 3, 1, 4).square().sum().backward()
    assert _rel(wl.grad, wr.grad) < 1e-5


def test_weight_gradient_function_matches_aten_backward():
    x, w, _ = _inputs((2, 3, 11, 8), 5, bias=False)
    g = torch.randn(2, 3, 11, 8)
    ref = torch.ops.aten.convolution_backward(
        g, x, w, None, [1, 1], [4, 4], [2, 2], False, [0, 0], 3, [False, True, False]
    )[1]
    assert _rel(depthwise_weight_grad(x, g, 5, 4, 2), ref) < 1e-5


@pytest.mark.parametrize(
    "k,d,channels_last", [(3, 2, False), (5, 1, True), (3, 1, True)], ids=["k3d2-nchw", "k5-cl", "k3-cl"]
)
def test_cpu_gradcheck_float64(k, d, channels_last):
    x, w, b = _inputs((2, 3, 6, 5), k, channels_last=channels_last, dtype=torch.float64)
    pad = (k - 1) * d // 2
    inputs = tuple(t.requires_grad_() for t in (x, w, b))
    assert torch.autograd.gradcheck(lambda *a: cpu_depthwise_conv2d(*a, pad, d), inputs, fast_mode=True)


def test_cpu_double_backward_float64():
    x, w, b = _inputs((1, 2, 5, 5), 3, dtype=torch.float64)
    inputs = tuple(t.requires_grad_() for t in (x, w, b))
    assert torch.autograd.gradgradcheck(lambda *a: cpu_depthwise_conv2d(*a, 1, 1), inputs, fast_mode=True)


def test_cpu_path_rejects_what_it_cannot_compute():
    x, w, _ = _inputs((1, 4, 8, 8), 3, bias=False)
    with pytest.raises(ValueError, match="impl='torch'"):
        cpu_depthwise_conv2d(x, w, None, 0, 1)  # not 'same' padding
    with pytest.raises(ValueError, match="float32/float64"):
        cpu_depthwise_conv2d(x.half(), w.half(), None, 1, 1)


# ------------------------------------------------------------------------------------------- dispatch
def test_auto_picks_cpu_path_for_float_cpu_tensors_and_torch_otherwise():
    x, w, _ = _inputs((1, 4, 8, 8), 3)
    assert select_implementation(x, w, 1, 1) == "cpu"
    assert select_implementation(x.bfloat16(), w.bfloat16(), 1, 1) == "torch"
    assert select_implementation(x, w, 0, 1) == "torch"  # padding other than 'same'
    assert select_implementation(x, torch.randn(4, 1, 3, 5), 1, 1) == "torch"  # non-square kernel


def test_environment_variable_forces_and_excludes(monkeypatch):
    x, w, _ = _inputs((1, 4, 8, 8), 3)
    monkeypatch.setenv(ENV_VAR, "torch")
    assert select_implementation(x, w, 1, 1) == "torch"
    monkeypatch.setenv(ENV_VAR, "auto,-cpu")
    assert select_implementation(x, w, 1, 1) == "torch"
    monkeypatch.setenv(ENV_VAR, "cpu")
    assert select_implementation(x, w, 1, 1) == "cpu"
    monkeypatch.setenv(ENV_VAR, "cuda-magic")
    with pytest.raises(ValueError, match="unknown depthwise-conv implementation 'cuda-magic'.*torch"):
        select_implementation(x, w, 1, 1)


def test_argument_beats_set_default_impl_beats_environment(monkeypatch):
    x, w, _ = _inputs((1, 4, 8, 8), 3)
    monkeypatch.setenv(ENV_VAR, "torch")
    set_default_impl("cpu")
    assert ops.get_default_impl() == "cpu"
    assert select_implementation(x, w, 1, 1) == "cpu"
    assert select_implementation(x, w, 1, 1, impl="torch") == "torch"
    set_default_impl(None)
    assert select_implementation(x, w, 1, 1) == "torch"
    with pytest.raises(ValueError, match="set_default_impl"):
        set_default_impl("fastest")


def test_forced_but_unsupported_falls_back_with_warning_or_raises_for_the_argument(monkeypatch):
    x, w, _ = _inputs((1, 4, 8, 8), 3)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv(ENV_VAR, "triton")
    ops._warned.clear()
    with pytest.warns(RuntimeWarning, match="'triton'.*automatic choice"):
        assert select_implementation(x, w, 1, 1) == "cpu"
    with pytest.raises((ValueError, ImportError), match="triton"):
        depthwise_conv2d(x, w, None, 1, 1, impl="triton")


@pytest.mark.parametrize("impl", ["auto", "torch", "cpu"])
def test_entry_point_matches_conv2d_for_each_implementation(impl):
    x, w, b = _inputs((2, 5, 9, 9), 5, channels_last=True)
    assert _rel(depthwise_conv2d(x, w, b, 2, 1, impl=impl), F.conv2d(x, w, b, 1, 2, 1, 5)) < 1e-5


def test_module_stays_a_conv2d_with_standard_keys_and_honours_impl():
    conv = create_depthwise_conv2d(8, 7, dilation=2, bias=True, impl="torch")
    assert isinstance(conv, nn.Conv2d) and isinstance(conv, DepthwiseConv2d)
    assert set(conv.state_dict()) == {"weight", "bias"}
    assert conv.padding == (6, 6) and conv.dilation == (2, 2) and conv.groups == 8
    x = torch.randn(1, 8, 12, 12)
    assert _rel(conv(x), F.conv2d(x, conv.weight, conv.bias, 1, 6, 2, 8)) < 1e-6
    with pytest.raises(ValueError, match="unknown depthwise-conv implementation"):
        create_depthwise_conv2d(8, 3, impl="fast")
    with pytest.raises(ValueError, match="positive odd"):
        create_depthwise_conv2d(8, 4)


def test_tracers_and_exporters_see_plain_conv2d():
    conv = create_depthwise_conv2d(4, 5, bias=True)
    x = torch.randn(1, 4, 9, 9)
    traced = torch.jit.trace(conv, x)
    assert "aten::_convolution" in str(traced.graph)
    assert "PythonOp" not in str(traced.graph)
    assert _rel(traced(x), conv(x)) < 1e-6
    exported = torch.export.export(conv, (x,))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert any("conv" in t for t in targets), targets
    assert _rel(exported.module()(x), conv(x)) < 1e-6


# ------------------------------------------------------------------------ kernels larger than the map
@pytest.mark.parametrize("h,w", [(1, 1), (2, 2), (4, 4), (2, 5), (6, 3)])
@pytest.mark.parametrize("k,d", MODEL_KERNELS)
def test_cropped_kernel_gives_the_full_convolution_and_its_gradients(h, w, k, d):
    x, weight, b = _inputs((3, 6, h, w), k, dtype=torch.float64)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    full = F.conv2d(x, weight, b, 1, d * (k - 1) // 2, d, 6)
    cropped_w, pad = crop_kernel_to_reach(weight, d * (k - 1) // 2, d, h, w)
    reach = min((k - 1) // 2, (max(h, w) - 1) // d)
    assert cropped_w.shape[-1] == 2 * reach + 1 and pad == reach * d
    cropped = F.conv2d(x, cropped_w, b, 1, pad, d, 6)
    seed = torch.randn_like(full)
    gx_full, gw_full = torch.autograd.grad(full, (x, weight), seed)
    gx_crop, gw_crop = torch.autograd.grad(cropped, (x, weight), seed)
    # The identity is exact: same outputs, same input gradient, and the dropped taps' gradient is zero.
    assert torch.allclose(cropped, full, atol=1e-12)
    assert torch.allclose(gx_crop, gx_full, atol=1e-12) and torch.allclose(gw_crop, gw_full, atol=1e-12)


def test_crop_leaves_kernels_that_fit_and_non_same_padding_alone():
    w = torch.randn(4, 1, 13, 13)
    assert crop_kernel_to_reach(w, 6, 1, 7, 7)[0] is w  # 13 = 2·7−1: every tap can meet the input
    assert crop_kernel_to_reach(w, 3, 1, 1, 1)[0] is w  # not 'same' padding: not ours to change
    assert crop_kernel_to_reach(torch.randn(4, 1, 5, 3), 2, 1, 1, 1)[1] == 2  # not square


@pytest.mark.parametrize("impl", ["auto", "torch", "cpu"])
def test_dispatcher_on_maps_smaller_than_the_kernel_matches_conv2d(impl):
    x, w, b = _inputs((2, 5, 3, 2), 13, channels_last=True)
    x.requires_grad_(True)
    w.requires_grad_(True)
    ours = depthwise_conv2d(x, w, b, 6, 1, impl=impl)
    ref = F.conv2d(x, w, b, 1, 6, 1, 5)
    assert _rel(ours, ref) < 1e-5 and ours.shape == ref.shape
    seed = torch.randn_like(ref)
    for g_ours, g_ref in zip(torch.autograd.grad(ours, (x, w), seed), torch.autograd.grad(ref, (x, w), seed)):
        assert g_ours.shape == g_ref.shape and _rel(g_ours, g_ref) < 1e-5


def test_a_graph_recorded_on_a_small_map_keeps_the_whole_kernel():
    # Traced at 2×2, run at 16×16: a crop baked into the graph would drop taps the larger map needs.
    conv = create_depthwise_conv2d(4, 13, bias=True)
    traced = torch.jit.trace(conv, torch.randn(1, 4, 2, 2))
    big = torch.randn(1, 4, 16, 16)
    assert _rel(traced(big), F.conv2d(big, conv.weight, conv.bias, 1, 6, 1, 4)) < 1e-6


def test_fake_tensors_take_the_plain_path():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 1, 3, 3)
        assert select_implementation(x, w, 1, 1) == "torch"


def test_gpu_table_loads_entries_and_picks_the_nearest_batch(tmp_path):
    entry = dict(device="GPU X", dtype="float16", channels_last=True, channels=80, height=56, width=56,
                 kernel_size=13, dilation=1)
    path = tmp_path / "table.json"
    path.write_text(
        '{"entries": ['
        + ",".join(
            json.dumps(dict(entry, batch=b, winner=win)) for b, win in ((1, "torch"), (64, "triton"))
        )
        + "]}"
    )
    table = gpu_table.load_table(str(path))
    key = ("GPU X", "float16", True, 80, 56, 56, 13, 1)
    assert gpu_table.nearest_winner(table[key], 2) == "torch"
    assert gpu_table.nearest_winner(table[key], 32) == "triton"
    (tmp_path / "bad.json").write_text('[{"device": "GPU X"}]')
    with pytest.raises(ValueError, match="lacks"):
        gpu_table.load_table(str(tmp_path / "bad.json"))


def test_tiny_model_training_gradients_match_the_plain_path():
    from unireplknet import UniRepLKNet

    torch.manual_seed(0)
    model = UniRepLKNet(
        depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), kernel_sizes=((3,), (13,), (13,), (13,)), num_classes=5
    )
    x = torch.randn(2, 3, 32, 32)
    grads = {}
    for impl in ("torch", "auto"):
        set_default_impl(impl)
        model.zero_grad()
        model(x).logsumexp(1).sum().backward()
        grads[impl] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    scale = max(g.abs().max() for g in grads["torch"].values())
    for name, ref in grads["torch"].items():
        assert float((grads["auto"][name] - ref).abs().max()) < 1e-5 * float(scale), name


def test_torch_compile_traces_a_single_graph_through_the_dispatcher():
    conv = create_depthwise_conv2d(4, 5, bias=True)
    x = torch.randn(1, 4, 9, 9, requires_grad=True)
    # backend="eager" runs dynamo's tracing without code generation; fullgraph=True fails on any graph break.
    compiled = torch.compile(conv, backend="eager", fullgraph=True)
    assert _rel(compiled(x), F.conv2d(x, conv.weight, conv.bias, 1, 2, 1, 4)) < 1e-6


def test_cpu_autocast_is_left_to_pytorch():
    x, w, b = _inputs((1, 4, 8, 8), 5)
    w.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert select_implementation(x, w, 2, 1) == "torch"
        y = depthwise_conv2d(x, w, b, 2, 1)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert w.grad is not None and w.grad.dtype == torch.float32
