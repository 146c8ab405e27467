"""Image classification: ``unireplknet train`` / ``eval`` (usable from Python as well).

:class:`ImageClassification` supplies the image folder (or the embedded digits), the UniRepLKNet, the
mixup/cutmix + label-smoothing loss and the top-1/top-5 evaluation; :func:`unireplknet.engine.fit` does the
rest (see :mod:`unireplknet.engine.loop`). :func:`train` is ``fit(ImageClassification(), cfg)``.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...data import DataError, build_data
from ...engine.distributed import all_reduce_sum
from ...engine.loop import EpochEnd, TrainResult, fit
from ...engine.task import StepContext, StepOutput, Task, TaskData
from ...factory import adapt_stem_to_input_channels, build_model
from .config import TrainConfig

__all__ = ["ImageClassification", "evaluate", "train"]

_logger = logging.getLogger(__name__)


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

    Batches are :class:`~unireplknet.engine.Batch` objects (``inputs``: the images); unreadable images were
    already left out by the collate function and are counted in ``unreadable``.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    loss_sum = top1 = top5 = n = unreadable = 0.0
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        images, targets = batch.inputs, batch.targets
        unreadable += batch.unreadable
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


# ----------------------------------------------------------------------------------------------- training
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


class ImageClassification(Task):
    """The image task: an image folder or the embedded digits, a UniRepLKNet (a variant or ``custom``), the
    official mixup/cutmix + label-smoothing loss and top-1/top-5 accuracy (paper, section 4)."""

    name = "image"
    metric = "top1"
    higher_is_better = True

    def __init__(self) -> None:
        self.mixup: Any = None
        self.criterion: Optional[nn.Module] = None
        self.test: Any = None
        self.val: Any = None
        self.test_collate: Any = None

    def build_data(self, cfg: TrainConfig, seed: int) -> TaskData:
        if cfg.input_size is not None and cfg.input_size < 1:
            raise ValueError(f"--input-size must be a positive number of pixels, got {cfg.input_size}")
        aug = dict(hflip=cfg.hflip, color_jitter=cfg.color_jitter, auto_augment=cfg.auto_augment,
                   train_interpolation=cfg.interpolation, reprob=cfg.reprob, remode=cfg.remode, recount=cfg.recount,
                   crop_padding=cfg.crop_padding)
        bundle = build_data(cfg.data, cfg.input_size, cfg.in_chans, cfg.val_split, seed, cfg.crop_pct,
                            cfg.interpolation, aug=aug, train_augment=cfg.train_augment, class_names=cfg.class_names,
                            fit=cfg.fit)
        self.test, self.val = bundle.extra.get("test"), bundle.val
        self.test_collate = bundle.eval_collate  # an IDX folder's t10k split: scored once, after training
        num_classes = cfg.num_classes or len(bundle.class_names)
        if num_classes != len(bundle.class_names):
            raise DataError(f"--num-classes {cfg.num_classes} but the data has {len(bundle.class_names)} classes")
        self.in_chans = bundle.in_chans
        self.mixup, self.criterion = _criterion(cfg, num_classes)
        return TaskData(bundle.train, bundle.val, bundle.train_collate, bundle.eval_collate, bundle.description,
                        list(bundle.class_names), dict(bundle.data_config))

    def build_model(self, cfg: TrainConfig, data: TaskData, pretrained: bool) -> nn.Module:
        model = build_model(cfg.model, len(data.class_names), self.in_chans, cfg.model_kwargs, pretrained,
                            drop_path_rate=cfg.drop_path, layer_scale_init_value=cfg.layer_scale_init_value,
                            head_init_scale=cfg.head_init_scale)
        from ...limits import activation_bytes, check_memory

        size = data.data_config["input_size"]  # a training step keeps every block's activations
        check_memory(activation_bytes(size, getattr(model, "dims", None) or (64, 128, 256, 512), cfg.batch_size,
                                      training=True), f"training at {size[-2]}×{size[-1]} pixels, batch "
                     f"{cfg.batch_size}", "choose a smaller --input-size or --batch-size")
        return model

    def load_initial_weights(self, model: nn.Module, path: str) -> None:
        """``--checkpoint``: any UniRepLKNet file; an RGB stem is adapted to grey input, a deploy-layout file
        re-parameterizes the model first (its branches cannot be recovered)."""
        from ...checkpoint import CheckpointMismatchError, load_checkpoint

        source = adapt_stem_to_input_channels(path, model)
        try:
            load_checkpoint(model, source, drop_mismatched_head=True)
        except CheckpointMismatchError as e:
            if isinstance(source, dict):  # the message names "the state dict": say which file it came from
                raise CheckpointMismatchError(f"{path}: {e}") from None
            raise
        if getattr(model, "deploy", False):
            _logger.warning(
                "%s is a deploy (re-parameterized) checkpoint: fine-tuning continues in the deploy structure "
                "(one fused kernel per block, no parallel dilated branches or block BatchNorms); start from "
                "the training checkpoint (e.g. last.pth) to train the Dilated Reparam Blocks", path)

    def adapt_to_checkpoint(self, model: nn.Module, model_config: Dict[str, Any]) -> None:
        """A run fine-tuned from a deploy file trained the deploy structure: rebuild that before resuming."""
        if model_config.get("deploy") and not getattr(model, "deploy", False):
            from ...model import reparameterize

            reparameterize(model)

    def model_config(self, cfg: TrainConfig, data: TaskData, model: nn.Module) -> Dict[str, Any]:
        return _model_config(cfg, len(data.class_names), self.in_chans, deploy=getattr(model, "deploy", False))

    def training_loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        images, targets = ctx.to_device(batch.inputs, image=True), ctx.to_device(batch.targets)
        if self.mixup is not None:
            images, targets = self.mixup(images, targets)
        return StepOutput(self.criterion(model(images), targets), images.shape[0], batch.unreadable)

    def evaluate(self, model: nn.Module, loader: Any, ctx: StepContext) -> Dict[str, float]:
        return evaluate(model, loader, ctx.device, ctx.amp_dtype, ctx.channels_last)

    def deploy_example(self, data: TaskData) -> Optional[torch.Tensor]:
        return torch.randn(2, *data.data_config["input_size"])


def train(cfg: TrainConfig, callbacks: Sequence[Callable[[EpochEnd], None]] = ()) -> TrainResult:
    """Train an image classifier on the engine (:func:`unireplknet.engine.fit`): checkpoints every epoch, then
    re-parameterizes, verifies and exports (``deploy.safetensors``, ``model.onnx``).

    Data with a test split (an IDX folder's ``t10k``) is scored once after training, with the weights of
    ``best.pth`` (chosen on the validation split held out of train), as the time-series task does; ``extras``
    then holds ``val`` and ``test`` (``top1``, ``top5``, ``loss``, ``images``) and, when the run kept an EMA,
    ``test_ema`` (the EMA weights of the same checkpoint). They are added to ``OUTPUT/summary.json`` too.
    """
    task = ImageClassification()
    r = fit(task, cfg, callbacks)
    if task.test is not None and cfg.evaluate_test and r.model is not None:
        r.extras.update(_score_best_on_test(task, cfg, r))
        if r.checkpoint is not None:  # rank 0: the run folder's record gets the test scores too
            import json

            from ...checkpoint import atomic_write_bytes

            atomic_write_bytes(Path(r.output) / "summary.json",
                               json.dumps(r.to_dict(), indent=2, default=str).encode("utf-8"))
    return r


def _score_best_on_test(task: ImageClassification, cfg: TrainConfig, r: TrainResult) -> Dict[str, Any]:
    import copy

    from ...engine import make_eval_loader
    from ...engine.checkpointing import load_training_checkpoint
    from ...engine.loop import amp_dtype_of

    model = r.best_model()
    device = next(model.parameters()).device
    batch = max(cfg.batch_size, 64) * 2
    test_loader = make_eval_loader(task.test, batch, task.test_collate, 0)
    score = lambda m, loader: evaluate(m, loader, device, amp_dtype_of(cfg.amp))  # noqa: E731
    out: Dict[str, Any] = dict(best_epoch=r.best_epoch, test=score(model, test_loader), test_ema=None, val=None)
    if task.val is not None:
        out["val"] = score(model, make_eval_loader(task.val, batch, task.test_collate, 0))
    if cfg.model_ema and r.best_checkpoint is not None:
        ema_state = load_training_checkpoint(r.best_checkpoint).get("model_ema")
        if ema_state is not None:
            ema = copy.deepcopy(model)
            ema.load_state_dict(ema_state)
            out["test_ema"] = score(ema, test_loader)
    _logger.info("test split, best epoch %d: top-1 %.2f%%", r.best_epoch, out["test"]["top1"])
    return out
