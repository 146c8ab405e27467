"""The parts that the audio and the forecasting training loops share (:mod:`.audio`, :mod:`.forecasting`).

Both train one model in plain float32 steps, evaluate it after every epoch, keep ``best.pth`` (best
validation score) and ``last.pth`` in the run folder, tag their checkpoints with a format string so that one
task's loader refuses another's files, and continue a run with ``resume='auto'`` (``OUTPUT/last.pth`` when
it exists) or a checkpoint path. What differs — the batches, the loss, the schedule, what "best" means and
what a checkpoint holds — stays with each task.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..engine.distributed import resolve_device
from ..guards import describe_unreadable_checkpoint

__all__ = ["resolve_device", "start_run", "load_checkpoint_file", "read_tagged_checkpoint", "resume_checkpoint", "optimizer_step", "train_one_epoch",
           "end_epoch"]


def start_run(seed: int, device: str, output: Union[str, Path]) -> Tuple[torch.device, Path]:
    """Seed torch and NumPy (the generators the models and data draw from), resolve ``device`` (see
    :func:`resolve_device`) and create the run folder ``output``; returns (device, run folder)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    return resolve_device(device), out_dir


def load_checkpoint_file(path: Union[str, Path], expected: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with clear errors: a missing file names ``expected`` (what to
    pass instead), an unreadable one (truncated, not a torch file, pickled objects) says so."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass {expected}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holds objects that need unpickling
        raise ValueError(describe_unreadable_checkpoint(path, e, expected)) from e  # one paragraph, by file kind


def read_tagged_checkpoint(path: Union[str, Path], fmt: str, run: str, kind: str) -> Dict[str, Any]:
    """Load ``path`` (``weights_only``) and check that its ``format`` entry is ``fmt``.

    ``run`` and ``kind`` name the task in the errors, e.g. ``"an audio run"`` and
    ``"an audio checkpoint written by `unireplknet audio-train`"``.
    """
    path = Path(path)
    ckpt = load_checkpoint_file(path, f"the last.pth or best.pth of {run}")
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise ValueError(f"{path} is not {kind} (no format={fmt!r})")
    return ckpt


def resume_checkpoint(resume: Optional[str], out_dir: Path,
                      read: Callable[[Path], Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The checkpoint a run continues from, read with ``read``; None for a fresh start.

    ``resume`` None or empty: a fresh start. ``'auto'``: ``out_dir/last.pth`` when it exists (so the same
    command both starts and continues a run). A path: that file, which must exist.
    """
    if not resume:
        return None
    path = out_dir / "last.pth" if resume == "auto" else Path(resume)
    if resume == "auto" and not path.exists():
        return None
    return read(path)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, epoch: int, *,
                   clip_grad: float = 0.0, advice: str = "lower --lr") -> float:
    """One plain step on ``loss``: zero the gradients, backward, clip their norm to ``clip_grad`` (when > 0),
    step; returns the loss value. A NaN or infinite loss stops the run first with :class:`FloatingPointError`
    naming the epoch (``epoch`` counts from 0) and ``advice``."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"loss is {value} at epoch {epoch + 1}; {advice}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad:
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    optimizer.step()
    return value


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Any],
                    batch_loss: Callable[[Any], Tuple[torch.Tensor, int]], epoch: int) -> float:
    """One epoch of plain steps (zero_grad, backward, step) in training mode; returns the mean loss per sample.

    ``batch_loss(batch)`` moves the batch to the device and returns its mean loss and its number of samples.
    A loss that is NaN or infinite stops the run with :class:`FloatingPointError` (``epoch`` counts from 0).
    """
    model.train()
    loss_sum = n = 0.0
    for batch in batches:
        loss, size = batch_loss(batch)
        value = optimizer_step(model, optimizer, loss, epoch)
        loss_sum += value * size
        n += size
    return loss_sum / max(n, 1)


def end_epoch(checkpoint: Dict[str, Any], out_dir: Path, improved: bool, log: Any, row: Dict[str, Any],
              callbacks: Sequence[Callable[[Dict[str, Any]], None]]) -> None:
    """Save ``checkpoint`` as ``best.pth`` (when the validation score ``improved``) and as ``last.pth``
    (atomically: a run killed mid-write keeps the previous file), log the metrics ``row`` (a
    :class:`~unireplknet.engine.metrics_log.MetricsLogger`) and pass it to each callback."""
    from ..engine.checkpointing import atomic_torch_save

    if improved:
        atomic_torch_save(checkpoint, out_dir / "best.pth")
    atomic_torch_save(checkpoint, out_dir / "last.pth")
    log.log(row)
    for cb in callbacks:
        cb(row)
