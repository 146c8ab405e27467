"""Export of a (deploy) UniRepLKNet: ONNX with a dynamic batch axis verified with onnxruntime, a
``torch.export`` program, an OpenVINO IR, and int8 versions of the ONNX and OpenVINO models calibrated on
images (:func:`quantize_int8`) with their agreement with float32 measured (:func:`int8_agreement`).

Needs the ``onnx`` extra (``pip install 'unireplknet[onnx]'``) for the ONNX verification and ONNX Runtime
int8, the ``openvino`` extra for the IR, and the ``int8`` extra (OpenVINO + NNCF) for OpenVINO int8.
"""
from __future__ import annotations

import copy
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

__all__ = ["ExportCheckError", "export_onnx", "verify_onnx", "export_torch_program", "onnx_opset_of", "ONNX_OPSETS",
           "export_openvino", "quantize_int8", "Int8Model", "INT8_BACKENDS", "int8_agreement"]

_logger = logging.getLogger(__name__)


class ExportCheckError(RuntimeError, ValueError):
    """The exported program's outputs differ from PyTorch's (or are NaN); nothing was written.

    A RuntimeError as before, and a ValueError so that the command line reports it as one line, not a traceback.
    """


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("ONNX verification needs onnxruntime: pip install 'unireplknet[onnx]'") from None
    return onnxruntime


#: The ONNX opsets torch's exporters write (torch.onnx: 7-23), the dynamo exporter's first and the legacy
#: TorchScript exporter's last; an export is refused unless the file holds the opset asked for.
ONNX_OPSETS = (7, 23)
DYNAMO_MIN_OPSET = 18
TORCHSCRIPT_MAX_OPSET = 20


def onnx_opset_of(graph: bytes) -> Union[int, None]:
    """The default-domain opset an ONNX model imports (None without the ``onnx`` package)."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load_from_string(graph)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def verify_onnx(path: Union[str, Path, bytes], model: nn.Module,
                x: Union[torch.Tensor, Tuple[torch.Tensor, ...]]) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's outputs for ``x`` (a tensor, or a tuple
    for a model of several inputs; ``path``: a file or the serialized model itself)."""
    ort = _require_onnxruntime()
    xs = (x,) if isinstance(x, torch.Tensor) else tuple(x)
    source = path if isinstance(path, bytes) else str(path)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), xs)})[0]
    with torch.no_grad():
        want = model(*xs).float().numpy()
    if got.shape != want.shape:
        raise RuntimeError(f"ONNX output shape {got.shape} differs from PyTorch's {want.shape}")
    return float(np.abs(got - want).max())


def export_onnx(
    model: nn.Module,
    path: Union[str, Path],
    input_size: Union[Sequence[int], Sequence[Sequence[int]]] = (3, 224, 224),
    opset: int = 18,
    verify: bool = True,
    atol: float = 1e-3,
    exporter: str = "auto",
) -> Dict[str, Any]:
    """Write ``model`` (in eval mode, on CPU) as ONNX with input ``images`` (dynamic batch) and output ``logits``.

    ``input_size`` is one input's shape without the batch axis, or a list of such shapes for a model of several
    inputs (named ``input0`` … then).

    The graph comes from :func:`unireplknet.deploy.export_onnx_bytes` (``exporter``: ``"auto"``, ``"dynamo"``
    or ``"torchscript"``) and is written atomically. Re-parameterize first for the fast deploy graph. With
    ``verify`` the file is run with onnxruntime on a batch of 3 — a batch size other than the one traced, which
    checks the dynamic axis — and the largest difference to PyTorch is returned (RuntimeError above ``atol``).
    """
    from .deploy import export_onnx_bytes
    from .checkpoint import atomic_write_bytes

    path = Path(path)
    model = model.eval().to("cpu")
    shapes = [tuple(input_size)] if isinstance(input_size[0], int) else [tuple(s) for s in input_size]

    def batch(n: int):
        xs = tuple(torch.randn(n, *s) for s in shapes)
        return xs[0] if len(xs) == 1 else xs

    if not ONNX_OPSETS[0] <= opset <= ONNX_OPSETS[1]:
        raise ValueError(f"ONNX opset {opset} is outside the range the exporters write, {ONNX_OPSETS[0]}-"
                         f"{ONNX_OPSETS[1]}; pass --opset 18 (the default) or another opset in that range")
    if exporter == "auto" and opset < DYNAMO_MIN_OPSET:
        exporter = "torchscript"  # the dynamo exporter writes opset 18 or newer whatever it is asked for
    graph = export_onnx_bytes(model, batch(2), opset=opset, exporter=exporter)
    written = onnx_opset_of(graph)
    if written is not None and written != opset:
        raise ValueError(f"opset {opset} was asked for but the {exporter} exporter wrote opset {written}; nothing was "
                         f"written. Ask for opset {written}, or an opset the exporter supports (the dynamo exporter "
                         f"{DYNAMO_MIN_OPSET}+, the torchscript one {ONNX_OPSETS[0]}-{TORCHSCRIPT_MAX_OPSET})")
    info: Dict[str, Any] = dict(path=path, max_abs_diff=None, opset=opset)
    if verify:
        # Verified before it is written, so a failed check leaves an earlier file at ``path`` as it was.
        diff = verify_onnx(graph, model, batch(3))
        info["max_abs_diff"] = diff
        if not diff <= atol:  # written so that NaN fails too
            raise ExportCheckError(f"ONNX model for {path} differs from PyTorch by {diff:.3g} (> {atol}); nothing was "
                               "written; please report this")
    atomic_write_bytes(path, graph)
    return info


def export_torch_program(model: nn.Module, path: Union[str, Path], input_size: Sequence[int] = (3, 224, 224),
                         atol: float = 1e-4) -> Dict[str, Any]:
    """Save a ``torch.export`` program (``.pt2``) with a dynamic batch axis, checked against eager PyTorch."""
    from .checkpoint import atomic_write_bytes

    path = Path(path)
    model = model.eval().to("cpu")
    batch = torch.export.Dim("batch", min=1, max=4096)
    example = torch.randn(2, *input_size)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    x = torch.randn(3, *input_size)
    with torch.no_grad():
        diff = float((torch.export.load(io.BytesIO(buffer.getvalue())).module()(x) - model(x)).abs().max())
    if not diff <= atol:  # written so that NaN fails too
        raise ExportCheckError(f"torch.export program for {path} differs from eager PyTorch by {diff:.3g}; nothing "
                           "was written")
    # Checked before it is written (atomically), so a failure leaves an earlier file at ``path`` as it was.
    atomic_write_bytes(path, buffer.getvalue())
    return dict(path=path, max_abs_diff=diff)



# ----------------------------------------------------------------------------------------------- OpenVINO, int8
#: The runtimes :func:`quantize_int8` quantizes for: OpenVINO through NNCF (the ``int8`` extra) and ONNX Runtime's
#: static QDQ quantization (the ``onnx`` extra), the fallback where NNCF is missing.
INT8_BACKENDS = ("openvino", "onnxruntime")

_INT8_NEEDS = {
    "openvino": (("openvino", "nncf"), "int8"),
    "onnxruntime": (("onnx", "onnxruntime"), "onnx"),
}


def _require_int8(backend: str) -> None:
    import importlib

    modules, extra = _INT8_NEEDS[backend]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            other = ("; or quantize with ONNX Runtime instead (--format onnx --int8)"
                     if backend == "openvino" else "")
            raise ImportError(f"int8 quantization for {backend} needs the Python package {module!r}, which is not "
                              f'installed: pip install "unireplknet[{extra}]"{other}') from err


def _deploy_copy(model: nn.Module) -> nn.Module:
    """An eval-mode, re-parameterized CPU copy (the input model is left as it is)."""
    from .model import reparameterize

    return reparameterize(copy.deepcopy(model).eval().to("cpu"), inplace=True)  # a no-op without UniRepLKNet blocks


def _batch_images(item: Any) -> torch.Tensor:
    x = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError("calibration data must yield float (N, C, H, W) image batches, or (images, labels, ...) "
                         f"tuples of them; got {type(x).__name__}" +
                         (f" of shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, torch.Tensor) else ""))
    return x.detach().to("cpu", torch.float32).contiguous()


def calibration_tensors(calibration: Iterable[Any], samples: int) -> List[torch.Tensor]:
    """Up to ``samples`` images from ``calibration`` (any iterable of image batches, or of ``(images, labels …)``
    tuples such as a DataLoader's), as one-image (1, C, H, W) float32 tensors.

    This is the hook every calibration source goes through: an image folder (the command line's
    ``--calibration DIR``), a dataset's loader, a list of tensors.
    """
    if samples < 1:
        raise ValueError(f"calibration samples must be at least 1, got {samples}")
    images: List[torch.Tensor] = []
    for item in calibration:
        for image in _batch_images(item):
            images.append(image.unsqueeze(0))
            if len(images) >= samples:
                return images
    if not images:
        raise ValueError("the calibration data is empty: int8 quantization needs representative images "
                         "(a few hundred from the training distribution)")
    return images


class Int8Model:
    """An int8-quantized model: call it with an (N, C, H, W) float tensor, get float32 logits; :meth:`save` it.

    Attributes:
        backend: ``"openvino"`` or ``"onnxruntime"``.
        program: the quantized ``openvino.Model``, or the quantized ONNX file's bytes.
        calibration_images: how many images set the quantization ranges.
    """

    def __init__(self, backend: str, program: Any, run: Callable[[torch.Tensor], torch.Tensor],
                 calibration_images: int):
        self.backend = backend
        self.program = program
        self._run = run
        self.calibration_images = calibration_images

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)

    def save(self, path: Union[str, Path]) -> List[Path]:
        """Write the model atomically: ``path`` with suffix ``.onnx``, or ``.xml`` + ``.bin`` (OpenVINO IR)."""
        from .checkpoint import atomic_write_bytes

        path = Path(path)
        if self.backend == "onnxruntime":
            return [atomic_write_bytes(path.with_suffix(".onnx"), self.program)]
        return _save_openvino(self.program, path)

    def __repr__(self) -> str:
        return f"Int8Model(backend={self.backend!r}, calibration_images={self.calibration_images})"


def _save_openvino(program: Any, path: Path) -> List[Path]:
    """``program`` as an OpenVINO IR (``.xml`` graph + ``.bin`` weights), each file written atomically."""
    import openvino as ov

    from .checkpoint import atomic_write_bytes

    xml, weights = path.with_suffix(".xml"), path.with_suffix(".bin")
    with tempfile.TemporaryDirectory() as tmp:
        ov.save_model(program, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
        # weights first: the .xml names the .bin, so a reader never sees a new graph over old weights
        atomic_write_bytes(weights, (Path(tmp) / "model.bin").read_bytes())
        atomic_write_bytes(xml, (Path(tmp) / "model.xml").read_bytes())
    return [xml, weights]


def _numpy(x: torch.Tensor):
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def _openvino_program(module: nn.Module, example: torch.Tensor) -> Any:
    import openvino as ov

    shape = ov.PartialShape([-1, *example.shape[1:]])  # dynamic batch, fixed C × H × W
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ov.convert_model(module, example_input=example, input=[shape])


def _openvino_runner(program: Any, threads: Optional[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
              "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
    compiled = ov.Core().compile_model(program, "CPU", config)
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        result = request.infer([_numpy(x)], share_inputs=True)
        return torch.from_numpy(result[compiled.outputs[0]].copy())

    return run


def _onnxruntime_runner(graph: bytes, threads: Optional[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    ort = _require_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: _numpy(x)})[0])

    return run


def _quantize_openvino(module: nn.Module, images: List[torch.Tensor]) -> Any:
    import nncf

    from .deploy import exporter_output_held

    program = _openvino_program(module, torch.cat(images[:2]))
    dataset = nncf.Dataset(images, lambda image: image.numpy())
    # MIXED: symmetric weights, asymmetric activations (GELU and GRN outputs are far from symmetric);
    # the full bias correction instead of the fast one. NNCF's progress bars and logs are held back
    # (logged at DEBUG): library code is quiet.
    with warnings.catch_warnings(), exporter_output_held():
        warnings.simplefilter("ignore")
        return nncf.quantize(program, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(images),
                             fast_bias_correction=False)


def _quantize_onnxruntime(module: nn.Module, images: List[torch.Tensor], exporter: str) -> bytes:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from .deploy import export_onnx_bytes, exporter_output_held

    graph = export_onnx_bytes(module, torch.cat(images[:2]), exporter=exporter)

    class Reader(CalibrationDataReader):
        def __init__(self, name: str):
            self._items = iter({name: image.numpy()} for image in images)

        def get_next(self):
            return next(self._items, None)

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(graph)
        with warnings.catch_warnings(), exporter_output_held():  # its advice to pre-process goes to DEBUG
            warnings.simplefilter("ignore")
            quantize_static(str(source), str(target), Reader("images"), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return target.read_bytes()


def quantize_int8(
    model: nn.Module,
    calibration: Iterable[Any],
    *,
    backend: str = "auto",
    samples: int = 300,
    threads: Optional[int] = None,
    exporter: str = "auto",
) -> Int8Model:
    """Post-training static int8 quantization of ``model``'s deploy structure, calibrated on images.

    Args:
        model: a UniRepLKNet (training or deploy structure; left untouched) or another image classifier.
        calibration: representative input batches (see :func:`calibration_tensors`), normalised as the model
            expects, e.g. a DataLoader over the training images with the evaluation transform.
        backend: ``"openvino"`` (NNCF; ``pip install "unireplknet[int8]"``), ``"onnxruntime"`` (QDQ, per-channel
            weights, ``pip install "unireplknet[onnx]"``), or ``"auto"``: openvino when NNCF is installed,
            else onnxruntime.
        samples: how many calibration images set the activation ranges.
        threads: intra-op threads of the returned runner (default: ``torch.get_num_threads()``).
        exporter: the ONNX exporter of the onnxruntime backend (see :func:`unireplknet.deploy.export_onnx_bytes`).

    Returns:
        An :class:`Int8Model`. Measure what quantization cost with :func:`int8_agreement` on labelled data.
    """
    if backend not in ("auto",) + INT8_BACKENDS:
        raise ValueError(f"int8 backend must be 'auto' or one of {', '.join(INT8_BACKENDS)}; got {backend!r}")
    if backend == "auto":
        try:
            _require_int8("openvino")
            backend = "openvino"
        except ImportError:
            backend = "onnxruntime"
    _require_int8(backend)
    images = calibration_tensors(calibration, samples)
    module = _deploy_copy(model)
    if backend == "openvino":
        program = _quantize_openvino(module, images)
        run = _openvino_runner(program, threads)
    else:
        program = _quantize_onnxruntime(module, images, exporter)
        run = _onnxruntime_runner(program, threads)
    return Int8Model(backend, program, run, len(images))


def export_openvino(
    model: nn.Module,
    path: Union[str, Path],
    input_size: Sequence[int] = (3, 224, 224),
    atol: float = 1e-3,
) -> Dict[str, Any]:
    """Write ``model``'s deploy structure as an OpenVINO IR (``.xml`` + ``.bin``, dynamic batch, float32),
    checked against PyTorch on a batch of 3 before it is written (``ExportCheckError`` above ``atol``)."""
    try:
        import openvino  # noqa: F401
    except ImportError as err:
        raise ImportError('the OpenVINO export needs openvino: pip install "unireplknet[openvino]"') from err
    module = _deploy_copy(model)
    program = _openvino_program(module, torch.randn(2, *input_size))
    x = torch.randn(3, *input_size)
    with torch.no_grad():
        want = module(x)
    diff = float((_openvino_runner(program, None)(x) - want).abs().max())
    if not diff <= atol:
        raise ExportCheckError(f"OpenVINO model for {path} differs from PyTorch by {diff:.3g} (> {atol}); nothing "
                               "was written; please report this")
    return dict(paths=_save_openvino(program, Path(path)), max_abs_diff=diff)


def int8_agreement(
    reference: Callable[[torch.Tensor], torch.Tensor],
    candidate: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[Any],
) -> Dict[str, Any]:
    """How far ``candidate`` (e.g. an :class:`Int8Model`) departs from ``reference`` (the float32 model) on
    ``batches``: ``(images, labels)`` pairs (a DataLoader's), or image batches alone (no accuracy then).

    Returns a dict: ``images``; ``top1_agreement`` (share of images where both predict the same class);
    ``reference_accuracy`` and ``candidate_accuracy`` (top-1, in percent) and ``accuracy_drop`` (percentage
    points, reference minus candidate) when labels were given, else None.
    """
    agree = correct_ref = correct_cand = total = 0
    labelled = True
    for item in batches:
        x = _batch_images(item)
        labels = item[1] if isinstance(item, (tuple, list)) and len(item) > 1 else None
        with torch.no_grad():
            ref = reference(x).argmax(-1)
            cand = candidate(x).argmax(-1)
        agree += int((ref == cand).sum())
        total += len(x)
        if labels is None:
            labelled = False
        else:
            labels = torch.as_tensor(labels)
            correct_ref += int((ref == labels).sum())
            correct_cand += int((cand == labels).sum())
    if total == 0:
        raise ValueError("int8_agreement got no images")
    report: Dict[str, Any] = dict(images=total, top1_agreement=agree / total, reference_accuracy=None,
                                  candidate_accuracy=None, accuracy_drop=None)
    if labelled:
        report.update(reference_accuracy=100.0 * correct_ref / total, candidate_accuracy=100.0 * correct_cand / total,
                      accuracy_drop=100.0 * (correct_ref - correct_cand) / total)
    return report
