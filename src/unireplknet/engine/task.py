"""What a task gives the engine: its data, its model, its loss and its evaluation.

The engine (:func:`unireplknet.engine.fit`) owns everything that is the same for every task — seeding,
device, torchrun/DDP, AMP, gradient accumulation, clipping, the NaN stop, EMA, optimizer and schedule,
logging, checkpoints, resume and the deploy/ONNX export at the end. A task subclasses :class:`Task`;
docs/architecture.md walks through a new one.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.batch import Batch, collate_samples  # the one batch type lives with the data that fills it

__all__ = ["Batch", "Task", "TaskData", "StepContext", "StepOutput", "collate_samples"]


@dataclass
class TaskData:
    """The datasets of a run and how to batch them.

    ``eval_batch_size`` None: 1.5 x the training batch (the official validation batch). The collate functions
    return a :class:`Batch` (None: :func:`collate_samples`). The class names and the data config are stored
    (JSON) in the checkpoint and the deploy file.
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


class Task:
    """The plug-in interface of the engine: subclass it and implement the six required methods.

    Attributes:
        name: stored as ``model_config["task"]`` in checkpoints; a checkpoint of another task is refused.
        metric: the key of :meth:`evaluate`'s result that picks ``best.pth`` (logged as ``val_<metric>``).
        higher_is_better: whether a larger ``metric`` is better (accuracy) or a smaller one (an error).
        find_unused_parameters: passed to DDP; True when some parameters get no gradient in a step (a head that
            skips the backbone's final norm, detection heads that skip a branch per batch).

    The remaining methods are optional hooks with a default that does nothing special (as a LightningModule's):
    :meth:`param_groups`, :meth:`load_initial_weights`, :meth:`adapt_to_checkpoint`, :meth:`restore`,
    :meth:`start_epoch` and :meth:`export_onnx`. The engine calls every one of them on every run.
    """

    name: str = "task"
    metric: str = "loss"
    higher_is_better: bool = True
    find_unused_parameters: bool = False

    # ------------------------------------------------------------------------------------------------ required
    def build_data(self, cfg: Any, seed: int) -> TaskData:
        """The training and held-out sets (the same on every rank; the engine shards them)."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_data(cfg, seed)")

    def build_model(self, cfg: Any, data: TaskData, pretrained: bool) -> nn.Module:
        """The network to train (``pretrained`` is False on resume: the checkpoint has every weight)."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_model(cfg, data, pretrained)")

    def model_config(self, cfg: Any, data: TaskData, model: nn.Module) -> Dict[str, Any]:
        """Plain-typed description of the architecture: checked on resume, stored in every file written."""
        raise NotImplementedError(f"{type(self).__name__} must implement model_config(cfg, data, model)")

    def training_loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        """Move ``batch`` to ``ctx.device``, apply the task's batch augmentation (e.g. mixup) and return the loss.

        Called inside the engine's autocast; the engine does backward, accumulation, clipping and the step.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement training_loss(model, batch, ctx)")

    def evaluate(self, model: nn.Module, loader: Any, ctx: StepContext) -> Dict[str, float]:
        """Held-out metrics summed over all ranks (use :func:`unireplknet.engine.distributed.all_reduce_sum`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement evaluate(model, loader, ctx)")

    def deploy_example(self, data: TaskData) -> Optional[torch.Tensor]:
        """A small CPU batch of the fixed-shape input of the deploy model (the deploy check and ONNX use it);
        None when the task has no fixed-shape forward (no deploy file is written then)."""
        return None

    # ------------------------------------------------------------------------------------------------ optional
    def param_groups(self, model: nn.Module, cfg: Any) -> Optional[List[Dict[str, Any]]]:
        """Own optimizer groups (each with ``params``, ``lr_scale`` and ``weight_decay``), e.g. a detector's layer
        decay. Default None: timm's groups (no decay on 1-D parameters, layer decay via ``group_matcher``)."""
        return None

    def load_initial_weights(self, model: nn.Module, path: str) -> None:
        """``--checkpoint`` on a fresh run. Default: any UniRepLKNet file, the classifier head left out when its
        shape differs."""
        from ..checkpoint import load_checkpoint

        load_checkpoint(model, path, drop_mismatched_head=True)

    def adapt_to_checkpoint(self, model: nn.Module, model_config: Dict[str, Any]) -> None:
        """On resume, before the weights are loaded: make ``model`` match the checkpoint's ``model_config`` (e.g.
        re-parameterize a run fine-tuned in the deploy structure). Default: nothing."""

    def restore(self, checkpoint: Dict[str, Any]) -> None:
        """On resume, before the data is built: take task state from the checkpoint (e.g. data statistics of the
        first run). Default: nothing."""

    def start_epoch(self, epoch: int) -> None:
        """Called on every rank at the start of each epoch (0-based), e.g. to re-seed a per-epoch random stream.
        Default: nothing."""

    def export_onnx(self, model: nn.Module, path: Path, example: Sequence[torch.Tensor]) -> Optional[Dict[str, Any]]:
        """Write the deploy ``model`` (on the CPU) as ONNX to ``path`` and check it with onnxruntime; return a dict
        with ``path`` and ``max_abs_diff``, or None when there is nothing to export.

        Default: the library's exporter on the shapes of ``example`` (the :meth:`deploy_example` inputs); None
        when there is no example. Tasks with list inputs or their own graph (a detector) override it.
        """
        if not example:
            return None
        from ..export import export_onnx

        # the TorchScript exporter: about 5x quicker than dynamo; the file is verified with onnxruntime anyway
        return export_onnx(model, path, [tuple(x.shape[1:]) for x in example], exporter="torchscript")
