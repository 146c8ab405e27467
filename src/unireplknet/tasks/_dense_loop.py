"""Training and evaluation of detectors and segmenters (``unireplknet det-train`` / ``seg-train`` …).

The image engine (:func:`unireplknet.engine.train`) trains classifiers: one tensor batch in, logits out, a
cross-entropy or mixup loss and top-1 accuracy. Detection and segmentation differ in all of those (lists of
images with box/mask targets, the model computes its own losses, COCO mAP / mIoU, layer-decay groups with a
``backbone.`` prefix, warmup + step / poly schedules per iteration), so this module is a thin task loop on the
engine's building blocks: process-group set-up under torchrun (:func:`~unireplknet.engine.init_distributed`),
the seeded sharded batch sampler (:class:`~unireplknet.engine.ShardedBatchSampler`), atomic checkpoints with
per-rank RNG state (:func:`~unireplknet.engine.atomic_torch_save`), ``average_buffers`` after every epoch and
the metrics CSV/TensorBoard logger.

Defaults are the official recipes (SPEC section 5): AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05, no
weight decay on 1-D parameters and biases, layer-wise lr decay with ``num_layers`` 12; detection: 36 epochs,
linear warmup 500 iterations from ratio 1e-3, lr × 0.1 after epochs 27 and 33; segmentation: poly decay (power 1)
to 0 with linear warmup 1500 iterations from ratio 1e-6. ``--data scenes`` selects the generated scene set
with light defaults for a CPU demo (:data:`SCENES_DETECTION` / :data:`SCENES_SEGMENTATION`).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from ._epoch_loop import optimizer_step

__all__ = [
    "DenseTrainConfig",
    "DETECTION_DEFAULTS",
    "SEGMENTATION_DEFAULTS",
    "SCENES_DETECTION",
    "SCENES_SEGMENTATION",
    "train_dense",
    "evaluate_dense",
    "load_dense_model",
    "lr_factor",
    "DENSE_CHECKPOINT_FORMAT",
]

_logger = logging.getLogger(__name__)

DENSE_CHECKPOINT_FORMAT = "unireplknet-dense-v1"

#: A four-stage UniRepLKNet small enough for 64×64 scenes on two CPU cores; stage maps 16, 8, 4, 2 pixels.
SCENES_MODEL_KWARGS: Dict[str, Any] = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128),
                                           kernel_sizes=((7,), (7,), (5, 5), (3,)))


@dataclass
class DenseTrainConfig:
    """Every option of :func:`train_dense`; ``None`` fields take the task's defaults (:meth:`resolved`)."""

    task: str = "detection"  # detection | segmentation
    data: str = "scenes"  # 'scenes' or a data root (COCO / ADE20K layout)
    output: str = "runs/dense"
    # model
    model: str = "unireplknet_t"
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    checkpoint: Optional[str] = None
    num_classes: Optional[int] = None
    detector: str = "maskrcnn"
    head_kwargs: Dict[str, Any] = field(default_factory=dict)
    drop_path: Optional[float] = None
    with_cp: bool = False
    # optimisation
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    betas: Tuple[float, float] = (0.9, 0.999)
    layer_decay: Optional[float] = None
    num_layers: int = 12
    decay_type: str = "layer_wise"
    warmup_iters: Optional[int] = None
    warmup_ratio: Optional[float] = None
    schedule: Optional[str] = None  # step | poly
    step_epochs: Tuple[int, ...] = ()
    clip_grad: Optional[float] = None
    # data
    min_size: Optional[int] = None  # detection: resize shorter side to this (torchvision transform)
    max_size: Optional[int] = None
    crop_size: Optional[int] = None  # segmentation training crop
    short_side: Optional[int] = None  # segmentation: resize shorter side before the random scale
    scale_range: Optional[Tuple[float, float]] = None
    hflip: float = 0.5
    scenes_train: Optional[int] = None  # generated training scenes (--data scenes; default per task)
    scenes_val: int = 100
    scene_size: int = 64
    # execution
    device: str = "auto"
    seed: int = 0
    workers: int = 0
    eval_every: int = 1
    eval_at_start: bool = False
    eval_batch_size: int = 8
    resume: Optional[str] = None
    export_onnx: bool = True
    tensorboard: Optional[bool] = False

    def resolved(self) -> "DenseTrainConfig":
        """A copy with every ``None`` option filled from the task (and scene-demo) defaults."""
        if self.task not in ("detection", "segmentation"):
            raise ValueError(f"task must be 'detection' or 'segmentation', got {self.task!r}")
        defaults = dict(DETECTION_DEFAULTS if self.task == "detection" else SEGMENTATION_DEFAULTS)
        if self.task == "detection" and self.detector == "cascade_mask_rcnn" and self.data != "scenes":
            from .cascade import cascade_recipe  # the paper's per-variant Cascade Mask R-CNN recipe

            defaults.update(cascade_recipe(self.model))
        if self.data == "scenes":
            defaults.update(SCENES_DETECTION if self.task == "detection" else SCENES_SEGMENTATION)
        cfg = copy.deepcopy(self)
        for k, v in defaults.items():
            if k == "model_kwargs":
                if not cfg.model_kwargs and cfg.model == "custom":
                    cfg.model_kwargs = dict(v)
            elif k == "model":
                if self.model == DenseTrainConfig.model:  # not chosen by the caller
                    cfg.model = v
            elif k == "head_kwargs":
                cfg.head_kwargs = {**v, **cfg.head_kwargs}
            elif getattr(cfg, k) is None or (k == "step_epochs" and not cfg.step_epochs):
                setattr(cfg, k, v)
        if cfg.model == "custom" and not cfg.model_kwargs:
            raise ValueError("--model custom needs --model-kwargs (depths, dims, kernel_sizes)")
        return cfg

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d))  # tuples → lists: plain types for weights_only checkpoints


#: The official COCO recipe (Cascade Mask R-CNN 3×, UniRepLKNet-T in1k row).
DETECTION_DEFAULTS: Dict[str, Any] = dict(
    lr=1e-4, weight_decay=0.05, epochs=36, batch_size=2, layer_decay=0.8, drop_path=0.3, warmup_iters=500, warmup_ratio=1e-3,
    schedule="step", step_epochs=(27, 33), min_size=800, max_size=1333, head_kwargs={},
)
#: The official ADE20K recipe (UperNet 160k, UniRepLKNet-T 512 row: no layer decay, drop path 0.2).
SEGMENTATION_DEFAULTS: Dict[str, Any] = dict(
    lr=1e-4, weight_decay=0.05, epochs=128, batch_size=2, layer_decay=1.0, drop_path=0.2, warmup_iters=1500, warmup_ratio=1e-6,
    schedule="poly", crop_size=512, short_side=512, scale_range=(0.5, 2.0), head_kwargs={},
)
#: The generated scenes: a tiny network, small heads, 64-pixel images. What the demo needs is optimizer steps
#: and fresh scenes (docs/dense.md, measured with one thread): 3 epochs of 320 scenes (240 steps) left the
#: detector at box AP50 3.5 — it takes off only in the few hundred steps after — and 50 epochs of 320 scenes
#: gave the segmenter 75 mIoU where 10 epochs of 1600 scenes (the same 4000 steps and CPU time) give 88.
#: Detection: 10 epochs of 640 scenes (1600 steps; box AP50 93), segmentation: 10 epochs of 1600 scenes;
#: about five CPU-minutes each.
SCENES_DETECTION: Dict[str, Any] = dict(
    model="custom", model_kwargs=SCENES_MODEL_KWARGS, scenes_train=640, epochs=10, batch_size=4, lr=2e-3,
    layer_decay=1.0, drop_path=0.0, warmup_iters=20, warmup_ratio=1e-3, step_epochs=(8, 9), min_size=64, max_size=64,
    head_kwargs=dict(fpn_channels=32, anchor_sizes=(8, 16, 32, 64, 128), box_head_convs=1, box_head_channels=32,
                     representation_size=128, mask_head_channels=32,
                     # at most 3 objects in 64x64 pixels: far fewer proposals and sampled RoIs than for COCO
                     rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=300,
                     rpn_post_nms_top_n_test=100, rpn_batch_size_per_image=64, box_batch_size_per_image=64,
                     box_detections_per_img=20, box_score_thresh=0.01),
)
SCENES_SEGMENTATION: Dict[str, Any] = dict(
    model="custom", model_kwargs=SCENES_MODEL_KWARGS, scenes_train=1600, epochs=10, batch_size=4, lr=2e-3,
    layer_decay=1.0, drop_path=0.0, warmup_iters=20, warmup_ratio=1e-3, crop_size=None, short_side=None, scale_range=None,
    head_kwargs=dict(channels=64, aux_channels=32),
)


def lr_factor(iteration: int, total: int, warmup_iters: int, warmup_ratio: float, schedule: str,
              milestones: Tuple[int, ...] = (), gamma: float = 0.1, power: float = 1.0) -> float:
    """The lr multiplier at ``iteration`` (0-based): linear warmup from ``warmup_ratio``, then step or poly.

    As MMEngine's LinearLR + MultiStepLR (detection) and LinearLR + PolyLR to 0 (segmentation).
    """
    if schedule == "step":
        base = gamma ** sum(1 for m in milestones if iteration >= m)
    elif schedule == "poly":
        base = (1 - min(iteration, total) / max(total, 1)) ** power
    else:
        raise ValueError(f"schedule must be 'step' or 'poly', got {schedule!r}")
    if iteration < warmup_iters:
        base *= warmup_ratio + (1 - warmup_ratio) * iteration / warmup_iters
    return base


# ----------------------------------------------------------------------------------------------- tasks
@dataclass
class _Task:
    model: nn.Module
    train_set: Any
    val_set: Any
    collate: Callable
    loss: Callable[[nn.Module, Any, torch.device], Dict[str, torch.Tensor]]
    evaluate: Callable[[nn.Module, Any], Dict[str, Any]]
    key_metric: str
    class_names: List[str]
    export: Callable[[nn.Module, Path], Dict[str, Any]]
    backbone_prefix: str
    find_unused: bool


def _data_paths(cfg: DenseTrainConfig, main: bool) -> Path:
    """The data root; for 'scenes' the generated set is written (once, by rank 0) under the output folder."""
    from ..data import scenes as scene_data
    from ..engine.distributed import barrier

    if cfg.data != "scenes":
        return Path(cfg.data)
    root = Path(cfg.output) / "scenes"
    marker = root / f"{cfg.task}-{cfg.scenes_train}-{cfg.scenes_val}-{cfg.scene_size}-{cfg.seed}.done"
    if main and not marker.exists():
        for split, n in (("train", cfg.scenes_train), ("val", cfg.scenes_val)):
            if cfg.task == "detection":
                scene_data.write_coco(root, split, n, seed=cfg.seed, size=cfg.scene_size)
            else:
                scene_data.write_ade20k(root, split, n, seed=cfg.seed, size=cfg.scene_size)
        marker.write_text("ok")
    barrier()
    return root


def _coco_files(root: Path, split: str) -> Tuple[Path, Path]:
    """``annotations/instances_<split>.json`` + ``<split>/`` (also the COCO 2017 names ``train2017``/``val2017``)."""
    for name in (split, f"{split}2017"):
        ann, images = root / "annotations" / f"instances_{name}.json", root / name
        if ann.exists():
            return images, ann
    raise FileNotFoundError(
        f"no COCO annotation file for split {split!r} under {root}: expected annotations/instances_{split}.json "
        f"(or instances_{split}2017.json) and the images in {root / split}/"
    )


def _head_kwargs_for(detector: str, head_kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The head options that apply to ``detector`` (the scene defaults are written for Mask R-CNN)."""
    head = dict(head_kwargs)
    if detector not in ("maskrcnn", "cascade_mask_rcnn"):
        head.pop("mask_head_channels", None)
    if detector in ("retinanet", "fcos"):
        for k in list(head):
            if k.startswith(("rpn_", "box_")) or k == "representation_size":
                head.pop(k)
        if detector == "fcos" and head.get("fpn_channels", 256) % 32:
            head["fpn_channels"] = 32 * max(1, round(head["fpn_channels"] / 32))
    return head


def _detection_task(cfg: DenseTrainConfig, root: Path, device: torch.device) -> _Task:
    from . import detection as det

    train_images, train_ann = _coco_files(root, "train")
    val_images, val_ann = _coco_files(root, "val")
    with_masks = cfg.detector in det.MASK_DETECTORS
    train_set = det.CocoDetectionDataset(train_images, train_ann, masks=with_masks, num_classes=cfg.num_classes,
                                         hflip=cfg.hflip, seed=cfg.seed)
    if cfg.detector == "cascade_mask_rcnn" and cfg.data != "scenes":
        from .cascade import DetrStyleCrop  # the recipe's DETR-style resize + crop branch (p 0.5)

        train_set = DetrStyleCrop(train_set, seed=cfg.seed)
    val_set = det.CocoDetectionDataset(val_images, val_ann, masks=False, num_classes=cfg.num_classes)
    if val_set.cat_ids != train_set.cat_ids:
        raise det.DetectionDataError(f"{train_ann} and {val_ann} have different categories "
                                     f"({train_set.cat_ids} vs {val_set.cat_ids})")
    num_classes = cfg.num_classes or train_set.num_classes
    head = _head_kwargs_for(cfg.detector, cfg.head_kwargs)
    model = det.build_detector(cfg.detector, cfg.model, num_classes, checkpoint=cfg.checkpoint,
                               model_kwargs=cfg.model_kwargs or None, drop_path_rate=cfg.drop_path,
                               with_cp=cfg.with_cp, min_size=cfg.min_size, max_size=cfg.max_size, **head)

    def loss(net: nn.Module, batch: Any, dev: torch.device) -> Dict[str, torch.Tensor]:
        images, targets = batch
        images = [im.to(dev) for im in images]
        targets = [{k: v.to(dev) for k, v in t.items()} for t in targets]
        return net(images, targets)

    def evaluate(net: nn.Module, dist_info: Any) -> Dict[str, Any]:
        return det.coco_evaluate(net, val_set, cfg.eval_batch_size, device, dist_info)

    def export(net: nn.Module, path: Path) -> Dict[str, Any]:
        size = cfg.min_size or 800
        return det.export_onnx(net, path, image_size=(size, size))

    return _Task(model, train_set, val_set, det.detection_collate, loss, evaluate, "box_AP",
                 train_set.class_names, export, "backbone.body.", find_unused=True)


def _segmentation_task(cfg: DenseTrainConfig, root: Path, device: torch.device) -> _Task:
    from . import segmentation as seg

    train_set = seg.ADE20KDataset(root, "training", num_classes=cfg.num_classes, crop_size=cfg.crop_size,
                                  hflip=cfg.hflip, scale_range=cfg.scale_range, short_side=cfg.short_side,
                                  seed=cfg.seed)
    val_set = seg.ADE20KDataset(root, "validation", num_classes=cfg.num_classes, short_side=cfg.short_side)
    num_classes = cfg.num_classes or (len(train_set.class_names) if train_set.class_names else None)
    if num_classes is None:
        raise seg.SegmentationDataError(f"{root} has no classes.json: pass --num-classes (150 for ADE20K)")
    train_set.num_classes = val_set.num_classes = num_classes
    model = seg.upernet(cfg.model, num_classes, checkpoint=cfg.checkpoint, model_kwargs=cfg.model_kwargs or None,
                        drop_path_rate=cfg.drop_path, with_cp=cfg.with_cp, **cfg.head_kwargs)

    def loss(net: nn.Module, batch: Any, dev: torch.device) -> Dict[str, torch.Tensor]:
        images, labels = batch
        logits, aux = net(images.to(dev), with_aux=True)
        return seg.segmentation_loss(logits, labels.to(dev), aux)

    def evaluate(net: nn.Module, dist_info: Any) -> Dict[str, Any]:
        return seg.evaluate_miou(net, val_set, num_classes, cfg.eval_batch_size, device, dist_info)

    def export(net: nn.Module, path: Path) -> Dict[str, Any]:
        image, _ = val_set[0]
        return seg.export_onnx(net, path, image_size=tuple(image.shape[-2:]))

    names = train_set.class_names or [str(i) for i in range(num_classes)]
    return _Task(model, train_set, val_set, seg.segmentation_collate, loss, evaluate, "mIoU", names, export,
                 "backbone.", find_unused=False)


def _build_task(cfg: DenseTrainConfig, root: Path, device: torch.device) -> _Task:
    return (_detection_task if cfg.task == "detection" else _segmentation_task)(cfg, root, device)


# ----------------------------------------------------------------------------------------------- training
def train_dense(cfg: DenseTrainConfig) -> Dict[str, Any]:
    """Train a detector or segmenter, evaluate every ``eval_every`` epochs, checkpoint every epoch, then
    re-parameterize, check the deploy model scores the same and export it (state dict + ONNX).

    Works under ``torchrun``. Returns a summary (also written to ``<output>/summary.json``).
    """
    import random

    import numpy as np

    from ..engine.checkpointing import atomic_torch_save, get_rng_state, set_rng_state
    from ..engine.distributed import all_gather_object, all_reduce_sum, average_buffers, barrier, init_distributed
    from ..engine.metrics_log import MetricsLogger
    from ..engine.samplers import ShardedBatchSampler
    from .mm import layer_decay_param_groups

    t_start = time.perf_counter()
    cfg = cfg.resolved()
    dist_info = init_distributed(cfg.device)
    device, rank, world, main = dist_info.device, dist_info.rank, dist_info.world_size, dist_info.is_main
    out = Path(cfg.output)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    root = _data_paths(cfg, main)
    task = _build_task(cfg, root, device)
    torch.manual_seed(cfg.seed + rank)  # ranks differ in drop-path randomness
    model = task.model.to(device)
    if dist_info.distributed and device.type == "cuda" and cfg.task == "detection" and cfg.detector == "cascade_mask_rcnn":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # the recipe's SyncBN (backbone and box heads)
    groups = layer_decay_param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay, cfg.num_layers,
                                      cfg.decay_type, prefix=task.backbone_prefix)
    for g in groups:
        g.pop("param_names")
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)

    sampler = ShardedBatchSampler(len(task.train_set), cfg.batch_size, rank, world, 1, cfg.seed)
    steps_per_epoch = sampler.steps_per_epoch
    if steps_per_epoch == 0:
        raise ValueError(f"the training set has {len(task.train_set)} images, fewer than one step needs "
                         f"(batch {cfg.batch_size} x {world} processes); lower --batch-size")
    total = steps_per_epoch * cfg.epochs
    milestones = tuple(e * steps_per_epoch for e in cfg.step_epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(
        it, total, cfg.warmup_iters, cfg.warmup_ratio, cfg.schedule, milestones))
    loader = DataLoader(task.train_set, batch_sampler=sampler, collate_fn=task.collate, num_workers=cfg.workers)

    start_epoch, history, best = 0, [], None
    ckpt_path = out / "last.pth"
    if cfg.resume:
        path = ckpt_path if cfg.resume == "auto" else Path(cfg.resume)
        ckpt = _read_checkpoint(path, device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, history, best = int(ckpt["epoch"]), list(ckpt["history"]), ckpt.get("best")
        if len(ckpt.get("rng", [])) == world:
            set_rng_state(ckpt["rng"][rank])
        if main:
            _logger.info("resumed from %s at epoch %d", path, start_epoch)

    net: nn.Module = model
    if dist_info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      broadcast_buffers=False, find_unused_parameters=task.find_unused)
    logger = MetricsLogger(out, start_epoch, cfg.tensorboard) if main else None
    untrained: Optional[Dict[str, Any]] = None
    if cfg.eval_at_start and start_epoch == 0:
        untrained = _plain_metrics(task.evaluate(model, dist_info))
        if main:
            _logger.info("untrained model: %s %.2f", task.key_metric, untrained[task.key_metric])
    try:
        for epoch in range(start_epoch, cfg.epochs):
            sampler.set_epoch(epoch)
            net.train()
            t0 = time.perf_counter()
            sums: Dict[str, float] = {}
            steps = 0
            for batch in loader:
                losses = task.loss(net, batch, device)
                value = optimizer_step(model, optimizer, sum(losses.values()), epoch, clip_grad=cfg.clip_grad,
                                       advice="lower --lr or use --clip-grad")
                scheduler.step()
                steps += 1
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                sums["loss"] = sums.get("loss", 0.0) + value
            keys = sorted(sums)
            reduced = all_reduce_sum([sums[k] for k in keys] + [steps], device)
            row: Dict[str, Any] = {"epoch": epoch + 1, **{k: v / max(reduced[-1], 1) for k, v in zip(keys, reduced)},
                                   "epoch_s": time.perf_counter() - t0,
                                   "lr": max(g["lr"] for g in optimizer.param_groups)}
            average_buffers(model)
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                metrics = _plain_metrics(task.evaluate(model, dist_info))
                row.update({f"val_{k}": v for k, v in metrics.items() if isinstance(v, float)})
                if best is None or metrics[task.key_metric] > best["value"]:
                    best = dict(epoch=epoch + 1, value=metrics[task.key_metric])
            history.append(row)
            rng = all_gather_object(get_rng_state())
            if main:
                logger.log(row)
                _logger.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                             ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
                atomic_torch_save(dict(format=DENSE_CHECKPOINT_FORMAT, task=cfg.task, epoch=epoch + 1,
                                       model=model.state_dict(), optimizer=optimizer.state_dict(),
                                       scheduler=scheduler.state_dict(), rng=rng, config=cfg.to_dict(),
                                       class_names=list(task.class_names), history=history, best=best), ckpt_path)
            barrier()
    finally:
        if logger is not None:
            logger.close()

    summary: Dict[str, Any] = dict(task=cfg.task, epochs=cfg.epochs, world_size=world, untrained=untrained,
                                   final=_plain_metrics(history[-1]) if history else None, best=best,
                                   key_metric=task.key_metric, checkpoint=str(ckpt_path))
    summary.update(_finish_deploy(model, task, cfg, dist_info, out, main))
    summary["wall_s"] = time.perf_counter() - t_start
    if main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if dist_info.initialized_here:
        barrier()
        torch.distributed.destroy_process_group()
    return summary


def _plain_metrics(m: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in m.items() if isinstance(v, (int, float, str)) or v is None}


def _finish_deploy(model: nn.Module, task: _Task, cfg: DenseTrainConfig, dist_info: Any, out: Path,
                   main: bool) -> Dict[str, Any]:
    """Re-parameterize a copy, check its score equals the trained model's, save it and export ONNX."""
    from ..model import reparameterize

    deploy = reparameterize(copy.deepcopy(model).eval())
    metrics = _plain_metrics(task.evaluate(deploy, dist_info))
    result: Dict[str, Any] = {"deploy": metrics}
    if not main:
        return result
    from ..engine.checkpointing import atomic_torch_save

    cpu = deploy.to("cpu")
    atomic_torch_save(dict(format=DENSE_CHECKPOINT_FORMAT, task=cfg.task, deploy=True, model=cpu.state_dict(),
                           config=cfg.to_dict(), class_names=list(task.class_names)), out / "deploy.pth")
    result["deploy_file"] = str(out / "deploy.pth")
    if cfg.export_onnx:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            result["onnx_skipped"] = "onnxruntime not installed (pip install 'unireplknet[onnx]')"
            return result
        info = task.export(cpu, out / "model.onnx")
        result["onnx_file"], result["onnx_max_diff"] = str(info["path"]), info["max_abs_diff"]
    return result


# ----------------------------------------------------------------------------------------------- evaluation
def _read_checkpoint(path: Path, device: Any = "cpu") -> Dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass the last.pth or deploy.pth of a dense run")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != DENSE_CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a detection/segmentation checkpoint of `unireplknet det-train`/`seg-train`")
    return ckpt


def load_dense_model(path: Path, device: Any = "cpu", data: Optional[str] = None) -> Tuple[nn.Module, DenseTrainConfig, Dict[str, Any]]:
    """Rebuild the detector/segmenter of a ``last.pth`` / ``deploy.pth`` and load its weights."""
    from ..model import reparameterize

    ckpt = _read_checkpoint(Path(path), device)
    fields = {f.name for f in dataclasses.fields(DenseTrainConfig)}
    cfg = DenseTrainConfig(**{k: v for k, v in ckpt["config"].items() if k in fields})
    cfg.checkpoint = None
    if data is not None:
        cfg.data = data
    cfg.num_classes = cfg.num_classes or len(ckpt["class_names"])
    task_cfg = copy.deepcopy(cfg)
    if cfg.task == "detection":
        from . import detection as det

        head = _head_kwargs_for(cfg.detector, cfg.head_kwargs)
        model = det.build_detector(cfg.detector, cfg.model, cfg.num_classes, model_kwargs=cfg.model_kwargs or None,
                                   min_size=cfg.min_size, max_size=cfg.max_size, **head)
    else:
        from . import segmentation as seg

        model = seg.upernet(cfg.model, cfg.num_classes, model_kwargs=cfg.model_kwargs or None, **cfg.head_kwargs)
    if ckpt.get("deploy"):
        reparameterize(model)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), task_cfg, ckpt


def evaluate_dense(path: Path, data: Optional[str] = None, device: str = "auto",
                   batch_size: int = 8) -> Dict[str, Any]:
    """COCO box/mask AP or mIoU of a checkpoint on the held-out split of its data (or of ``data``)."""
    from ..engine.distributed import init_distributed

    dist_info = init_distributed(device)
    model, cfg, _ = load_dense_model(path, dist_info.device, data)
    cfg.eval_batch_size = batch_size
    root = _data_paths(cfg, dist_info.is_main)
    if cfg.task == "detection":
        from . import detection as det

        images, ann = _coco_files(root, "val")
        val = det.CocoDetectionDataset(images, ann, masks=False, num_classes=cfg.num_classes)
        return _plain_metrics(det.coco_evaluate(model, val, batch_size, dist_info.device, dist_info))
    from . import segmentation as seg

    val = seg.ADE20KDataset(root, "validation", num_classes=cfg.num_classes, short_side=cfg.short_side)
    return _plain_metrics(seg.evaluate_miou(model, val, cfg.num_classes, batch_size, dist_info.device, dist_info))
