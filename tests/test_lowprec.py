"""Low-precision deployment: bf16 where the CPU has it (else float32, said), int8 through OpenVINO/NNCF or
ONNX Runtime with its agreement with float32 measured."""
from __future__ import annotations

import warnings

import pytest
import torch

from unireplknet import UniRepLKNet, _runtime
from unireplknet.deploy import deploy_model

BF16_CPU = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
NO_BF16_CPU = frozenset({"avx2", "avx512f", "avx512_vnni"})


def small_model(seed: int = 0) -> UniRepLKNet:
    """A small training-structure model with non-trivial BN statistics, layer scales and GRN parameters."""
    torch.manual_seed(seed)
    model = UniRepLKNet(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), kernel_sizes=((3,), (13,), (13, 3), (5,)),
                        num_classes=10)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.is_floating_point():
                tensor.normal_(0.0, 0.2)
    return model.eval()


# ------------------------------------------------------------------------------------------ the CPU probe
def test_cpu_probe_reads_model_name_and_flags_from_a_cpuinfo_file(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\n"
                       "flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n"
                       "model name\t: other\nflags\t\t: fpu\n")
    monkeypatch.setattr(_runtime, "_CPUINFO", str(cpuinfo))
    assert _runtime.cpu_model_name() == "AMD EPYC 9R14"  # the first processor's
    assert _runtime.cpu_flags() == frozenset({"fpu", "sse", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
    assert _runtime.native_bf16_cpu()[0] is True
    cpuinfo2 = tmp_path / "cpuinfo2"
    cpuinfo2.write_text("model name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_vnni\n")
    monkeypatch.setattr(_runtime, "_CPUINFO", str(cpuinfo2))
    native, why = _runtime.native_bf16_cpu()
    assert native is False and "avx512_bf16" in why
    monkeypatch.setattr(_runtime, "_CPUINFO", str(tmp_path / "absent"))
    assert _runtime.cpu_flags() is None and _runtime.native_bf16_cpu()[0] is False


# ------------------------------------------------------------------------------------------ bf16
def test_bf16_deploy_without_native_bf16_warns_names_the_feature_and_stays_float32(monkeypatch):
    monkeypatch.setattr(_runtime, "cpu_flags", lambda: NO_BF16_CPU)
    model = small_model()
    x = torch.randn(2, 3, 64, 64)
    with pytest.warns(RuntimeWarning, match=r"avx512_bf16.*float32 instead.*int8"):
        deployed = deploy_model(model, "eager", example_input=x, dtype=torch.bfloat16)
    assert deployed.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in deployed.module.parameters())
    # float32 accuracy, not bf16's: the fallback is the float32 deployment itself
    fp32 = deploy_model(model, "eager", example_input=x)
    torch.testing.assert_close(deployed(x), fp32(x), rtol=0, atol=0)


def test_bf16_deploy_with_native_bf16_runs_bf16_weights_within_bf16_tolerance(monkeypatch):
    monkeypatch.setattr(_runtime, "cpu_flags", lambda: BF16_CPU)
    model = small_model()
    x = torch.randn(4, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning where the CPU has bf16
        deployed = deploy_model(model, "eager", example_input=x, dtype=torch.bfloat16)
    assert deployed.dtype == torch.bfloat16
    assert {p.dtype for p in deployed.module.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        want = model(x)
    got = deployed(x)
    assert got.dtype == torch.float32  # back in the input's dtype
    rel = ((got - want).abs().max() / want.abs().max()).item()
    # bf16 rounds at 2^-8 ≈ 0.4 % per op: the logits agree to a few percent, and are not bit-equal to float32's
    assert 0 < rel < 5e-2
    assert deployed.max_rel_error < 5e-2


def test_bf16_refused_for_onnxruntime_and_unknown_dtype(monkeypatch):
    monkeypatch.setattr(_runtime, "cpu_flags", lambda: BF16_CPU)
    with pytest.raises(ValueError, match="bf16.*openvino"):
        deploy_model(small_model(), "onnxruntime", example_input=torch.randn(1, 3, 64, 64), dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float32 or torch.bfloat16"):
        deploy_model(small_model(), "eager", example_input=torch.randn(1, 3, 64, 64), dtype=torch.float16)
