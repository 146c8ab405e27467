"""One call from a trained model to the fastest CPU runtime available: :func:`deploy_model`.

The deployment path is: a copy of the model → structural re-parameterization (the deploy structure) →
eval mode → channels_last memory → one of

* ``"eager"``: PyTorch eager with the fused block forward of :mod:`unireplknet.fast`;
* ``"compile"``: :func:`torch.compile` (Inductor) of the deploy model;
* ``"onnxruntime"``: exported to ONNX (dynamic batch axis) and run by ONNX Runtime
  (``pip install "unireplknet[onnx]"``);
* ``"openvino"``: converted and compiled by OpenVINO for its CPU plugin, float32 inference precision
  (``pip install "unireplknet[openvino]"``);
* ``"auto"``: the first of openvino → onnxruntime → eager whose runtime is installed (the order of their
  measured speed on CPU; see docs/performance.md).

Whatever the backend, the result is a :class:`DeployedModel`: a callable taking and giving torch tensors,
whose output on ``example_input`` was compared with the PyTorch model's at build time (a mismatch raises).

``dtype=torch.bfloat16`` deploys in bf16 (eager and ``compile``: bf16 weights; OpenVINO: bf16 inference
precision) where the CPU computes bf16 in hardware (AVX512-BF16 or AMX, see
:func:`unireplknet._runtime.native_bf16_cpu`). Elsewhere bf16 is emulated and slower than float32, so the
deployment stays float32 and a ``RuntimeWarning`` names the missing CPU feature.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch
from torch import nn

from . import _runtime
from .model import reparameterize

__all__ = ["BACKENDS", "DTYPES", "DeployedModel", "available_backends", "deploy_model", "export_onnx_bytes",
           "resolve_deploy_dtype"]

_logger = logging.getLogger(__name__)

#: Every backend name :func:`deploy_model` accepts besides ``"auto"``.
BACKENDS = ("eager", "compile", "onnxruntime", "openvino")

#: The order in which ``backend="auto"`` tries the runtimes (fastest first, as measured on CPU).
AUTO_ORDER = ("openvino", "onnxruntime", "eager")

#: The compute dtypes :func:`deploy_model` deploys in, and the default output check's ``rtol`` for each
#: (bf16 keeps 8 bits of mantissa: logits of a deep network agree with float32's to about 1 %).
DTYPES = {torch.float32: 1e-4, torch.bfloat16: 5e-2}

_RUNTIME_MODULES = {"onnxruntime": ("onnx", "onnxruntime"), "openvino": ("openvino",)}
_EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}


def _require(backend: str) -> None:
    for module in _RUNTIME_MODULES.get(backend, ()):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(
                f'backend "{backend}" needs the Python package {module!r}, which is not installed: '
                f'pip install "unireplknet[{_EXTRAS[backend]}]"'
            ) from err


def available_backends() -> List[str]:
    """The backends whose runtimes can be imported here (``eager`` and ``compile`` always)."""
    found = []
    for backend in BACKENDS:
        try:
            _require(backend)
        except ImportError:
            continue
        found.append(backend)
    return found


class DeployedModel:
    """A deployed model: call it with an (N, C, H, W) float tensor, get the model's output.

    The output is what the PyTorch model returns: a tensor, or a list of tensors for a features-mode
    backbone (``num_classes=None``).

    Attributes:
        backend: the runtime that runs it.
        module: the re-parameterized, eval-mode, channels_last PyTorch copy it was built from (bf16 weights
            for an eager or compiled bf16 deployment).
        dtype: the compute precision (``torch.float32`` or ``torch.bfloat16``); inputs are cast to it and
            outputs come back in the input's dtype.
        max_rel_error: the build-time check's ``max|out − torch| / max|torch|`` on the example input
            (against the float32 model, whatever ``dtype``).
    """

    def __init__(self, backend: str, run: Callable[[torch.Tensor], torch.Tensor], module: nn.Module,
                 dtype: torch.dtype = torch.float32):
        self.backend = backend
        self._run = run
        self.module = module
        self.dtype = dtype
        self.max_rel_error = float("nan")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"a deployed model takes a torch.Tensor, got {type(x).__name__}")
        return self._run(x)

    def __repr__(self) -> str:
        return (f"DeployedModel(backend={self.backend!r}, dtype={self.dtype}, "
                f"max_rel_error={self.max_rel_error:.2e})")


def _prepare(model: nn.Module) -> nn.Module:
    module = reparameterize(copy.deepcopy(model), inplace=True)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module.to(memory_format=torch.channels_last)


def _default_example(module: nn.Module) -> torch.Tensor:
    in_chans = getattr(module, "in_chans", None)
    if in_chans is None:
        raise ValueError("pass example_input=... (an (N, C, H, W) tensor): the model does not say its in_chans")
    return torch.randn(1, in_chans, 224, 224)


def _cast_output(out: Any, dtype: torch.dtype) -> Any:
    if isinstance(out, torch.Tensor):
        return out if out.dtype == dtype else out.to(dtype)
    return [_cast_output(t, dtype) for t in out]


def _eager(module: nn.Module, dtype: torch.dtype = torch.float32) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = module(x.to(dtype).contiguous(memory_format=torch.channels_last))
        return _cast_output(out, x.dtype)

    return run


def _compiled(module: nn.Module, example: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> Callable[[torch.Tensor], torch.Tensor]:
    compiled = torch.compile(module, dynamic=False)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _cast_output(compiled(x.to(dtype).contiguous(memory_format=torch.channels_last)), x.dtype)

    run(example)  # compile now, not at the user's first call
    return run


def onnx_input_names(count: int) -> List[str]:
    """``images`` for a one-input model (the classifiers), ``input0`` … for several (e.g. values + time marks)."""
    return ["images"] if count == 1 else [f"input{i}" for i in range(count)]


@contextlib.contextmanager
def exporter_output_held() -> Iterator[io.StringIO]:
    """Hold back what the exporters say while they work: log records of every logger (onnxscript and onnx_ir
    report each optimisation pass at INFO, some 60 lines for one model) and prints to stdout/stderr.

    The text is logged at DEBUG afterwards (``unireplknet -v`` shows it), or at WARNING when the export fails,
    before the error propagates; warnings are handled by the caller.
    """
    held = io.StringIO()
    handler = logging.StreamHandler(held)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [handler]  # replaced, not added to: the console handler must not see these records
    failed = False
    try:
        with contextlib.redirect_stdout(held), contextlib.redirect_stderr(held):
            yield held
    except BaseException:
        failed = True
        raise
    finally:
        root.handlers[:] = saved
        text = held.getvalue().strip()
        if text:
            _logger.log(logging.WARNING if failed else logging.DEBUG, "output of the ONNX exporter:\n%s", text)


def export_onnx_bytes(
    module: nn.Module, example: Union[torch.Tensor, Tuple[torch.Tensor, ...]], opset: int = 18,
    exporter: str = "auto"
) -> bytes:
    """The ONNX model (input ``images``, or ``input0`` … for a tuple of inputs; dynamic batch axis) of an
    eval-mode module.

    The output is named ``logits`` for a single-tensor output, ``features0`` … for a list of tensors
    (features mode).

    ``exporter``: ``"dynamo"`` (the torch.export-based exporter; needs ``onnxscript``), ``"torchscript"``
    (the legacy exporter: deprecated since PyTorch 2.9 but still shipped, and about 5× faster to run), or
    ``"auto"``: dynamo when ``onnxscript`` is installed, else torchscript.
    """
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ValueError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {exporter!r}")
    module = module.eval()
    examples = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    names = onnx_input_names(len(examples))
    with torch.inference_mode():
        produced = module(*examples)
    outputs = ["logits"] if isinstance(produced, torch.Tensor) else [f"features{i}" for i in range(len(produced))]
    dynamo = exporter == "dynamo"
    if exporter != "torchscript":
        try:
            importlib.import_module("onnxscript")
            dynamo = True
        except ImportError as err:
            if exporter == "dynamo":
                raise ImportError(
                    'the dynamo ONNX exporter needs onnxscript: pip install "unireplknet[onnx]"'
                ) from err
    # torch.export specialises a size-1 dimension: trace with a batch of two
    examples = tuple(x.expand(2, *x.shape[1:]).contiguous() if x.shape[0] == 1 else x for x in examples)
    with torch.no_grad(), warnings.catch_warnings(), exporter_output_held():
        warnings.simplefilter("ignore")  # tracer/deprecation chatter; the result is checked numerically
        if dynamo:
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(
                module,
                examples,
                None,
                dynamo=True,
                input_names=names,
                output_names=outputs,
                dynamic_shapes=tuple({0: batch} for _ in examples),
                opset_version=opset,
                verbose=False,
            )
            return program.model_proto.SerializeToString()
        buffer = io.BytesIO()
        torch.onnx.export(
            module,
            examples,
            buffer,
            dynamo=False,
            input_names=names,
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in (*names, *outputs)},
            opset_version=opset,
        )
        return buffer.getvalue()


def _unpack(outputs: List[torch.Tensor]):
    return outputs[0] if len(outputs) == 1 else outputs


def _as_list(out: Any) -> List[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else list(out)


def _numpy_input(x: torch.Tensor):
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def _onnxruntime(module: nn.Module, example: torch.Tensor, threads: Optional[int], exporter: str) -> Callable:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(
        export_onnx_bytes(module, example, exporter=exporter), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return _unpack([torch.from_numpy(out) for out in session.run(None, {name: _numpy_input(x)})])

    return run


#: Most input shapes the OpenVINO backend compiles a shape-specialised model for; further shapes share
#: one dynamic-batch model.
OPENVINO_MAX_STATIC_SHAPES = 8


def _openvino(
    module: nn.Module, example: torch.Tensor, threads: Optional[int], hint: str, static_shapes: bool,
    precision: str = "f32",
) -> Callable:
    import openvino as ov

    shape = ov.PartialShape([-1, *example.shape[1:]])  # dynamic batch, fixed C × H × W
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(module, example_input=example.contiguous(), input=[shape])
    config: Dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
    config["INFERENCE_NUM_THREADS"] = threads or torch.get_num_threads()
    core = ov.Core()
    # One compiled model (and infer request) per input shape: OpenVINO's CPU plugin runs a model compiled
    # for a static shape 6-17% faster than the dynamic-batch one (docs/deploy.md); the first call with a
    # new shape pays its compile (about a second for UniRepLKNet-T).
    compiled: Dict[Any, Tuple[Any, Any]] = {}

    def compiled_for(input_shape: Tuple[int, ...]) -> Tuple[Any, Any]:
        key: Any = input_shape if static_shapes and (
            input_shape in compiled or len(compiled) < OPENVINO_MAX_STATIC_SHAPES
        ) else "dynamic"
        entry = compiled.get(key)
        if entry is None:
            if key == "dynamic":
                model = converted
            else:
                model = converted.clone()
                model.reshape({model.inputs[0]: ov.PartialShape(list(input_shape))})
                _logger.info("deploy_model(openvino): compiling for input shape %s", input_shape)
            program = core.compile_model(model, "CPU", config)
            entry = compiled[key] = (program, program.create_infer_request())
        return entry

    def run(x: torch.Tensor) -> torch.Tensor:
        program, request = compiled_for(tuple(x.shape))
        result = request.infer([_numpy_input(x)], share_inputs=True)
        return _unpack([torch.from_numpy(result[out].copy()) for out in program.outputs])

    return run


def resolve_deploy_dtype(dtype: torch.dtype, device_type: str = "cpu") -> torch.dtype:
    """The dtype a deployment asked to run in ``dtype`` on ``device_type`` really runs in.

    bfloat16 on a CPU without native bf16 (:func:`unireplknet._runtime.native_bf16_cpu`) becomes float32 with a
    ``RuntimeWarning`` naming the missing feature: there oneDNN emulates bf16, which is slower than float32.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    if dtype == torch.bfloat16 and device_type == "cpu":
        native, why = _runtime.native_bf16_cpu()
        if not native:
            warnings.warn(
                f"deploy_model(dtype=torch.bfloat16): {why}; bf16 would be emulated there and run slower than "
                "float32, so the model is deployed in float32 instead. To go faster on this CPU use int8 "
                "(`unireplknet export --format openvino --int8 --calibration DIR`, docs/performance.md), or "
                "deploy in bf16 on a CPU with AVX512-BF16 or AMX (Intel Cooper Lake / Sapphire Rapids or newer, "
                "AMD Zen 4 or newer)",
                RuntimeWarning,
                stacklevel=3,
            )
            return torch.float32
    return dtype


def deploy_model(
    model: nn.Module,
    backend: str = "auto",
    example_input: Optional[torch.Tensor] = None,
    *,
    dtype: torch.dtype = torch.float32,
    rtol: Optional[float] = None,
    threads: Optional[int] = None,
    openvino_hint: str = "LATENCY",
    openvino_static_shapes: bool = True,
    onnx_exporter: str = "auto",
) -> DeployedModel:
    """Turn ``model`` (train or deploy structure; left untouched) into a fast CPU inference callable.

    Args:
        model: a :class:`~unireplknet.UniRepLKNet` (or any module holding UniRepLKNet blocks).
        backend: ``"auto"``, ``"eager"``, ``"compile"``, ``"onnxruntime"`` or ``"openvino"``.
        example_input: an (N, C, H, W) float32 batch used to export/compile and for the output check;
            defaults to one random 224×224 image. ONNX Runtime and OpenVINO accept any batch size later;
            the spatial size is fixed by the example for OpenVINO and ``compile``.
        dtype: ``torch.float32`` (default) or ``torch.bfloat16``: the compute precision (eager, ``compile``,
            ``openvino``; not ``onnxruntime``). bf16 on a CPU without AVX512-BF16/AMX falls back to float32 with
            a ``RuntimeWarning`` (see :func:`resolve_deploy_dtype`); ``backend="auto"`` with bf16 picks
            openvino → eager.
        rtol: the largest accepted ``max|out − torch| / max|torch|`` on ``example_input`` against the float32
            model (default: ``DTYPES[dtype]``, 1e-4 for float32, 5e-2 for bf16).
        threads: intra-op threads of ONNX Runtime / OpenVINO (default: ``torch.get_num_threads()``).
        openvino_hint: OpenVINO's ``PERFORMANCE_HINT`` (``"LATENCY"`` or ``"THROUGHPUT"``).
        openvino_static_shapes: compile OpenVINO's model once per input shape (first call of a new batch
            size pays a compile; at most ``OPENVINO_MAX_STATIC_SHAPES`` shapes, then a dynamic-batch model);
            ``False``: one dynamic-batch model for every shape.
        onnx_exporter: ``"auto"``, ``"dynamo"`` or ``"torchscript"`` (see :func:`export_onnx_bytes`).

    Returns:
        A :class:`DeployedModel`.

    Raises:
        ImportError: the backend's runtime is not installed (names the pip extra).
        RuntimeError: the backend's output disagrees with PyTorch's beyond ``rtol``.
    """
    if backend not in ("auto",) + BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {', '.join(BACKENDS)}; got {backend!r}")
    if openvino_hint not in ("LATENCY", "THROUGHPUT"):
        raise ValueError(f"openvino_hint must be 'LATENCY' or 'THROUGHPUT', got {openvino_hint!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    if backend == "auto":
        ready = [b for b in available_backends() if not (dtype == torch.bfloat16 and b == "onnxruntime")]
        backend = next(b for b in AUTO_ORDER if b in ready)
        _logger.info("deploy_model: backend='auto' chose %s", backend)
    else:
        if dtype == torch.bfloat16 and backend == "onnxruntime":
            raise ValueError("ONNX Runtime's CPU provider has no bf16 kernels for this model: deploy bf16 with "
                             "backend='openvino', 'eager' or 'compile', or use int8 (docs/performance.md)")
        _require(backend)

    module = _prepare(model)
    example = _default_example(module) if example_input is None else example_input
    if not isinstance(example, torch.Tensor) or example.dim() != 4 or not example.is_floating_point():
        raise ValueError(
            "example_input must be a float (N, C, H, W) tensor, got "
            + (f"shape {tuple(example.shape)}, dtype {example.dtype}" if isinstance(example, torch.Tensor)
               else type(example).__name__)
        )
    if example.device.type != "cpu" and backend in ("onnxruntime", "openvino"):
        raise ValueError(f"backend {backend!r} runs on the CPU: pass a CPU example_input and CPU inputs")
    example = example.detach().contiguous(memory_format=torch.channels_last)
    if hasattr(module, "check_input"):
        module.check_input(example)

    dtype = resolve_deploy_dtype(dtype, example.device.type)
    if rtol is None:
        rtol = DTYPES[dtype]

    with torch.inference_mode():
        want = module(example)

    if dtype != torch.float32 and backend in ("eager", "compile"):
        module = module.to(dtype)
    if backend == "eager":
        run = _eager(module, dtype)
    elif backend == "compile":
        run = _compiled(module, example, dtype)
    elif backend == "onnxruntime":
        run = _onnxruntime(module, example, threads, onnx_exporter)
    else:
        precision = "bf16" if dtype == torch.bfloat16 else "f32"
        run = _openvino(module, example, threads, openvino_hint, openvino_static_shapes, precision)

    deployed = DeployedModel(backend, run, module, dtype)
    got, wanted = _as_list(deployed(example)), _as_list(want)
    shapes = [tuple(t.shape) for t in got], [tuple(t.shape) for t in wanted]
    if shapes[0] != shapes[1]:
        raise RuntimeError(f"{backend} output shapes {shapes[0]} differ from PyTorch's {shapes[1]}")
    deployed.max_rel_error = max(
        ((g.to(w.dtype) - w).abs().max() / w.abs().max().clamp_min(torch.finfo(w.dtype).tiny)).item()
        for g, w in zip(got, wanted)
    )
    if not deployed.max_rel_error <= rtol:
        raise RuntimeError(
            f"the {backend} deployment disagrees with PyTorch: max relative error "
            f"{deployed.max_rel_error:.3e} > rtol={rtol:g}; report it, or use backend='eager'"
        )
    return deployed
