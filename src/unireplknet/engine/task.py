"""What a task gives the engine: its data, its model, its loss and its evaluation.

The engine (:func:`unireplknet.engine.fit`) owns everything that is the same for every task — seeding,
device, torchrun/DDP, AMP, gradient accumulation, clipping, the NaN stop, EMA, optimizer and schedule,
logging, checkpoints, resume and the deploy/ONNX export at the end. A task is any object with the
attributes and methods of :class:`Task`; docs/architecture.md walks through a new one.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Dict, List, Optional, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["Task", "TaskData", "StepContext", "StepOutput"]


@dataclass
class TaskData:
    """The datasets of a run and how to batch them.

    ``eval_batch_size`` None: 1.5 x the training batch (the official validation batch). ``metadata`` is
    stored (JSON) in the checkpoint and the deploy file, e.g. the class names and the data config.
    """

    train: Dataset
    val: Optional[Dataset]
    train_collate: Optional[Callable] = None
    eval_collate: Optional[Callable] = None
    description: str = ""
    class_names: List[str] = field(default_factory=list)
    data_config: Dict[str, Any] = field(default_factory=dict)
    eval_batch_size: Optional[int] = None
    worker_init_fn: Optional[Callable[[int], None]] = None


@dataclass
class StepContext:
    """Where and how a batch runs: the device, channels-last memory format, and the AMP autocast to enter."""

    device: torch.device
    channels_last: bool = False
    amp_dtype: Optional[torch.dtype] = None
    dist: Any = None  # the run's DistInfo (rank, world_size) for tasks that shard their own evaluation

    def autocast(self) -> ContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, x: torch.Tensor, image: bool = False) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if image and self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


@dataclass
class StepOutput:
    """One micro-batch's mean loss (a graph tensor), its number of samples and of unreadable inputs left out."""

    loss: torch.Tensor
    samples: int
    unreadable: int = 0
    parts: Dict[str, float] = field(default_factory=dict)  # loss components, logged as train_<name>


@runtime_checkable
class Task(Protocol):
    """The plug-in interface of the engine.

    Attributes:
        name: stored as ``model_config["task"]`` in checkpoints; a checkpoint of another task is refused.
        metric: the key of :meth:`evaluate`'s result that picks ``best.pth`` (logged as ``val_<metric>``).
        higher_is_better: whether a larger ``metric`` is better (accuracy) or a smaller one (an error).

    Optional hooks, looked up with ``getattr``: ``param_groups(model, cfg)`` (own optimizer groups with
    ``lr_scale``), ``load_initial_weights(model, path)`` (``--checkpoint``), ``adapt_to_checkpoint(model,
    model_config)`` and ``restore(checkpoint)`` (on resume), ``start_epoch(epoch)`` (per-epoch re-seeding),
    ``export_onnx(model, path)`` (own exporter) and ``find_unused_parameters`` (for DDP).
    """

    name: str
    metric: str
    higher_is_better: bool

    def build_data(self, cfg: Any, seed: int) -> TaskData:
        """The training and held-out sets (the same on every rank; the engine shards them)."""

    def build_model(self, cfg: Any, data: TaskData, pretrained: bool) -> nn.Module:
        """The network to train (``pretrained`` is False on resume: the checkpoint has every weight)."""

    def model_config(self, cfg: Any, data: TaskData, model: nn.Module) -> Dict[str, Any]:
        """Plain-typed description of the architecture: checked on resume, stored in every file written."""

    def training_loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        """Move ``batch`` to ``ctx.device``, apply the task's batch augmentation (e.g. mixup) and return the loss.

        Called inside the engine's autocast; the engine does backward, accumulation, clipping and the step.
        """

    def evaluate(self, model: nn.Module, loader: Any, ctx: StepContext) -> Dict[str, float]:
        """Held-out metrics summed over all ranks (use :func:`unireplknet.engine.distributed.all_reduce_sum`)."""

    def deploy_example(self, data: TaskData) -> Optional[torch.Tensor]:
        """A small CPU batch of the fixed-shape input of the deploy model (the deploy check and ONNX use it);
        None when the task has no fixed-shape forward (no deploy file is written then)."""


def task_attr(task: Any, name: str, default: Any) -> Any:
    """An optional hook of ``task`` (tasks need not define every one)."""
    return getattr(task, name, default)



