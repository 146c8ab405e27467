"""Classification of inputs that are not images (video clips, point clouds, spectrograms) on the engine.

The image of these tasks is formed inside the model, so the engine's image task cannot take them; what they
share lives here: :class:`ViewClassification` (an engine task whose evaluation averages the softmax over
test views), the backbone builder and the checkpoint reader used by their ``*-eval`` commands.
"""
from __future__ import annotations

import contextlib

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..engine.distributed import all_reduce_sum
from ..engine.task import StepContext, StepOutput, Task, TaskData, collate_samples

__all__ = ["ViewClassification", "build_task_backbone", "evaluate_views", "predict_views", "prefixed_group_matcher",
           "read_task_checkpoint", "soft_cross_entropy"]


def prefixed_group_matcher(matcher: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    """timm group-matcher regexes of a sub-module, rewritten for its parameter names inside a wrapper."""
    esc = prefix.replace(".", r"\.")

    def fix(rule: Any) -> Any:
        if isinstance(rule, str):
            return "^" + esc + rule[1:] if rule.startswith("^") else esc + rule
        if isinstance(rule, (list, tuple)) and rule and isinstance(rule[0], (list, tuple)):
            return [(fix(r), v) for r, v in rule]
        return rule

    return {k: fix(v) for k, v in matcher.items()}


def build_task_backbone(model: str, num_classes: int, official_kwargs: Dict[str, Any],
                        model_kwargs: Optional[Dict[str, Any]] = None, pretrained: bool = False,
                        **overrides: Any) -> nn.Module:
    """The 3-channel UniRepLKNet inside a task classifier.

    ``model="official"`` builds the task's official network: ``official_kwargs`` updated by ``model_kwargs``,
    then by ``overrides`` (so ``drop_path_rate`` from the recipe replaces the official one). Other names go to
    :func:`unireplknet.factory.build_model` (a variant, or ``"custom"`` with ``model_kwargs``).
    """
    from ..factory import build_model

    if model == "official":
        kw = dict(official_kwargs)
        kw.update(model_kwargs or {})
        kw.update(overrides)
        return build_model("custom", num_classes, 3, kw)
    return build_model(model, num_classes, 3, model_kwargs, pretrained, **overrides)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy of hard targets (label-smoothed) or soft ones (mixup/cutmix, smoothing folded in)."""
    if target.dim() == 2:
        return torch.sum(-target * logits.log_softmax(-1), dim=-1).mean()
    return F.cross_entropy(logits, target, label_smoothing=smoothing)


@torch.no_grad()
def predict_views(model: nn.Module, x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Softmax scores for a batch; (B, V, …) inputs are scored per view → (B, V, classes)."""
    model.eval()
    return torch.cat([model(x[i:i + chunk]).float().softmax(-1) for i in range(0, len(x), chunk)])


@torch.no_grad()
def evaluate_views(model: nn.Module, loader: DataLoader, device: torch.device,
                   forward_views: Optional[Callable[[nn.Module, torch.Tensor], torch.Tensor]] = None,
                   ctx: Optional[StepContext] = None) -> Dict[str, float]:
    """Accuracy of ``model`` over ``loader``, summed over all ranks.

    Batches of single views (B, …) give top-1; multi-view batches (B, V, …) — the video test's clips × crops,
    the point-cloud test's rotations — give ``top1`` of the averaged softmax and ``view_top1``, the accuracy
    over all B·V single-view predictions (the official point-cloud number).
    """
    was = model.training
    model.eval()
    n = correct = view_correct = view_n = unreadable = 0
    loss_sum = 0.0
    for batch in loader:
        x, y = batch.inputs, batch.targets
        unreadable += batch.unreadable
        if x.numel() == 0:
            continue
        x, y = x.to(device), y.to(device)
        with (ctx.autocast() if ctx is not None else contextlib.nullcontext()):
            logits = forward_views(model, x) if forward_views is not None else model(x)  # (B, V, K) or (B, K)
        if logits.dim() == 3:
            probs = logits.float().softmax(-1)
            view_correct += int((probs.argmax(-1) == y[:, None]).sum())
            view_n += probs.shape[0] * probs.shape[1]
            probs = probs.mean(1)
            loss_sum += float(F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum"))
        else:
            probs = logits.float().softmax(-1)
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        correct += int((probs.argmax(-1) == y).sum())
        n += len(y)
    n, correct, view_correct, view_n, unreadable, loss_sum = all_reduce_sum(
        [n, correct, view_correct, view_n, unreadable, loss_sum], device)
    model.train(was)
    if n == 0:
        raise ValueError("no readable sample to evaluate on")
    out = dict(top1=100.0 * correct / n, loss=loss_sum / n, samples=int(n), unreadable=int(unreadable))
    if view_n:
        out["view_top1"] = 100.0 * view_correct / view_n
    return out


class ViewClassification(Task):
    """Base of the clip and point-cloud tasks: label-smoothed (or mixed) cross-entropy, multi-view evaluation.

    Subclasses set ``name`` and implement ``build_data``, ``build_model``, ``model_config`` and
    ``deploy_example``; ``batch_transform(x, y)`` (mixup, point-cloud augmentation), ``loss(logits, y)`` and
    ``forward_views(model, x)`` are the hooks that differ.
    """

    name = "classification"
    metric = "top1"
    higher_is_better = True
    smoothing = 0.1

    def batch_transform(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(logits, y, self.smoothing)

    def forward_views(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    def training_loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        x, y = self.batch_transform(ctx.to_device(batch.inputs), ctx.to_device(batch.targets))
        return StepOutput(self.loss(model(x), y), x.shape[0], batch.unreadable)

    def evaluate(self, model: nn.Module, loader: Any, ctx: StepContext) -> Dict[str, float]:
        return evaluate_views(model, loader, ctx.device, self.forward_views, ctx)

    def load_initial_weights(self, model: nn.Module, path: str) -> None:
        """``--checkpoint``: ImageNet (or any UniRepLKNet) weights for the backbone; the head stays new."""
        from ..checkpoint import load_checkpoint

        load_checkpoint(model.backbone, path, drop_mismatched_head=True)


def read_task_checkpoint(path: str, task: str, command: str, map_location: str = "cpu"):
    """(state dict, model config, model kwargs) of a ``last.pth``/``best.pth`` that ``command`` wrote for ``task``."""
    from ..engine.checkpointing import load_training_checkpoint

    ck = load_training_checkpoint(Path(path), map_location, task=task, command=command)
    mc = ck["model_config"]
    kwargs = dict(mc["model_kwargs"])
    if kwargs.get("kernel_sizes") is not None:
        kwargs["kernel_sizes"] = tuple(tuple(k) for k in kwargs["kernel_sizes"])
    return ck["model"], mc, kwargs


def task_data(train: Any, val: Any, classes: Any, collate: Optional[Callable], description: str,
              data_config: Dict[str, Any], eval_batch_size: int) -> TaskData:
    """A :class:`~unireplknet.engine.TaskData` whose training and evaluation batches use the same collate
    (None: :func:`~unireplknet.engine.collate_samples`)."""
    collate = collate or collate_samples
    return TaskData(train, val, collate, collate, description, list(classes), data_config, eval_batch_size)
