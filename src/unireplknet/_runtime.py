"""What the running process is doing right now: the one place that asks torch about tracers, autocast and flags.

The model, its fused inference path (:mod:`unireplknet.fast`) and the depthwise-conv dispatch
(:mod:`unireplknet.ops`) all take Python-level shortcuts that must step aside while something records or
transforms the graph. They ask here, so every probe is written once and each caller states which of them it
needs (the fused path needs more of them than the conv dispatch: see each function).

A leaf: imports only torch. No ``from __future__ import annotations``: :func:`python_dispatch_allowed` is seen
by TorchScript when it compiles the model's forward.
"""
import functools
import os
import platform
from typing import FrozenSet, Optional, Tuple

import torch

__all__ = [
    "env_flag",
    "env_int",
    "env_text",
    "check_environment",
    "python_dispatch_allowed",
    "fx_symbolic_tracing",
    "graph_recording",
    "dispatch_mode_active",
    "functorch_transform_active",
    "autocast_enabled",
    "any_autocast_enabled",
    "CPU_FLAGS_OF_INTEREST",
    "cpu_model_name",
    "cpu_flags",
    "native_bf16_cpu",
]


# ----------------------------------------------------------------------------------------------- environment
def env_text(name: str, default: str = "") -> str:
    """The environment variable ``name`` (``default`` when unset); read on every call, so a change applies."""
    return os.environ.get(name, default)


def env_flag(name: str, default: bool) -> bool:
    """An on/off environment variable: 1/true/yes/on or 0/false/no/off (any case); unset or blank → ``default``."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    value = value.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"environment variable {name}={value!r} must be 0/1 (or true/false, yes/no, on/off); "
                     f"set one of those or unset {name}")


def env_int(name: str, default: int, low: int = 0) -> int:
    """A whole-number environment variable (torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) of at least
    ``low``; unset or blank → ``default``. Anything else is a ValueError naming the variable and what it takes."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.strip())
    except ValueError:
        number = None
    if number is None or number < low:
        raise ValueError(f"environment variable {name}={value!r} must be a whole number of at least {low} (torchrun "
                         f"sets it for each process); unset {name} for a single process")
    return number


#: The environment the package reads: on/off flags and torchrun's whole numbers (name, default, lowest value).
ENV_FLAGS = (("UNIREPLKNET_FUSED", True),)
ENV_INTS = (("RANK", 0, 0), ("WORLD_SIZE", 1, 1), ("LOCAL_RANK", 0, 0))


def check_environment() -> None:
    """Read every environment variable the package uses once, so a bad value is one clear error at the start."""
    for name, default in ENV_FLAGS:
        env_flag(name, default)
    for name, default, low in ENV_INTS:
        env_int(name, default, low)


# ----------------------------------------------------------------------------------------------- tracers
def fx_symbolic_tracing() -> bool:
    """True while ``torch.fx.symbolic_trace`` runs the model with Proxy inputs."""
    fx_trace = torch.fx._symbolic_trace
    probe = getattr(fx_trace, "is_fx_symbolic_tracing", None) or getattr(fx_trace, "_get_is_fx_tracing")
    return bool(probe())


@torch.jit.unused
def python_dispatch_allowed(x: torch.Tensor) -> bool:
    """False under FX symbolic tracing (``x`` a Proxy), where Python cannot branch on tensor properties.

    The model's Python-level choices (input check, fused forward, sample groups, checkpointing, LayerNorm's
    layout branch) are taken only when this is True; the fused forward and sample groups also step aside for
    every other tracer, compiler, exporter and dispatch mode (:func:`unireplknet.fast.use_fused_block`).
    Callers test ``torch.jit.is_scripting()`` first, so TorchScript never compiles this (or what it guards).
    """
    return not (isinstance(x, torch.fx.Proxy) or fx_symbolic_tracing())


def graph_recording() -> bool:
    """True while TorchScript, the JIT tracer, ``torch.compile``, ``torch.export`` or the ONNX exporter records
    the model: they must see plain operators (their own fusion passes work on them)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and any(
        getattr(compiler, probe, lambda: False)() for probe in ("is_compiling", "is_exporting")
    ):
        return True
    onnx = getattr(torch, "onnx", None)
    return bool(onnx is not None and hasattr(onnx, "is_in_onnx_export") and onnx.is_in_onnx_export())


def dispatch_mode_active() -> bool:
    """True while a ``TorchDispatchMode`` / ``TorchFunctionMode`` (``FlopCounterMode``, fake tensors, ``make_fx``
    …) intercepts every operator: such a mode does not know private kernels (e.g. oneDNN's fused linear)."""
    return torch._C._len_torch_dispatch_stack() > 0 or torch._C._is_torch_function_mode_enabled()


def functorch_transform_active() -> bool:
    """True inside a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, ``functionalize`` …).

    A shortcut that writes into tensors it allocates itself (in-place scaling, sample groups filling a fresh
    output) would mix batched and unbatched tensors under ``vmap``, so transforms get the module graph.
    """
    probe = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(probe()) if probe is not None else False


# ----------------------------------------------------------------------------------------------- autocast
def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (an unknown device type raises, as torch does)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # PyTorch < 2.4 has no device argument
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def any_autocast_enabled() -> bool:
    """Whether autocast is on for the CPU or CUDA."""
    for device_type in ("cpu", "cuda"):
        try:
            if torch.is_autocast_enabled(device_type):
                return True
        except (TypeError, RuntimeError):  # PyTorch < 2.4 has no device argument
            return torch.is_autocast_cpu_enabled() or torch.is_autocast_enabled()
    return False


# ----------------------------------------------------------------------------------------------- CPU features
#: The CPU flags that decide which low-precision kernels run natively (Linux /proc/cpuinfo spelling):
#: avx512_bf16 / amx_bf16 compute bf16 in hardware (without them oneDNN emulates bf16 in fp32, slower than
#: fp32 itself); avx512_vnni / avx_vnni / amx_int8 are the int8 dot-product instructions.
CPU_FLAGS_OF_INTEREST: Tuple[str, ...] = (
    "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
)

#: The flags that make bf16 native: x86 (AVX512-BF16, AMX-BF16) and Arm (FEAT_BF16, ``bf16`` in Features).
BF16_NATIVE_FLAGS: Tuple[str, ...] = ("avx512_bf16", "amx_bf16", "bf16")

_CPUINFO = "/proc/cpuinfo"


@functools.lru_cache(maxsize=None)
def _read_cpuinfo(path: str) -> Tuple[Optional[str], Optional[FrozenSet[str]]]:
    """(model name, flags) of the first processor in ``path``; (None, None) where it cannot be read."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError:
        return None, None
    name: Optional[str] = None
    flags: Optional[FrozenSet[str]] = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if name is None and key in ("model name", "hardware", "cpu model"):
            name = value.strip()
        elif flags is None and key in ("flags", "features"):  # x86 says flags, Arm says Features
            flags = frozenset(value.split())
        if name is not None and flags is not None:
            break
    return name, flags


def cpu_model_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere; "unknown CPU" if neither)."""
    name = _read_cpuinfo(_CPUINFO)[0]
    return name or platform.processor() or "unknown CPU"


def cpu_flags() -> Optional[FrozenSet[str]]:
    """The CPU's feature flags as the kernel reports them (``/proc/cpuinfo``), or None where they cannot be read
    (not Linux). The one CPU-feature probe: the benchmark header and :func:`native_bf16_cpu` read it (tests
    replace it to stand for another CPU)."""
    return _read_cpuinfo(_CPUINFO)[1]


def native_bf16_cpu() -> Tuple[bool, str]:
    """Whether this CPU computes bfloat16 in hardware, and a phrase saying which flag decided it (or what is
    missing), for messages."""
    flags = cpu_flags()
    if flags is None:
        return False, "the CPU's feature flags could not be read (no /proc/cpuinfo), so native bf16 is unknown"
    found = [f for f in BF16_NATIVE_FLAGS if f in flags]
    if found:
        return True, f"the CPU has {', '.join(found)}"
    return False, "the CPU has neither AVX512-BF16 nor AMX-BF16 (cpuinfo flags avx512_bf16 / amx_bf16)"
