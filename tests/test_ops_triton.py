"""The Triton depthwise kernels against torch.nn.functional.conv2d (float64 truth).

On the CPU the kernels run in Triton's interpreter, which must be switched on (``TRITON_INTERPRET=1``)
before triton is imported — so the cases run in a child Python process (one for all cases, started once
per session) and each case is checked here from its reported errors. On a machine with a CUDA GPU the
same cases also run compiled, in this process.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _triton_dwconv_cases as cases  # noqa: E402

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()
#: Relative max-error bounds by dtype: float32 accumulation order differs from oneDNN's; fp16/bf16
#: results are rounded to 11 / 8 significant bits.
TOLERANCE = {"float64": 1e-12, "float32": 2e-5, "float16": 4e-3, "bfloat16": 3e-2}

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


def _interpret(names):
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, str(HERE / "_triton_dwconv_cases.py"), *names],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"interpreter run failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def interpreted():
    return _interpret([*cases.CASES, *cases.GRADCHECK_CASES])


def _check(name, result):
    assert "error" not in result, f"{name}: {result['error']}"
    tol = TOLERANCE[result["dtype"]]
    for field in ("y", "grad_x", "grad_w", "grad_b"):
        if field in result:
            assert result[field] < tol, f"{name}: {field} relative error {result[field]:.2e} >= {tol:.0e}"
    assert result["out_dtype_ok"], f"{name}: output or gradient dtype differs from the input dtype"
    assert result["out_layout_ok"], f"{name}: output memory format differs from the input's"


@pytest.mark.parametrize("name", list(cases.CASES))
def test_interpreted_forward_and_gradients_match_conv2d(interpreted, name):
    _check(name, interpreted[name])


@pytest.mark.parametrize("name", list(cases.GRADCHECK_CASES))
def test_interpreted_gradcheck_float64(interpreted, name):
    result = interpreted[name]
    assert "error" not in result, result.get("error")
    assert result["gradcheck"], f"{name}: gradcheck failed"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(cases.SLOW_CASES))
def test_interpreted_largest_kernel(name):
    _check(name, _interpret([name])[name])


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", [*cases.CASES, *cases.SLOW_CASES])
def test_gpu_forward_and_gradients_match_conv2d(name):
    _check(name, cases.run_case(name, device="cuda"))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", list(cases.GRADCHECK_CASES))
def test_gpu_gradcheck_float64(name):
    assert cases.run_gradcheck(name, device="cuda")["gradcheck"]


def _gpu_compile_cases():
    from unireplknet.ops.triton_dwconv import _FORWARD_CONFIGS, _WGRAD_CONFIGS

    cases_ = [("forward", "fp16", cfg, 90) for cfg in _FORWARD_CONFIGS]
    cases_ += [("weight_grad", "fp16", cfg, 90) for cfg in _WGRAD_CONFIGS]
    for dtype in ("bf16", "fp32", "fp64"):
        cases_ += [("forward", dtype, _FORWARD_CONFIGS[0], 80), ("weight_grad", dtype, _WGRAD_CONFIGS[-1], 80)]
    return cases_


@pytest.mark.parametrize("name,dtype,config,arch", _gpu_compile_cases())
def test_kernels_compile_for_nvidia_gpus(name, dtype, config, arch):
    """Every autotune config lowers to a cubin (ahead of time, no GPU needed), where the interpreter cannot look."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 in this process: kernels are not lowered")
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except ImportError:
        pytest.skip("triton has no NVIDIA backend here")
    asm = cases.compile_for_gpu(name, dtype, config, arch)
    assert "cubin" in asm and len(asm["cubin"]) > 0
