"""Checks that the command line runs before it writes or reports anything, so careless input fails loudly.

Two families:

* **Destinations** — :func:`check_output_file` refuses an output path that is the input itself, an existing file
  of another kind (a training checkpoint about to become a deploy file, say), a directory, or a place that
  cannot be written, before any work is done; ``--overwrite`` lifts the first two refusals. Writes themselves
  are atomic (temporary file + rename), so a refused or failed command leaves every existing file as it was.
* **Numbers** — :func:`check_finite_model` and :func:`check_finite` turn NaN/Inf weights or results into an
  error instead of "top-1 9.75 %, loss nan" or "verified, max diff nan".

docs/cli/refusals.md lists every refusal and the reason for it.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Union

if TYPE_CHECKING:  # torch is imported where it is used, so that `unireplknet --help` stays quick
    from torch import nn

__all__ = ["GuardError", "check_output_file", "check_finite_model", "check_finite"]

PathLike = Union[str, Path]

class GuardError(ValueError):
    """An input or output the command refuses; the message names the problem and the fix."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _writable_folder(folder: Path, flag: str, path: Path) -> None:
    """Refuse a destination whose folder is a file, or exists but cannot be written; a missing one is made later."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise GuardError(
            f"{flag} {path} cannot be written: {probe} is a file, not a folder; pass a path inside a folder"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise GuardError(
            f"{flag} {path} cannot be written: the folder {probe} is read-only for this user; "
            "choose a writable destination"
        )


def check_output_file(
    path: PathLike,
    kind: str,
    inputs: Iterable[PathLike] = (),
    overwrite: bool = False,
    flag: str = "--output",
) -> Path:
    """Refuse a destination that would destroy something, before the command does any work.

    Args:
        path: the file the command is about to write.
        kind: what it writes (a :func:`file_kind` name), so an existing file of the same kind may be replaced.
        inputs: the files the command reads; writing onto one of them needs ``overwrite``.
        overwrite: the user's ``--overwrite``.
        flag: the option that named ``path``, for the message.

    Raises:
        GuardError: the destination is an input or a file of another kind (without ``overwrite``), a directory,
            or in a folder that is a file or read-only.
    """
    path = Path(path)
    if path.is_symlink():  # the one write policy: never through a link (refused, or the link itself replaced)
        from .checkpoint import check_destination

        check_destination(path, overwrite, flag)
    elif path.is_dir():
        raise GuardError(f"{flag} {path} is a folder; pass a file path such as {path / ('model' + _suffix(kind))}")
    for source in inputs:
        if not overwrite and _same_file(path, Path(source)):
            raise GuardError(
                f"{flag} {path} is the input file itself; writing there would replace it (a training checkpoint "
                "could no longer be resumed). Choose another destination, or add --overwrite if that is intended"
            )
    if path.exists() and not overwrite:
        from .checkpoint import KIND_NAMES, file_kind  # the one header sniffer; here to keep --help torch-free

        found = file_kind(path)
        if found != kind:
            raise GuardError(
                f"{flag} {path} already exists and holds {KIND_NAMES[found]}, not {KIND_NAMES[kind]}; "
                "it is left as it is. Choose another destination, or add --overwrite to replace it"
            )
    if path.exists() and not os.access(path, os.W_OK):
        raise GuardError(f"{flag} {path} is read-only for this user; choose a writable destination")
    _writable_folder(path.parent, flag, path)
    return path


def _suffix(kind: str) -> str:
    return {"safetensors": ".safetensors", "torch": ".pth", "pt2": ".pt2", "onnx": ".onnx"}.get(kind, "")


def check_finite_model(model: "nn.Module", source: PathLike) -> None:
    """Refuse a model whose weights or BatchNorm statistics hold NaN or Inf (a diverged run's checkpoint).

    Such a model produces NaN for every input, so every number reported from it would be meaningless.
    """
    import torch

    bad = [name for name, t in list(model.named_parameters()) + list(model.named_buffers())
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise GuardError(
            f"{source} holds non-finite (NaN or Inf) values in {', '.join(bad[:3])}{more}; the run that wrote it "
            "diverged. Use an earlier checkpoint of the run, or train again with a lower learning rate"
        )


def check_finite(value: Optional[float], what: str, source: PathLike) -> None:
    """Refuse a NaN/Inf result (a loss, a verification difference, a probability) instead of printing it."""
    if value is not None and not math.isfinite(value):
        raise GuardError(
            f"{what} of {source} is {value}; the model produces non-finite numbers, so the result is refused. "
            "Check the checkpoint's weights (e.g. a diverged run) and the input"
        )


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (a batch size of 0 would divide by zero after a whole pass)."""
    return _bounded_int(text, 1, "a whole number of at least 1")


def non_negative_int(text: str) -> int:
    """argparse type: a whole number ≥ 0 (worker processes, warm-up iterations)."""
    return _bounded_int(text, 0, "a whole number of at least 0")


def _bounded_int(text: str, low: int, what: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value
