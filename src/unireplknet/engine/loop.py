"""The one training loop: every task (images, audio, forecasting, video, point clouds, detection,
segmentation) trains through :func:`fit`; the task object supplies only what differs (:mod:`.task`).

:func:`fit` owns seeding, the device (``auto``: CUDA when present), torchrun/DDP with a sharded sampler and
metrics summed over ranks, AMP (bf16 on CPU; fp16/bf16 on CUDA), gradient accumulation, clipping, the NaN
stop, model EMA, the optimizer (timm's factory: AdamW, no decay on 1-D parameters, layer decay through the
model's ``group_matcher``) and the per-step warmup + cosine schedule, progress bars, CSV + TensorBoard,
atomic ``last.pth`` + ``best.pth``, exact resume, and at the end re-parameterization, the training-vs-deploy
check, ``deploy.safetensors`` and ``model.onnx`` checked with onnxruntime.
"""
from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .checkpointing import (CHECKPOINT_FORMAT, atomic_torch_save, atomic_write, atomic_write_bytes, check_resume_identity,
                            data_fingerprint, get_rng_state, load_training_checkpoint, set_rng_state)
from .config import adapt_to_machine_and_run, check_input_paths
from .distributed import DistInfo, all_gather_object, all_reduce_sum, average_buffers, barrier, init_distributed
from .metrics_log import MetricsLogger, tensorboard_writer
from .samplers import ShardedBatchSampler, ShardedEvalSampler
from .config import plain
from .task import StepContext, Task, TaskData, collate_samples

__all__ = ["EpochEnd", "TrainResult", "fit", "build_optimizer", "build_scheduler", "make_eval_loader", "amp_dtype_of",
           "check_engine_options", "RunFolderError"]

_logger = logging.getLogger(__name__)

#: Files whose presence means a folder holds a run (refused as --output without --resume / --overwrite).
RUN_FILES = ("last.pth", "best.pth", "deploy.safetensors", "summary.json")
LOCK_NAME = ".unireplknet.lock"


class RunFolderError(RuntimeError):
    """The output folder cannot take this run (holds another run, is locked, is a file or read-only)."""


@dataclass
class EpochEnd:
    """Passed to training callbacks after each epoch's checkpoint is on disk."""

    epoch: int  # completed epochs
    metrics: Dict[str, Any]
    checkpoint: Optional[Path]
    model: nn.Module


@dataclass
class TrainResult:
    """What a training run produced and measured (rank 0 has the file paths): the one result of every
    ``train_*`` function. ``extras`` holds what one task adds after the run (e.g. audio's held-out and test
    scores of ``best.pth``, the forecaster's naive baselines, a dense task's key metric)."""

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
    best_checkpoint: Optional[Path] = None
    best: Optional[Dict[str, Any]] = None
    untrained: Optional[Dict[str, float]] = None
    deploy_file: Optional[Path] = None
    onnx_file: Optional[Path] = None
    onnx_max_diff: Optional[float] = None
    onnx_skipped: Optional[str] = None
    wall_s: float = 0.0
    world_size: int = 1
    unreadable_images: int = 0
    data_description: str = ""
    class_names: List[str] = field(default_factory=list)
    model_config: Dict[str, Any] = field(default_factory=dict)
    model: Optional[nn.Module] = None
    extras: Dict[str, Any] = field(default_factory=dict)

    def best_model(self) -> Optional[nn.Module]:
        """The trained model with the weights of ``best.pth`` (its last weights when no best was written)."""
        if self.model is not None and self.best_checkpoint is not None:
            self.model.load_state_dict(load_training_checkpoint(self.best_checkpoint)["model"])
        return self.model

    @property
    def best_epoch(self) -> int:
        """The epoch of ``best.pth`` (1-based; 0 when no held-out score was ever better)."""
        return int(self.best["epoch"]) if self.best else 0

    def file_lines(self) -> List[str]:
        """The summary lines naming the files a run wrote: its checkpoints, and the deploy model when made."""
        lines = [f"checkpoints: {self.best_checkpoint} (best), {self.checkpoint} (last)"]
        if self.deploy_file:
            lines.append(f"deploy model: {self.deploy_file}" + (f", ONNX {self.onnx_file}" if self.onnx_file else ""))
        return lines

    @property
    def chance(self) -> Optional[float]:
        """The top-1 of a uniform guess, in percent (None without class names)."""
        return 100.0 / len(self.class_names) if self.class_names else None

    @property
    def speedup(self) -> Optional[float]:
        if self.latency_train_s and self.latency_deploy_s:
            return self.latency_train_s / self.latency_deploy_s
        return None

    def to_dict(self) -> Dict[str, Any]:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items() if k != "model"}
        d["speedup"] = self.speedup
        return d


# ----------------------------------------------------------------------------------------------- building blocks
def amp_dtype_of(amp: str) -> Optional[torch.dtype]:
    """The autocast dtype of ``--amp`` (none / bf16 / fp16)."""
    choices = {"none": None, "": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
               "fp16": torch.float16, "float16": torch.float16}
    if amp not in choices:
        raise ValueError(f"--amp must be none, bf16 or fp16, got {amp!r}")
    return choices[amp]


def build_optimizer(model: nn.Module, cfg: Any, task: Optional[Task] = None) -> torch.optim.Optimizer:
    """``cfg.opt`` (AdamW by default) through timm's factory: no weight decay on 1-D parameters and biases;
    layer decay via the model's ``group_matcher``, or the task's own ``param_groups(model, cfg)`` (each with an
    ``lr_scale`` and ``weight_decay``; the detectors' layer decay)."""
    from timm.optim import create_optimizer_v2

    extra = {"betas": tuple(cfg.opt_betas)} if getattr(cfg, "opt_betas", None) else {}
    groups = task.param_groups(model, cfg) if task is not None else None
    if groups is not None:
        groups = [{k: v for k, v in g.items() if k not in ("lr", "param_names")} for g in groups]
        return create_optimizer_v2(groups, opt=getattr(cfg, "opt", "adamw"), lr=cfg.lr,
                                   weight_decay=cfg.weight_decay, eps=cfg.opt_eps, **extra)
    return create_optimizer_v2(model, opt=getattr(cfg, "opt", "adamw"), lr=cfg.lr, weight_decay=cfg.weight_decay,
                               layer_decay=cfg.layer_decay, eps=cfg.opt_eps, **extra)


def lr_factor(iteration: int, total: int, warmup_iters: int, warmup_ratio: float, schedule: str,
              milestones: Sequence[int] = (), gamma: float = 0.1, power: float = 1.0) -> float:
    """The lr multiplier at ``iteration`` (0-based) of the ``step`` and ``poly`` schedules: a step (× ``gamma`` at
    each of ``milestones``) or poly decay to 0, times a linear warmup from ``warmup_ratio`` over ``warmup_iters``
    (as MMEngine's LinearLR chained with MultiStepLR / PolyLR)."""
    if schedule == "step":
        base = gamma ** sum(1 for m in milestones if iteration >= m)
    elif schedule == "poly":
        base = (1 - min(iteration, total) / max(total, 1)) ** power
    else:
        raise ValueError(f"schedule must be 'step' or 'poly', got {schedule!r}")
    if iteration < warmup_iters:
        base *= warmup_ratio + (1 - warmup_ratio) * iteration / warmup_iters
    return base


class FactorScheduler:
    """Per-step ``lr = base lr × group lr_scale × factor(step)``, with timm's ``step_update`` interface and a
    state dict (for resume)."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, factor: Callable[[int], float]):
        self.optimizer, self.base_lr, self.factor = optimizer, base_lr, factor
        self.step_update(0)

    def step_update(self, num_updates: int, metric: Any = None) -> None:
        f = self.factor(num_updates)
        for g in self.optimizer.param_groups:
            g["lr"] = self.base_lr * g.get("lr_scale", 1.0) * f

    def state_dict(self) -> Dict[str, Any]:
        return {}  # a pure function of the step, which the checkpoint holds

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, steps_per_epoch: int) -> Any:
    """The per-step learning-rate schedule (``cfg.sched``):

    * ``cosine``: linear warmup 0 → lr over ``warmup_epochs``, then cosine to ``min_lr`` (timm; the image recipe);
    * ``step``: × ``decay_rate`` at the end of each of ``decay_epochs`` (default: every epoch from ``decay_start``
      on — the audio recipe; forecasting's halving is decay_start 1, decay_rate 0.5);
    * ``poly``: linear decay to 0 (the segmentation recipe).

    ``step`` and ``poly`` warm up linearly from ``warmup_ratio`` × lr over ``warmup_steps`` steps (or
    ``warmup_epochs``). Call ``step_update(num_updates)`` after every optimizer step (timm's convention).
    """
    from timm.scheduler import CosineLRScheduler

    warmup_steps = getattr(cfg, "warmup_steps", None)
    if warmup_steps is None:
        warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    total_steps = cfg.epochs * steps_per_epoch
    sched = getattr(cfg, "sched", "cosine")
    if sched in ("step", "poly"):
        epochs = getattr(cfg, "decay_epochs", None) or range(max(1, cfg.decay_start), cfg.epochs + 1)
        milestones = [e * steps_per_epoch for e in epochs]
        ratio, rate = getattr(cfg, "warmup_ratio", 0.0), cfg.decay_rate
        return FactorScheduler(optimizer, cfg.lr, lambda t: lr_factor(t, total_steps, warmup_steps, ratio, sched,
                                                                      milestones, rate))
    if sched != "cosine":
        raise ValueError(f"the schedule must be 'cosine', 'step' or 'poly', got {sched!r}")
    return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warmup_steps), lr_min=cfg.min_lr,
                             warmup_t=warmup_steps, warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)


def make_eval_loader(dataset: Dataset, batch_size: int, collate: Optional[Callable], workers: int = 0,
                     dist_info: Optional[DistInfo] = None) -> DataLoader:
    """Held-out batches of this rank: every sample is evaluated exactly once over all ranks."""
    rank, world = (dist_info.rank, dist_info.world_size) if dist_info else (0, 1)
    return DataLoader(dataset, batch_sampler=ShardedEvalSampler(len(dataset), batch_size, rank, world),
                      num_workers=workers, collate_fn=collate or collate_samples, pin_memory=torch.cuda.is_available())


def check_engine_options(cfg: Any) -> None:
    """Refuse option values that would fail (or silently do something else) only after training started."""
    if cfg.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {cfg.epochs} (a run of no epochs would replace the "
                         "deploy file with untrained weights)")
    if cfg.eval_every < 1:
        raise ValueError(f"--eval-every must be at least 1 (evaluate every N epochs; the last epoch is always "
                         f"evaluated), got {cfg.eval_every}")
    if cfg.workers < 0:
        raise ValueError(f"--workers must be 0 (load in the training process) or more, got {cfg.workers}")
    if cfg.warmup_epochs < 0 or (getattr(cfg, "warmup_steps", None) or 0) < 0:
        raise ValueError("the warm-up (--warmup-epochs, --warmup-iters) cannot be negative; 0 = no warm-up")
    if cfg.batch_size < 1 or cfg.accum_steps < 1:
        raise ValueError(f"--batch-size and --accum-steps must be at least 1, got {cfg.batch_size} and {cfg.accum_steps}")
    if cfg.deploy_from_ema and not cfg.model_ema:
        raise ValueError("--deploy-from-ema exports the EMA weights, but --model-ema is off; add --model-ema "
                         "or drop --deploy-from-ema")
    dtype = amp_dtype_of(cfg.amp)
    device = str(cfg.device)
    on_cpu = device == "cpu" or (device in ("", "auto") and not torch.cuda.is_available())
    if dtype == torch.float16 and on_cpu:
        raise ValueError("--amp fp16 needs a CUDA GPU (fp16 autocast and its gradient scaler are GPU features); "
                         "use --amp bf16 on the CPU or --amp none")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device} was asked for but no CUDA GPU is visible; use --device auto or cpu")


# ----------------------------------------------------------------------------------------------- the run folder
def _holds_run(out: Path) -> List[str]:
    return [name for name in RUN_FILES if (out / name).exists()]


def prepare_output(out: Path, resume: Optional[str], overwrite: bool) -> Path:
    """Create ``out``, refuse one that holds another run (unless resuming or ``overwrite``), take its lock file
    (a second process on the same folder is refused) and remove temporary files of killed saves."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--output {out} is a file, not a folder; pass a folder for the run's files")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"cannot create the output folder {out} ({e.strerror or e}); pass another --output") from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunFolderError(f"the output folder {out} is not writable; pass another --output or fix its permissions")
    existing = _holds_run(out)
    if existing and not resume and not overwrite:
        raise RunFolderError(
            f"{out} already holds a run ({', '.join(existing)}); add --resume to continue it, --overwrite to "
            "replace it, or pass another --output")
    _check_run_files(out, existing, resume, overwrite)
    lock = out / LOCK_NAME
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        holder = _lock_holder(lock)
        if holder is not None:
            raise RunFolderError(f"another training process (pid {holder}) is writing to {out}; wait for it or pass "
                                 f"another --output (remove {lock} if that process is gone)") from None
        lock.unlink(missing_ok=True)  # left by a killed run
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    for stale in out.glob(".*.tmp"):  # a save killed mid-write; the lock says no live process owns it
        stale.unlink(missing_ok=True)
    return lock


def _check_run_files(out: Path, existing: List[str], resume: Optional[str], overwrite: bool) -> None:
    """The one write policy in a run folder: no run file written through a symbolic link, and no other run's
    files replaced by resuming a checkpoint from elsewhere (both unless ``--overwrite``)."""
    from ..checkpoint import check_destination

    for name in RUN_FILES + ("metrics.csv", "model.onnx"):
        if (out / name).is_symlink():
            check_destination(out / name, overwrite, "run file")  # a link is refused; with --overwrite replaced
    if existing and resume not in (None, "auto", True) and not overwrite:
        source = Path(str(resume))
        if not (source.parent.exists() and os.path.samefile(source.parent, out)):
            raise RunFolderError(
                f"--resume {resume} belongs to another run folder than --output {out}, which holds a run of its own "
                f"({', '.join(existing)}) that resuming would replace. Pass --output {source.parent} to continue "
                f"that run in its folder, a new --output to continue it there, or --overwrite to replace the run in "
                f"{out}")


def _lock_holder(lock: Path) -> Optional[int]:
    """The pid in ``lock`` when that process still runs, else None."""
    try:
        pid = int(lock.read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


# ----------------------------------------------------------------------------------------------- the loop
def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def fit(task: Task, cfg: Any, callbacks: Sequence[Callable[[EpochEnd], None]] = ()) -> TrainResult:
    """Train ``task`` with the engine options of ``cfg`` (an :class:`~unireplknet.engine.EngineConfig`).

    Runs unchanged under ``torchrun`` (one process per GPU or CPU worker); a run on W ranks with accumulation A
    equals one process with accumulation W·A. ``callbacks`` are called on every rank after each epoch's
    checkpoint is written; raising from one stops the run like a kill would.
    """
    t_start = time.perf_counter()
    check_engine_options(cfg)
    check_input_paths(cfg)  # inputs first: a wrong --data is named as such, not as a clash in --output
    dist_info = init_distributed(cfg.device)
    device, rank, world, main = dist_info.device, dist_info.rank, dist_info.world_size, dist_info.is_main
    if main and cfg.tensorboard:
        tensorboard_writer(required=True)  # say it now, not after the data and model are built
    temp_out = tempfile.mkdtemp(prefix="unireplknet-run-") if cfg.output is None else None
    out = Path(temp_out or cfg.output)
    lock, refusal = None, None
    if main:
        try:
            lock = prepare_output(out, cfg.resume, cfg.overwrite)
        except RunFolderError as e:
            refusal = str(e)
    refusals = [r for r in all_gather_object(refusal) if r]  # every rank stops, not only rank 0
    if refusals:
        raise RunFolderError(refusals[0])
    try:
        return _fit(task, cfg, callbacks, dist_info, out, t_start)
    finally:
        if lock is not None:
            lock.unlink(missing_ok=True)
        if temp_out is not None and main:
            shutil.rmtree(temp_out, ignore_errors=True)


def _resume_path(cfg: Any, out: Path) -> Optional[Path]:
    if not cfg.resume:
        return None
    return out / "last.pth" if cfg.resume in ("auto", True) else Path(cfg.resume)


def _fit(task: Task, cfg: Any, callbacks: Sequence[Callable[[EpochEnd], None]], dist_info: DistInfo, out: Path,
         t_start: float) -> TrainResult:
    device, rank, world, main = dist_info.device, dist_info.rank, dist_info.world_size, dist_info.is_main
    resume_path = _resume_path(cfg, out)
    ckpt = load_training_checkpoint(resume_path, map_location=device) if resume_path is not None else None
    if ckpt is not None and ckpt["model_config"].get("task", "image") != task.name:
        raise ValueError(f"{resume_path} is a checkpoint of the {ckpt['model_config'].get('task', 'image')!r} task, "
                         f"not of {task.name!r}; resume with the command that wrote it")
    if ckpt is not None:
        task.restore(ckpt)  # e.g. data statistics computed by the first run
    # Every rank builds the same data and initial model (and EMA copy) from the same seed ...
    _seed_all(cfg.seed)
    data = task.build_data(cfg, cfg.seed)
    if main and data.description:
        _logger.info("data: %s", data.description)
    amp_dtype = amp_dtype_of(cfg.amp)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    ctx = StepContext(device, channels_last, amp_dtype, dist_info)
    # A resumed run overwrites every weight from its checkpoint: no need to fetch pretrained ones (offline too).
    model = task.build_model(cfg, data, cfg.pretrained and ckpt is None)
    if ckpt is not None:
        task.adapt_to_checkpoint(model, ckpt["model_config"])
    elif cfg.checkpoint:
        task.load_initial_weights(model, cfg.checkpoint)
        if main:
            _logger.info("initialised from %s", cfg.checkpoint)
    model_config = dict(task.model_config(cfg, data, model))
    if cfg.grad_checkpointing:
        if not hasattr(model, "set_grad_checkpointing"):
            raise ValueError(f"--grad-checkpointing: the {task.name} model has no gradient checkpointing")
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

    optimizer = build_optimizer(model, cfg, task)
    # ... then ranks differ in augmentation and drop-path randomness, like independent workers of one big batch.
    _seed_all(cfg.seed + rank)

    train_sampler = ShardedBatchSampler(len(data.train), cfg.batch_size, rank, world, cfg.accum_steps, cfg.seed)
    steps_per_epoch = train_sampler.steps_per_epoch
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training set has {len(data.train)} samples, fewer than one step needs (batch {cfg.batch_size} x "
            f"accumulation {cfg.accum_steps} x {world} processes); lower --batch-size or --accum-steps")
    # warm-up longer than a short run, more loader workers than cores: adapted (and said) in one place
    cfg = adapt_to_machine_and_run(cfg, steps_per_epoch, log=main)
    train_loader = DataLoader(data.train, batch_sampler=train_sampler, num_workers=cfg.workers,
                              collate_fn=data.train_collate or collate_samples, pin_memory=device.type == "cuda",
                              worker_init_fn=data.worker_init_fn if cfg.workers > 0 else None)
    eval_bs = data.eval_batch_size or max(1, int(cfg.batch_size * 1.5))  # the official validation batch
    val_loader = (make_eval_loader(data.val, eval_bs, data.eval_collate, cfg.workers, dist_info)
                  if data.val is not None else None)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    start_epoch, num_updates, best, history, stale = 0, 0, None, [], 0
    fingerprint = data_fingerprint(data.train, data.val)
    if ckpt is not None:  # what defines the run must be what it was started with (field, both values, the fix)
        check_resume_identity(ckpt, dict(model_config=model_config, class_names=list(data.class_names),
                                         data_config=plain(data.data_config), data_fingerprint=fingerprint),
                              resume_path)
        _load_state(model, ckpt["model"], "model")
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if ema is not None:
            if ckpt.get("model_ema") is None:
                raise ValueError(f"{resume_path} has no EMA weights but --model-ema is on; resume without --model-ema")
            _load_state(ema.module, ckpt["model_ema"], "EMA model")
        start_epoch, num_updates, best = int(ckpt["epoch"]), int(ckpt["num_updates"]), ckpt.get("best")
        history, stale = list(ckpt.get("history", [])), int(ckpt.get("stale", 0))
        rng = ckpt.get("rng") or []
        if len(rng) == world:
            set_rng_state(rng[rank])
        else:
            _logger.warning("%s was written by %d processes, this run has %d: random streams restart from the seed",
                            resume_path, len(rng), world)
        scheduler.step_update(num_updates=num_updates)
        if main:
            _logger.info("resumed from %s at epoch %d (%d optimizer steps)", resume_path, start_epoch, num_updates)
        del ckpt

    ddp = None
    if dist_info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # Each rank keeps its own BatchNorm statistics during an epoch; they are averaged at its end.
        buffers = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else "broadcast_buffers")
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=task.find_unused_parameters,
                                      **{buffers: False})

    metric_key = f"val_{task.metric}"
    patience = getattr(cfg, "patience", None)
    higher = task.higher_is_better
    untrained = None
    if getattr(cfg, "eval_at_start", False) and start_epoch == 0 and val_loader is not None:
        untrained = task.evaluate(model, val_loader, ctx)
    logger = MetricsLogger(out, start_epoch, cfg.tensorboard) if main else None
    total_unreadable = 0
    last_path, best_path = out / "last.pth", out / "best.pth"
    metadata = dict(class_names=list(data.class_names), data_config=plain(data.data_config))
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if patience is not None and stale >= patience:
                _logger.info("early stop: no better %s for %d evaluations", metric_key, stale)
                break
            train_sampler.set_epoch(epoch)
            task.start_epoch(epoch)
            stats = _train_one_epoch(task, model, ddp, train_loader, optimizer, scheduler, scaler, ema, cfg, epoch,
                                     num_updates, ctx, cfg.progress and main)
            num_updates = stats.pop("num_updates")
            total_unreadable += stats["unreadable"]
            average_buffers(model)
            row: Dict[str, Any] = dict(epoch=epoch + 1, **stats)
            improved = False
            if val_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                row.update({f"val_{k}": v for k, v in task.evaluate(model, val_loader, ctx).items()
                            if isinstance(v, float)})
                if ema is not None:
                    row.update({f"ema_val_{k}": v for k, v in task.evaluate(ema.module, val_loader, ctx).items()
                                if isinstance(v, float)})
                value = row.get(metric_key)
                if value is not None and (best is None or (value > best[metric_key] if higher
                                                           else value < best[metric_key])):
                    best, improved, stale = {"epoch": epoch + 1, metric_key: value}, True, 0
                else:
                    stale += 1
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
                    rng=rng_states, config=plain(_config_dict(cfg)), model_config=model_config,
                    data_fingerprint=fingerprint, best=best, history=history, stale=stale, **metadata)
                atomic_torch_save(state, last_path)
                del state
                if improved:  # a byte copy of last.pth (atomic too), not a second serialisation
                    with open(last_path, "rb") as src:
                        atomic_write(best_path, lambda f: shutil.copyfileobj(src, f))
            barrier()
            for cb in callbacks:
                cb(EpochEnd(epoch + 1, row, last_path if main else None, model))
    finally:
        if logger is not None:
            logger.close()

    result = TrainResult(output=out, epochs=len(history), history=history, train_structure={},
                         checkpoint=last_path if main else None, world_size=world, best=best, untrained=untrained,
                         best_checkpoint=best_path if main and best_path.exists() else None,
                         unreadable_images=total_unreadable, data_description=data.description,
                         class_names=list(data.class_names), model_config=model_config)
    final = ema.module if (ema is not None and cfg.deploy_from_ema) else model
    result.params_train = sum(p.numel() for p in final.parameters())
    if val_loader is not None:
        result.train_structure = task.evaluate(final, val_loader, ctx)
    if cfg.export_deploy:
        _finish_deploy(task, final, cfg, data, val_loader, ctx, main, result, out,
                       dict(metadata, model_config=model_config))
    result.wall_s = time.perf_counter() - t_start
    result.model = model
    if main:
        atomic_write_bytes(out / "summary.json", json.dumps(result.to_dict(), indent=2, default=str).encode("utf-8"))
    if dist_info.initialized_here:
        barrier()
        torch.distributed.destroy_process_group()
    return result


def _config_dict(cfg: Any) -> Dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(vars(cfg))


def _train_one_epoch(task: Task, model: nn.Module, ddp: Optional[nn.Module], loader: DataLoader,
                     optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Optional[Any], ema: Optional[Any],
                     cfg: Any, epoch: int, num_updates: int, ctx: StepContext, show_progress: bool) -> Dict[str, Any]:
    from tqdm.auto import tqdm

    net = ddp if ddp is not None else model
    net.train()
    accum = cfg.accum_steps
    loss_sum, micro, samples, unreadable = 0.0, 0, 0, 0
    parts: Dict[str, float] = {}
    # The bar is transient (leave=False): the epoch's one lasting report is the log line written after it.
    bar = tqdm(total=len(loader) // accum, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
               disable=not show_progress, dynamic_ncols=True, leave=False)
    t0 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(loader):
        last_micro = (i + 1) % accum == 0
        # Gradients are all-reduced only on the last micro-batch of a step (DDP no_sync for the others).
        sync = ddp.no_sync() if (ddp is not None and not last_micro) else _null()
        with sync:
            with ctx.autocast():
                step = task.training_loss(net, batch, ctx)
            loss_value = float(step.loss.detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"loss is {loss_value} at epoch {epoch + 1}, micro-batch {i}; lower --lr, use --amp none "
                    "or --clip-grad, or resume from the last good checkpoint")
            scaled = step.loss / accum
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += loss_value
        for k, v in step.parts.items():
            parts[k] = parts.get(k, 0.0) + float(v)
        micro += 1
        samples += step.samples
        unreadable += step.unreadable
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
    keys = sorted(parts)
    loss_sum, micro, samples, unreadable, *part_sums = all_reduce_sum(
        [loss_sum, micro, samples, unreadable] + [parts[k] for k in keys], ctx.device)
    return dict(train_loss=loss_sum / max(micro, 1), **{f"train_{k}": v / max(micro, 1) for k, v in zip(keys, part_sums)},
                num_updates=num_updates, samples_per_s=samples / elapsed, epoch_s=elapsed, unreadable=int(unreadable),
                lr=max(g["lr"] for g in optimizer.param_groups))


def _null():
    import contextlib

    return contextlib.nullcontext()


def _load_state(model: nn.Module, state: Dict[str, torch.Tensor], what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"the {what} in the checkpoint does not fit the model built from these options: {e}") from e


def _finish_deploy(task: Task, final: nn.Module, cfg: Any, data: TaskData, val_loader: Optional[DataLoader],
                   ctx: StepContext, main: bool, result: TrainResult, out: Path, metadata: Dict[str, Any]) -> None:
    """Re-parameterize a copy of the trained model, check it scores the same, time both, write the files."""
    from ..model import reparameterize

    example = task.deploy_example(data)
    inputs = (tuple(example) if isinstance(example, (tuple, list)) else (example,)) if example is not None else ()
    train_net = final.eval()
    deploy = reparameterize(copy.deepcopy(train_net), inplace=True).eval()
    result.params_deploy = sum(p.numel() for p in deploy.parameters())
    if val_loader is not None:
        result.deploy_structure = task.evaluate(deploy, val_loader, ctx)
    if inputs:
        xs = tuple(ctx.to_device(x, image=True) for x in inputs)
        with torch.no_grad():
            result.max_logit_diff = float((train_net(*xs).float() - deploy(*xs).float()).abs().max())
        if not math.isfinite(result.max_logit_diff):
            raise FloatingPointError("the trained model gives non-finite outputs; no deploy file written")
        if main and len(xs) == 1:
            from .benchmark import compare_latency

            result.latency_train_s, result.latency_deploy_s = compare_latency([train_net, deploy], xs[0])
    if not main:
        return
    from ..checkpoint import save_model
    from ..model import UniRepLKNet

    cpu_deploy = copy.deepcopy(deploy).to("cpu", memory_format=torch.contiguous_format)
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    if isinstance(cpu_deploy, UniRepLKNet):  # load_model rebuilds it from the file alone
        result.deploy_file = save_model(cpu_deploy, out / "deploy.safetensors", metadata=meta)
    else:  # a task model around the backbone: its model_config (in the metadata) says how to rebuild it
        from safetensors.torch import save

        tensors = {k: v.detach().contiguous() for k, v in cpu_deploy.state_dict().items()}
        result.deploy_file = atomic_write_bytes(out / "deploy.safetensors", save(tensors, dict(meta, format="pt")))
    if cfg.export_onnx:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            result.onnx_skipped = "onnxruntime not installed (pip install 'unireplknet[onnx]')"
            return
        info = task.export_onnx(cpu_deploy, out / "model.onnx", inputs)  # a detector: its own graph and check
        if info is None:
            result.onnx_skipped = f"the {task.name} task gives no example input (deploy_example); no ONNX export"
        else:
            result.onnx_file, result.onnx_max_diff = info["path"], info["max_abs_diff"]
