"""A thin classification loop for inputs that are not images (video clips, point clouds).

The image engine (:func:`unireplknet.engine.train`) builds its data from an image folder and feeds the
batch straight to the backbone, so it cannot take a clip or a point cloud whose image is formed inside
the model. This loop reuses the engine's building blocks — AdamW with its parameter groups
(:func:`~unireplknet.engine.build_optimizer`), the per-iteration warmup + cosine schedule
(:func:`~unireplknet.engine.build_scheduler`), atomic checkpoints with RNG state
(:func:`~unireplknet.engine.atomic_torch_save`), the seeded batch sampler and the metrics CSV — and adds
only what differs: any input tensor, an optional batch transform (mixup on the clip), an optional custom
loss, and multi-view evaluation. Single process (no DDP).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ._epoch_loop import optimizer_step

__all__ = ["LoopConfig", "fit", "predict_views"]

_logger = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    """Optimisation options of :func:`fit` (names as in :class:`unireplknet.engine.TrainConfig`)."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    layer_decay: Optional[float] = None
    opt_eps: float = 1e-8
    clip_grad: Optional[float] = None
    smoothing: float = 0.1
    seed: int = 0
    workers: int = 0
    device: str = "cpu"
    output: Optional[str] = None
    resume: bool = False
    eval_every: int = 1
    extra: Dict[str, Any] = field(default_factory=dict)


def loop_config_of(task_cfg: Any) -> LoopConfig:
    """The :class:`LoopConfig` of a task's train config (video, point cloud): each loop option that the task
    config has a field for takes that field's value, the others keep their defaults."""
    return LoopConfig(**{f.name: getattr(task_cfg, f.name) for f in fields(LoopConfig) if hasattr(task_cfg, f.name)})


def build_task_backbone(model: str, num_classes: int, official_kwargs: Dict[str, Any],
                        model_kwargs: Optional[Dict[str, Any]] = None, pretrained: bool = False,
                        **overrides: Any) -> nn.Module:
    """The 3-channel UniRepLKNet inside a task classifier.

    ``model="official"`` builds the task's official network: ``official_kwargs`` updated by ``model_kwargs``,
    then by ``overrides`` (so ``drop_path_rate`` from the recipe replaces the official one). Other names go to
    :func:`unireplknet.engine.build_model` (a variant, or ``"custom"`` with ``model_kwargs``).
    """
    if model == "official":
        from ..model import UniRepLKNet

        kw = dict(official_kwargs)
        kw.update(model_kwargs or {})
        kw.update(overrides)
        return UniRepLKNet(in_chans=3, num_classes=num_classes, **kw)
    from ..engine import build_model

    return build_model(model, num_classes, 3, model_kwargs, pretrained, **overrides)


def _unpack(batch: Any):
    if hasattr(batch, "clips"):
        return batch.clips, batch.targets, getattr(batch, "unreadable", 0)
    if hasattr(batch, "points"):
        return batch.points, batch.targets, 0
    x, y = batch
    return x, y, 0


@torch.no_grad()
def predict_views(model: nn.Module, x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Softmax scores for a batch; (B, V, …) inputs are scored per view → (B, V, classes)."""
    model.eval()
    return torch.cat([model(x[i:i + chunk]).float().softmax(-1) for i in range(0, len(x), chunk)])


@torch.no_grad()
def evaluate_views(model: nn.Module, loader: DataLoader, device: torch.device,
                   forward_views: Optional[Callable[[nn.Module, torch.Tensor], torch.Tensor]] = None) -> Dict[str, float]:
    """Accuracy of ``model`` over ``loader``.

    Batches of single views (B, …) give top-1; multi-view batches (B, V, …) — the video test's clips × crops,
    the point-cloud test's rotations — give ``top1`` of the averaged softmax and ``view_top1``, the accuracy
    over all B·V single-view predictions (the official point-cloud number).
    """
    was = model.training
    model.eval()
    n = correct = view_correct = view_n = unreadable = 0
    loss_sum = 0.0
    for batch in loader:
        x, y, bad = _unpack(batch)
        unreadable += bad
        if x.numel() == 0:
            continue
        x, y = x.to(device), y.to(device)
        if forward_views is not None:
            logits = forward_views(model, x)  # (B, V, K) or (B, K)
        else:
            logits = model(x)
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
    model.train(was)
    if n == 0:
        raise ValueError("no readable sample to evaluate on")
    out = dict(top1=100.0 * correct / n, loss=loss_sum / n, samples=n, unreadable=unreadable)
    if view_n:
        out["view_top1"] = 100.0 * view_correct / view_n
    return out


def fit(model: nn.Module, train_set: Dataset, val_set: Optional[Dataset], cfg: LoopConfig,
        collate: Optional[Callable] = None, val_collate: Optional[Callable] = None,
        batch_transform: Optional[Callable] = None, loss_fn: Optional[Callable] = None,
        forward_views: Optional[Callable] = None, model_config: Optional[Dict[str, Any]] = None,
        progress: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Train ``model`` on ``train_set``; evaluate on ``val_set`` every ``eval_every`` epochs and at the end.

    ``batch_transform(x, y) -> (x, y_soft_or_hard)`` runs on each training batch (e.g. mixup); ``loss_fn``
    defaults to label-smoothed cross-entropy (soft targets from mixup are accepted). With ``cfg.output``
    an atomic ``last.pth`` (model, optimizer, scheduler, RNG, history) is written after every epoch and
    ``cfg.resume`` continues from it. Returns the history and the final evaluation.
    """
    from ..engine import TrainConfig, atomic_torch_save, build_optimizer, build_scheduler, get_rng_state, set_rng_state
    from ..engine.metrics_log import MetricsLogger
    from ..engine.samplers import ShardedBatchSampler

    import random

    import numpy as np

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)  # the augmentations draw from all three generators
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = torch.device(cfg.device)
    model.to(device)
    opt_cfg = TrainConfig(lr=cfg.lr, min_lr=cfg.min_lr, warmup_epochs=cfg.warmup_epochs, epochs=cfg.epochs,
                          weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay, opt_eps=cfg.opt_eps)
    optimizer = build_optimizer(model, opt_cfg)
    sampler = ShardedBatchSampler(len(train_set), cfg.batch_size, seed=cfg.seed)
    if sampler.steps_per_epoch == 0:
        raise ValueError(f"the training set has {len(train_set)} samples, fewer than one batch of {cfg.batch_size}; "
                         "lower the batch size")
    scheduler = build_scheduler(optimizer, opt_cfg, sampler.steps_per_epoch)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.workers, collate_fn=collate)
    val_loader = (DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
                             collate_fn=val_collate or collate) if val_set is not None else None)
    if loss_fn is None:
        def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            if target.dim() == 2:  # soft targets (mixup/cutmix with smoothing folded in)
                return torch.sum(-target * logits.log_softmax(-1), dim=-1).mean()
            return F.cross_entropy(logits, target, label_smoothing=cfg.smoothing)

    out = Path(cfg.output) if cfg.output else None
    start, updates, history = 0, 0, []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.resume and (out / "last.pth").exists():
            ck = torch.load(out / "last.pth", map_location=device, weights_only=True)
            if model_config is not None and ck.get("model_config") not in (None, model_config):
                raise ValueError(f"{out / 'last.pth'} was trained with {ck['model_config']}, these options build "
                                 f"{model_config}; resume with the original options")
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            start, updates, history = int(ck["epoch"]), int(ck["num_updates"]), list(ck["history"])
            set_rng_state(ck["rng"])
            scheduler.step_update(num_updates=updates)
            _logger.info("resumed from %s at epoch %d", out / "last.pth", start)
    logger = MetricsLogger(out, start, tensorboard=False) if out is not None else None
    for epoch in range(start, cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        loss_sum, steps, te = 0.0, 0, time.perf_counter()
        for batch in loader:
            x, y, _ = _unpack(batch)
            if x.numel() == 0:
                continue
            x, y = x.to(device), y.to(device)
            if batch_transform is not None:
                x, y = batch_transform(x, y)
            loss = loss_fn(model(x), y)
            loss_sum += optimizer_step(model, optimizer, loss, epoch, clip_grad=cfg.clip_grad,
                                       advice="lower the learning rate")
            updates += 1
            scheduler.step_update(num_updates=updates)
            steps += 1
        row: Dict[str, Any] = dict(epoch=epoch + 1, train_loss=loss_sum / max(steps, 1),
                                   epoch_s=time.perf_counter() - te, lr=optimizer.param_groups[0]["lr"])
        if val_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            m = evaluate_views(model, val_loader, device, forward_views)
            row.update({f"val_{k}": v for k, v in m.items() if k in ("top1", "loss", "view_top1")})
        history.append(row)
        _logger.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                     ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
        if progress is not None:
            progress(row)
        if out is not None:
            logger.log(row)
            atomic_torch_save(dict(epoch=epoch + 1, num_updates=updates, model=model.state_dict(),
                                   optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                                   rng=get_rng_state(), history=history, model_config=model_config,
                                   loop_config=_plain(asdict(cfg))), out / "last.pth")
    if logger is not None:
        logger.close()
    final = evaluate_views(model, val_loader, device, forward_views) if val_loader is not None else {}
    return dict(history=history, final=final, wall_s=time.perf_counter() - t0,
                checkpoint=str(out / "last.pth") if out is not None else None)


def _plain(obj: Any) -> Any:
    """Dicts, lists and tuples as plain dicts (string keys) and lists, so weights_only loading accepts them."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def read_task_checkpoint(path: str, task: str, command: str, map_location: str = "cpu"):
    """(state dict, model config, model kwargs) of a ``last.pth`` written by :func:`fit` for ``task``."""
    from ._epoch_loop import load_checkpoint_file

    p = Path(path)
    ck = load_checkpoint_file(p, f"the last.pth of a {command} run", map_location)
    mc = (ck.get("model_config") if isinstance(ck, dict) else None) or {}
    if mc.get("task") != task:
        raise ValueError(f"{p} is not a {command} checkpoint (task {mc.get('task')!r})")
    kwargs = dict(mc["model_kwargs"])
    if kwargs.get("kernel_sizes") is not None:
        kwargs["kernel_sizes"] = tuple(tuple(k) for k in kwargs["kernel_sizes"])
    return ck["model"], mc, kwargs
