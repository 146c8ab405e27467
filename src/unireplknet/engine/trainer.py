"""The training loop: official recipe on timm's building blocks, DDP under torchrun, exact resume.

:func:`train` builds the data, model, optimiser (AdamW, no weight decay on 1-D parameters and biases,
optional layer decay through the model's ``group_matcher``), per-iteration warmup + cosine schedule,
mixup/cutmix, EMA and AMP from a :class:`~unireplknet.engine.config.TrainConfig`; trains; writes an
atomic checkpoint every epoch; and finally re-parameterizes the model, checks that the deploy structure
scores the same, measures its speed-up and writes it as safetensors (and ONNX when onnxruntime is there).
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data import DataBundle, DataError, build_data
from .checkpointing import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    get_rng_state,
    load_training_checkpoint,
    set_rng_state,
)
from .config import TrainConfig
from .distributed import DistInfo, all_gather_object, all_reduce_sum, average_buffers, barrier, init_distributed
from .metrics_log import MetricsLogger, tensorboard_writer
from .samplers import ShardedBatchSampler, ShardedEvalSampler

__all__ = ["EpochEnd", "TrainResult", "build_model", "build_optimizer", "build_scheduler", "evaluate", "train", "unknown_variant_message"]

_logger = logging.getLogger(__name__)


@dataclass
class EpochEnd:
    """Passed to training callbacks after each epoch's checkpoint is on disk."""

    epoch: int  # completed epochs
    metrics: Dict[str, Any]
    checkpoint: Optional[Path]
    model: nn.Module


@dataclass
class TrainResult:
    """What a training run produced and measured (rank 0 has the file paths)."""

    output: Path
    epochs: int
    history: List[Dict[str, Any]]
    train_structure: Dict[str, float]
    deploy_structure: Dict[str, float] = field(default_factory=dict)
    max_logit_diff: Optional[float] = None
    latency_train_s: Optional[float] = None
    latency_deploy_s: Optional[float] = None
    params_train: int = 0
    params_deploy: int = 0
    checkpoint: Optional[Path] = None
    deploy_file: Optional[Path] = None
    onnx_file: Optional[Path] = None
    onnx_max_diff: Optional[float] = None
    onnx_skipped: Optional[str] = None
    wall_s: float = 0.0
    world_size: int = 1
    unreadable_images: int = 0
    data_description: str = ""
    model: Optional[nn.Module] = None

    @property
    def speedup(self) -> Optional[float]:
        if self.latency_train_s and self.latency_deploy_s:
            return self.latency_train_s / self.latency_deploy_s
        return None

    def to_dict(self) -> Dict[str, Any]:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items() if k != "model"}
        d["speedup"] = self.speedup
        return d


# ----------------------------------------------------------------------------------------------- model
def unknown_variant_message(name: str) -> str:
    import timm

    known = ", ".join(timm.list_models("unireplknet_*")) or "unireplknet_a … unireplknet_xl"
    return f"unknown model {name!r}; choose one of: {known} (or 'custom' with --model-kwargs)"


def build_model(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    model_kwargs: Optional[Dict[str, Any]] = None,
    pretrained: bool = False,
    **overrides: Any,
) -> nn.Module:
    """A UniRepLKNet by variant name (``unireplknet_a`` … ``unireplknet_xl``, via timm) or ``'custom'``.

    ``'custom'`` passes ``model_kwargs`` (depths, dims, kernel_sizes …) to :class:`~unireplknet.UniRepLKNet`;
    ``overrides`` (drop_path_rate, layer_scale_init_value, head_init_scale, use_sync_bn, deploy) go to both.
    """
    from ..model import UniRepLKNet

    kwargs = dict(model_kwargs or {})
    if name == "custom":
        if pretrained:
            raise ValueError("--pretrained needs a named variant (e.g. unireplknet_a), not 'custom'")
        if "kernel_sizes" in kwargs and kwargs["kernel_sizes"] is not None:
            kwargs["kernel_sizes"] = tuple(tuple(k) for k in kwargs["kernel_sizes"])
        return UniRepLKNet(in_chans=in_chans, num_classes=num_classes, **kwargs, **overrides)
    import timm

    from .. import zoo  # registers the variants with timm

    full = name if name.startswith("unireplknet_") else f"unireplknet_{name}"
    if full.split(".")[0] not in timm.list_models("unireplknet_*"):
        raise ValueError(unknown_variant_message(name))
    return zoo.create_model(full, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans,
                            **kwargs, **overrides)


def _rgb_stem_adapted(path: str, model: nn.Module) -> Any:
    """``path``, or its state dict with an RGB stem adapted to the model's input channels the way timm adapts
    ``--pretrained`` weights (``in_chans=1``: the sum over R, G, B), so a downloaded official file given as
    ``--checkpoint`` works like ``--pretrained`` for grey images."""
    from ..checkpoint import STEM_WEIGHT, differs_only_in_input_channels, read_state_dict, strip_prefixes

    target = model.state_dict().get(STEM_WEIGHT)
    if target is None or target.shape[1] == 3:
        return path
    sd = strip_prefixes(read_state_dict(path))
    w = sd.get(STEM_WEIGHT)
    if not differs_only_in_input_channels(w, target) or w.shape[1] != 3:
        return path  # nothing to adapt, or a real mismatch that load_checkpoint explains with the file's name
    from timm.models import adapt_input_conv

    _logger.info("%s: RGB stem adapted to %d input channel(s)", path, target.shape[1])
    sd[STEM_WEIGHT] = adapt_input_conv(target.shape[1], w).to(w.dtype)
    return sd


def _model_config(cfg: TrainConfig, num_classes: int, in_chans: int, deploy: bool = False) -> Dict[str, Any]:
    """What identifies the architecture (checked on resume)."""
    config = dict(name=cfg.model, model_kwargs=TrainConfig(model_kwargs=cfg.model_kwargs).to_dict()["model_kwargs"],
                  num_classes=num_classes, in_chans=in_chans)
    if deploy:  # only then, so that checkpoints of training-structure runs keep their old model_config
        config["deploy"] = True
    return config


# ----------------------------------------------------------------------------------------------- evaluation
def _topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int]) -> List[float]:
    maxk = min(max(ks), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices
    hit = pred.eq(target[:, None])
    return [float(hit[:, : min(k, maxk)].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp_dtype: Optional[torch.dtype] = None,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "eval",
) -> Dict[str, float]:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy of ``model`` over ``loader``, summed over all ranks.

    Batches are :class:`~unireplknet.data.Batch` objects or ``(images, targets)`` pairs; unreadable images
    were already left out by the collate function and are counted in ``unreadable``.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    loss_sum = top1 = top5 = n = unreadable = 0.0
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        images, targets = (batch.images, batch.targets) if hasattr(batch, "images") else batch
        unreadable += getattr(batch, "unreadable", 0)
        if images.numel() == 0:
            continue
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        with amp:
            logits = model(images)
        logits = logits.float()
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        c1, c5 = _topk_correct(logits, targets, (1, 5))
        top1, top5, n = top1 + c1, top5 + c5, n + len(targets)
    loss_sum, top1, top5, n, unreadable = all_reduce_sum([loss_sum, top1, top5, n, unreadable], device)
    model.train(was_training)
    if n == 0:
        raise DataError("no readable image to evaluate on (every image of the held-out set failed to load)")
    return dict(loss=loss_sum / n, top1=100.0 * top1 / n, top5=100.0 * top5 / n, images=int(n),
                unreadable=int(unreadable))


def make_eval_loader(dataset: Dataset, batch_size: int, collate: Callable, workers: int = 0,
                     dist_info: Optional[DistInfo] = None) -> DataLoader:
    rank, world = (dist_info.rank, dist_info.world_size) if dist_info else (0, 1)
    return DataLoader(dataset, batch_sampler=ShardedEvalSampler(len(dataset), batch_size, rank, world),
                      num_workers=workers, collate_fn=collate, pin_memory=torch.cuda.is_available())


# ----------------------------------------------------------------------------------------------- training
def _amp_dtype(amp: str) -> Optional[torch.dtype]:
    choices = {"none": None, "": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
               "fp16": torch.float16, "float16": torch.float16}
    if amp not in choices:
        raise ValueError(f"--amp must be none, bf16 or fp16, got {amp!r}")
    return choices[amp]


def _criterion(cfg: TrainConfig, num_classes: int):
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if cfg.mixup > 0 or cfg.cutmix > 0:
        if cfg.batch_size % 2:
            raise ValueError(f"mixup/cutmix mix each batch with its reverse and need an even --batch-size, got {cfg.batch_size}")
        mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                      switch_prob=cfg.mixup_switch_prob, mode="batch", label_smoothing=cfg.smoothing,
                      num_classes=num_classes)
        return mixup, SoftTargetCrossEntropy()  # smoothing is folded into the mixed targets
    if cfg.smoothing > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
    return None, nn.CrossEntropyLoss()


def _train_one_epoch(
    model: nn.Module, ddp: Optional[nn.Module], loader: DataLoader, optimizer: torch.optim.Optimizer,
    scheduler: Any, scaler: Optional[Any], ema: Optional[Any], mixup: Any, criterion: nn.Module,
    cfg: TrainConfig, epoch: int, num_updates: int, device: torch.device, channels_last: bool,
    amp_dtype: Optional[torch.dtype], show_progress: bool,
) -> Dict[str, Any]:
    from tqdm.auto import tqdm

    net = ddp if ddp is not None else model
    net.train()
    accum = cfg.accum_steps
    steps = len(loader) // accum
    loss_sum, micro, images_seen, unreadable = 0.0, 0, 0, 0
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", disable=not show_progress,
               dynamic_ncols=True)
    t0 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(loader):
        images, targets = batch.images, batch.targets
        unreadable += batch.unreadable
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if mixup is not None:
            images, targets = mixup(images, targets)
        last_micro = (i + 1) % accum == 0
        # Gradients are all-reduced only on the last micro-batch of a step (DDP no_sync for the others).
        sync = ddp.no_sync() if (ddp is not None and not last_micro) else contextlib.nullcontext()
        with sync:
            with amp:
                logits = net(images)
                loss = criterion(logits, targets)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"loss is {loss_value} at epoch {epoch + 1}, micro-batch {i}; lower --lr, use --amp none "
                    "or --clip-grad, or resume from the last good checkpoint"
                )
            scaled = loss / accum
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += loss_value
        micro += 1
        images_seen += images.shape[0]
        if not last_micro:
            continue
        if scaler is not None:
            if cfg.clip_grad:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
        else:
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        num_updates += 1
        scheduler.step_update(num_updates=num_updates)
        if ema is not None:
            ema.update(model, step=num_updates)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{optimizer.param_groups[-1]['lr']:.2e}")
    bar.close()
    elapsed = time.perf_counter() - t0
    loss_sum, micro, images_seen, unreadable = all_reduce_sum([loss_sum, micro, images_seen, unreadable], device)
    return dict(train_loss=loss_sum / max(micro, 1), num_updates=num_updates, images_per_s=images_seen / elapsed,
                epoch_s=elapsed, unreadable=int(unreadable), lr=max(g["lr"] for g in optimizer.param_groups))


def _load_state(model: nn.Module, state: Dict[str, torch.Tensor], what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"the {what} in the checkpoint does not fit the model built from these options: {e}") from e


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW through timm: no weight decay on 1-D parameters and biases; layer decay via ``group_matcher``."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay,
                               layer_decay=cfg.layer_decay, eps=cfg.opt_eps)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """Per-iteration schedule: linear warmup 0 → lr over ``warmup_epochs``, then cosine to ``min_lr``.

    Call ``step_update(num_updates)`` after every optimizer step (timm's convention).
    """
    from timm.scheduler import CosineLRScheduler

    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    total_steps = cfg.epochs * steps_per_epoch
    return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warmup_steps), lr_min=cfg.min_lr,
                             warmup_t=warmup_steps, warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)


def train(cfg: TrainConfig, callbacks: Sequence[Callable[[EpochEnd], None]] = ()) -> TrainResult:
    """Train, checkpoint every epoch, then re-parameterize, verify and export (see the module docstring).

    Runs unchanged under ``torchrun`` (one process per GPU or CPU worker). ``callbacks`` are called on every
    rank after each epoch (after the checkpoint is written); raising from one stops the run like a kill would.
    """
    t_start = time.perf_counter()
    dist_info = init_distributed(cfg.device)
    device, rank, world = dist_info.device, dist_info.rank, dist_info.world_size
    main = dist_info.is_main
    if main and cfg.tensorboard:
        tensorboard_writer(required=True)  # say it now, not after the data and model are built
    out = Path(cfg.output)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    import random

    import numpy as np

    # Every rank builds the same initial model (and EMA copy) from the same seed ...
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)

    aug = dict(hflip=cfg.hflip, color_jitter=cfg.color_jitter, auto_augment=cfg.auto_augment,
               train_interpolation=cfg.interpolation, reprob=cfg.reprob, remode=cfg.remode, recount=cfg.recount)
    bundle: DataBundle = build_data(cfg.data, cfg.input_size, cfg.in_chans, cfg.val_split, cfg.seed, cfg.crop_pct,
                                    cfg.interpolation, aug=aug, train_augment=cfg.train_augment)
    if main:
        _logger.info("data: %s", bundle.description)
    num_classes = cfg.num_classes or len(bundle.class_names)
    if num_classes != len(bundle.class_names):
        raise DataError(f"--num-classes {cfg.num_classes} but the data has {len(bundle.class_names)} classes")
    in_chans = bundle.in_chans
    amp_dtype = _amp_dtype(cfg.amp)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"

    ckpt = resume_path = None
    if cfg.resume:
        # Read before the model is built: the run may have trained the deploy structure (see below).
        resume_path = out / "last.pth" if cfg.resume == "auto" else Path(cfg.resume)
        ckpt = load_training_checkpoint(resume_path, map_location=device)

    # A resumed run overwrites every weight from its checkpoint: no need to fetch the pretrained ones again
    # (which would also fail offline).
    model = build_model(cfg.model, num_classes, in_chans, cfg.model_kwargs, cfg.pretrained and ckpt is None,
                        drop_path_rate=cfg.drop_path, layer_scale_init_value=cfg.layer_scale_init_value,
                        head_init_scale=cfg.head_init_scale)
    if cfg.checkpoint and ckpt is None:
        from ..checkpoint import CheckpointMismatchError, load_checkpoint

        # A deploy-layout file re-parameterizes the model first (its branches cannot be recovered).
        source = _rgb_stem_adapted(cfg.checkpoint, model)
        try:
            load_checkpoint(model, source, drop_mismatched_head=True)
        except CheckpointMismatchError as e:
            if isinstance(source, dict):  # the message names "the state dict": say which file it came from
                raise CheckpointMismatchError(f"{cfg.checkpoint}: {e}") from None
            raise
        if main:
            _logger.info("initialised from %s", cfg.checkpoint)
            if getattr(model, "deploy", False):
                _logger.warning(
                    "%s is a deploy (re-parameterized) checkpoint: fine-tuning continues in the deploy structure "
                    "(one fused kernel per block, no parallel dilated branches or block BatchNorms); start from "
                    "the training checkpoint (e.g. last.pth) to train the Dilated Reparam Blocks", cfg.checkpoint)
    elif ckpt is not None and ckpt["model_config"].get("deploy") and not getattr(model, "deploy", False):
        from ..model import reparameterize

        reparameterize(model)
    model_config = _model_config(cfg, num_classes, in_chans, deploy=getattr(model, "deploy", False))
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if cfg.sync_bn and dist_info.distributed:
        if device.type == "cpu":
            raise ValueError("--sync-bn needs GPUs (torch's SyncBatchNorm has no CPU implementation); drop --sync-bn")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    ema = None
    if cfg.model_ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.model_ema_decay)  # after .to(device), before DDP, as the official code

    optimizer = build_optimizer(model, cfg)
    # ... then ranks differ in augmentation and drop-path randomness, like independent workers of one big batch.
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)

    train_sampler = ShardedBatchSampler(len(bundle.train), cfg.batch_size, rank, world, cfg.accum_steps, cfg.seed)
    steps_per_epoch = train_sampler.steps_per_epoch
    if steps_per_epoch == 0:
        raise DataError(
            f"the training set has {len(bundle.train)} images, fewer than one step needs (batch {cfg.batch_size} x "
            f"accumulation {cfg.accum_steps} x {world} processes); lower --batch-size or --accum-steps"
        )
    train_loader = DataLoader(bundle.train, batch_sampler=train_sampler, num_workers=cfg.workers,
                              collate_fn=bundle.train_collate, pin_memory=device.type == "cuda",
                              persistent_workers=False)
    eval_bs = max(1, int(cfg.batch_size * 1.5))  # the official validation batch
    val_loader = (make_eval_loader(bundle.val, eval_bs, bundle.eval_collate, cfg.workers, dist_info)
                  if bundle.val is not None else None)

    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    mixup, criterion = _criterion(cfg, num_classes)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    start_epoch, num_updates, best, history = 0, 0, None, []
    if ckpt is not None:
        path = resume_path
        if ckpt["model_config"] != model_config:
            raise ValueError(
                f"{path} was trained with model {ckpt['model_config']}, these options build {model_config}; "
                "resume with the original command line"
            )
        _load_state(model, ckpt["model"], "model")
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if ema is not None:
            if ckpt.get("model_ema") is None:
                raise ValueError(f"{path} has no EMA weights but --model-ema is on; resume without --model-ema")
            _load_state(ema.module, ckpt["model_ema"], "EMA model")
        start_epoch, num_updates, best = int(ckpt["epoch"]), int(ckpt["num_updates"]), ckpt.get("best")
        history = list(ckpt.get("history", []))
        rng = ckpt.get("rng") or []
        if len(rng) == world:
            set_rng_state(rng[rank])
        else:
            _logger.warning("%s was written by %d processes, this run has %d: random streams restart from the seed",
                            path, len(rng), world)
        scheduler.step_update(num_updates=num_updates)
        if main:
            _logger.info("resumed from %s at epoch %d (%d optimizer steps)", path, start_epoch, num_updates)
        del ckpt

    ddp = None
    if dist_info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        import inspect

        # Each rank keeps its own BatchNorm statistics during an epoch; they are averaged at its end.
        buffers = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else "broadcast_buffers")
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      **{buffers: False})

    logger = MetricsLogger(out, start_epoch, cfg.tensorboard) if main else None
    total_unreadable = 0
    ckpt_path = out / "last.pth"
    try:
        for epoch in range(start_epoch, cfg.epochs):
            train_sampler.set_epoch(epoch)
            stats = _train_one_epoch(model, ddp, train_loader, optimizer, scheduler, scaler, ema, mixup, criterion,
                                     cfg, epoch, num_updates, device, channels_last, amp_dtype,
                                     cfg.progress and main)
            num_updates = stats.pop("num_updates")
            total_unreadable += stats["unreadable"]
            average_buffers(model)
            row: Dict[str, Any] = dict(epoch=epoch + 1, **stats)
            last = epoch + 1 == cfg.epochs
            if val_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or last):
                m = evaluate(model, val_loader, device, amp_dtype, channels_last)
                row.update(val_loss=m["loss"], val_top1=m["top1"], val_top5=m["top5"])
                if ema is not None:
                    me = evaluate(ema.module, val_loader, device, amp_dtype, channels_last)
                    row.update(ema_val_loss=me["loss"], ema_val_top1=me["top1"], ema_val_top5=me["top5"])
                if best is None or row["val_top1"] > best["val_top1"]:
                    best = dict(epoch=epoch + 1, val_top1=row["val_top1"])
            history.append(row)
            if main:
                logger.log(row)
                _logger.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                             ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
            rng_states = all_gather_object(get_rng_state())
            if main:
                state = dict(
                    format=CHECKPOINT_FORMAT, epoch=epoch + 1, num_updates=num_updates,
                    model=model.state_dict(), optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(), scaler=scaler.state_dict() if scaler is not None else None,
                    model_ema=ema.module.state_dict() if ema is not None else None,
                    rng=rng_states, config=cfg.to_dict(), model_config=model_config,
                    data_config=_plain_data_config(bundle.data_config), class_names=list(bundle.class_names),
                    best=best, history=history,
                )
                atomic_torch_save(state, ckpt_path)
                del state
            barrier()
            for cb in callbacks:
                cb(EpochEnd(epoch + 1, row, ckpt_path if main else None, model))
    finally:
        if logger is not None:
            logger.close()

    result = TrainResult(output=out, epochs=cfg.epochs, history=history, train_structure={},
                         checkpoint=ckpt_path if main else None, world_size=world,
                         unreadable_images=total_unreadable, data_description=bundle.description)
    final = ema.module if (ema is not None and cfg.deploy_from_ema) else model
    result.params_train = sum(p.numel() for p in final.parameters())
    if val_loader is not None:
        result.train_structure = evaluate(final, val_loader, device, amp_dtype, channels_last)
    if cfg.export_deploy:
        _finish_deploy(final, cfg, bundle, val_loader, device, amp_dtype, channels_last, main, result, model_config)
    result.wall_s = time.perf_counter() - t_start
    result.model = model
    if main:
        (out / "summary.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    if dist_info.initialized_here:
        barrier()
        torch.distributed.destroy_process_group()
    return result


def _plain_data_config(dc: Dict[str, Any]) -> Dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dc.items()}


def _finish_deploy(final: nn.Module, cfg: TrainConfig, bundle: DataBundle, val_loader: Optional[DataLoader],
                   device: torch.device, amp_dtype: Optional[torch.dtype], channels_last: bool, main: bool,
                   result: TrainResult, model_config: Dict[str, Any]) -> None:
    """Re-parameterize a copy of the trained model, check it scores the same, time both, write the files."""
    from ..model import reparameterize

    train_net = final.eval()
    deploy = reparameterize(copy.deepcopy(train_net), inplace=True).eval()
    result.params_deploy = sum(p.numel() for p in deploy.parameters())
    if val_loader is not None:
        result.deploy_structure = evaluate(deploy, val_loader, device, amp_dtype, channels_last)
        probe = next(iter(val_loader))
        x = probe.images.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            result.max_logit_diff = float((train_net(x) - deploy(x)).abs().max())
        if main:
            from .benchmark import compare_latency

            result.latency_train_s, result.latency_deploy_s = compare_latency([train_net, deploy], x)
    if not main:
        return
    from ..checkpoint import save_model

    metadata = dict(class_names=json.dumps(list(bundle.class_names)),
                    data_config=json.dumps(_plain_data_config(bundle.data_config)),
                    model_config=json.dumps(model_config))
    cpu_deploy = copy.deepcopy(deploy).to("cpu", memory_format=torch.contiguous_format)
    result.deploy_file = save_model(cpu_deploy, Path(cfg.output) / "deploy.safetensors", metadata=metadata)
    if cfg.export_onnx:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            result.onnx_skipped = "onnxruntime not installed (pip install 'unireplknet[onnx]')"
            return
        from ..export import export_onnx

        # the TorchScript exporter: about 5x quicker than dynamo and the file is verified with onnxruntime anyway
        info = export_onnx(cpu_deploy, Path(cfg.output) / "model.onnx", tuple(bundle.data_config["input_size"]),
                           exporter="torchscript")
        result.onnx_file, result.onnx_max_diff = info["path"], info["max_abs_diff"]
