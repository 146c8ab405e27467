"""How much memory an input may make the library allocate, estimated before anything is allocated.

Files and flags claim sizes (a class count, a network width, an input size, a tensor shape); believing them
first and checking later ends in an exhausted machine and a traceback. Every such size is turned into an
estimate of bytes here, in one place, and compared with one limit:

* the **memory limit** is the machine's physical memory (``os.sysconf``), or ``UNIREPLKNET_MAX_MEMORY_GB``
  (e.g. ``UNIREPLKNET_MAX_MEMORY_GB=200``) to raise or lower it;
* a model's weights are counted exactly by building it on PyTorch's ``meta`` device (shapes, no storage):
  :func:`model_bytes`, :func:`build_checked` (which also compares the shapes with the checkpoint's tensors, so
  metadata that disagrees with the weights is named before a byte is allocated);
* activations are estimated from the input size and the stage widths: :func:`activation_bytes`.

docs/cli/refusals.md lists every limit and how to raise it.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar

__all__ = ["LimitError", "MEMORY_LIMIT_ENV", "memory_limit_bytes", "check_memory", "format_bytes", "model_bytes",
           "build_checked", "activation_bytes", "env_limit"]

MEMORY_LIMIT_ENV = "UNIREPLKNET_MAX_MEMORY_GB"

T = TypeVar("T")


class LimitError(ValueError):
    """An input whose claimed size is over a limit; the message names the number, the limit and how to raise it."""


def env_limit(name: str, default: float, unit: str, integer: bool = True) -> float:
    """A positive limit read from the environment variable ``name`` (``default`` when unset)."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text) if integer else float(text)
        if not value > 0:
            raise ValueError
    except ValueError:
        kind = "whole number" if integer else "number"
        raise LimitError(f"{name}={text!r} is not a positive {kind} of {unit} (e.g. {name}={int(default * 2)})") \
            from None
    return value


def _physical_memory() -> Optional[int]:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not every system names these
        return None


def memory_limit_bytes() -> int:
    """``UNIREPLKNET_MAX_MEMORY_GB`` in bytes, else the physical memory (64 GiB where it cannot be read)."""
    if os.environ.get(MEMORY_LIMIT_ENV):
        return int(env_limit(MEMORY_LIMIT_ENV, 64.0, "GB", integer=False) * 1e9)
    return _physical_memory() or 64 * 2 ** 30


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} bytes"


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse ``what`` when it needs more than the memory limit: the message names both numbers and the fix."""
    limit = memory_limit_bytes()
    if nbytes > limit:
        source = (f"{MEMORY_LIMIT_ENV}" if os.environ.get(MEMORY_LIMIT_ENV) else "this machine's memory")
        raise LimitError(
            f"{what} needs about {format_bytes(nbytes)}, more than the limit of {format_bytes(limit)} ({source}); "
            f"{fix}, or raise the limit with {MEMORY_LIMIT_ENV}=<GB> if the machine really has the memory")


def _on_meta(build: Callable[[], T]) -> T:
    import torch

    with torch.device("meta"):
        return build()


def model_bytes(build: Callable[[], Any]) -> int:
    """Bytes of a model's parameters and buffers, counted on the ``meta`` device (nothing is allocated)."""
    model = _on_meta(build)
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def build_checked(build: Callable[[], T], state_dict: Optional[Mapping[str, Any]] = None, source: str = "",
                  fix: str = "use a smaller model") -> T:
    """``build()``, after its shapes were checked against ``state_dict`` and its size against the memory limit.

    The model is first built on the ``meta`` device. Each tensor of ``state_dict`` that the model also has must
    have the model's shape: metadata (a class count, a width) that disagrees with the weights is an error naming
    the tensor, raised before the real model (whose size the metadata chose) is allocated.
    """
    meta = _on_meta(build)
    if state_dict is not None:
        expected = dict(meta.state_dict())
        for key, tensor in state_dict.items():
            want = expected.get(key)
            if want is not None and hasattr(tensor, "shape") and tuple(want.shape) != tuple(tensor.shape):
                raise LimitError(
                    f"{source}: the stored configuration describes {key} of shape {tuple(want.shape)}, but the file's "
                    f"tensor is {tuple(tensor.shape)}; the metadata does not belong to these weights (edited or "
                    "corrupt). Use the file the run wrote")
    size = sum(t.numel() * t.element_size() for t in list(meta.parameters()) + list(meta.buffers()))
    check_memory(size, f"{source + ': ' if source else ''}the model's weights", fix)
    return build()


def activation_bytes(input_size: Sequence[int], dims: Sequence[int], batch: int = 1, training: bool = False,
                     bytes_per_value: int = 4) -> int:
    """An estimate of the activation memory of a UniRepLKNet-shaped network (4 stages, stride 4 then 2, 2, 2).

    Inference keeps a few tensors alive at a time: the input and about three of the largest stage tensor
    (a block's 4× expanded MLP hidden layer dominates). Training keeps every block's tensors for the backward
    pass, about 12 stage-sized tensors per stage. Good to a factor of about two; used only to refuse inputs
    that are orders of magnitude too large.
    """
    channels, height, width = (int(v) for v in input_size[-3:])
    pixels = height * width
    stage = [pixels // (16 * 4 ** i) * int(d) for i, d in enumerate(dims)]  # one stage tensor (H/4^i … × dim)
    stem = pixels // 4 * max(1, int(dims[0]) // 2)  # the stem's first conv, at half resolution
    if training:
        values = channels * pixels + 2 * stem + 12 * sum(stage)
    else:
        values = channels * pixels + stem + 3 * 4 * max(stage)
    return values * int(batch) * bytes_per_value
