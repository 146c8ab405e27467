"""ONNX export of a (deploy) UniRepLKNet with a dynamic batch axis, verified with onnxruntime.

Needs the ``onnx`` extra (``pip install 'unireplknet[onnx]'``) for the verification.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

__all__ = ["ExportCheckError", "export_onnx", "verify_onnx", "export_torch_program", "onnx_opset_of", "ONNX_OPSETS"]

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
