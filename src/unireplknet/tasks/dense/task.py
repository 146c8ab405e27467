"""Detection and segmentation on the engine (``unireplknet det-train`` / ``seg-train`` / ``det-eval`` / ``seg-eval``).

:class:`DenseTask` supplies what differs from classification — lists of images with box/mask targets, a model
that computes its own losses, COCO AP / mIoU as the key metric, layer-decay groups under the backbone's prefix,
the detector's own ONNX export — and :func:`unireplknet.engine.fit` does the rest.

Defaults are the official recipes (paper, section 5): AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05, no
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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ...engine.config import EngineConfig
from ...engine.loop import TrainResult
from ...engine.task import Batch, StepContext, StepOutput, Task, TaskData

__all__ = [
    "DenseTrainConfig",
    "DETECTION_DEFAULTS",
    "SEGMENTATION_DEFAULTS",
    "SCENES_DETECTION",
    "SCENES_SEGMENTATION",
    "train_dense",
    "dense_summary",
    "evaluate_dense",
    "load_dense_model",
    "DenseTask",
    "DetectionTask",
    "SegmentationTask",
    "DENSE_TASKS",
    "dense_task",
]

_logger = logging.getLogger(__name__)

#: A four-stage UniRepLKNet small enough for 64×64 scenes on two CPU cores; stage maps 16, 8, 4, 2 pixels.
SCENES_MODEL_KWARGS: Dict[str, Any] = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128),
                                           kernel_sizes=((7,), (7,), (5, 5), (3,)))


@dataclass
class DenseTrainConfig(EngineConfig):
    """Every option of :func:`train_dense`: the engine options and the dense ones; ``None`` fields take the
    task's recipe (:meth:`with_recipe`; :func:`train_dense` resolves a config built directly)."""

    task: str = "detection"  # detection | segmentation
    data: str = "scenes"  # 'scenes' or a data root (COCO / ADE20K layout)
    num_classes: Optional[int] = None
    detector: str = "maskrcnn"
    head_kwargs: Dict[str, Any] = field(default_factory=dict)
    num_layers: int = 12
    decay_type: str = "layer_wise"
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
    scene_style: str = "flat"  # 'flat' (the demo) or 'textured' (shapes in background-like textures; harder)
    eval_batch_size: int = 8
    # engine options: None = the task's recipe (DETECTION_DEFAULTS / SEGMENTATION_DEFAULTS)
    output: Optional[str] = "runs/dense"
    model: str = "unireplknet_t"
    drop_path: Optional[float] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    opt_betas: Optional[Tuple[float, float]] = (0.9, 0.999)
    layer_decay: Optional[float] = None
    warmup_epochs: float = 0.0
    warmup_steps: Optional[int] = None
    warmup_ratio: Optional[float] = None
    sched: Optional[str] = None  # step | poly
    decay_epochs: Optional[Tuple[int, ...]] = None
    decay_rate: float = 0.1
    workers: int = 0
    tensorboard: Optional[bool] = False

    BUILTIN_DATA: ClassVar[Tuple[str, ...]] = ("scenes",)  # --data names the generated scenes, not a path

    @classmethod
    def default_recipe(cls, options: Dict[str, Any]) -> Optional[str]:
        """The task's recipe: ``"detection"`` (the official COCO one) or ``"segmentation"`` (ADE20K)."""
        task = options.get("task", cls.task)
        if task not in ("detection", "segmentation"):
            raise ValueError(f"task must be 'detection' or 'segmentation', got {task!r}")
        return task

    @classmethod
    def recipe(cls, name: str, options: Dict[str, Any]) -> Dict[str, Any]:
        """The task's recipe, with the paper's per-variant Cascade Mask R-CNN recipe for that detector on real
        data, and the scene demo's values for the generated scenes."""
        values = super().recipe(name, options)
        data, model = options.get("data", cls.data), options.get("model", cls.model)
        if name == "detection" and options.get("detector", cls.detector) == "cascade_mask_rcnn" and data != "scenes":
            from .cascade import cascade_recipe

            values.update(cascade_recipe(model))
        if data == "scenes":
            values.update(copy.deepcopy(SCENES_DETECTION if name == "detection" else SCENES_SEGMENTATION))
        return values

    @classmethod
    def merge_recipe(cls, recipe: Dict[str, Any], options: Dict[str, Any]) -> Dict[str, Any]:
        """Given options win, except that the recipe's ``head_kwargs`` are kept where not given, an empty
        ``decay_epochs`` takes the recipe's, and the recipe's ``model_kwargs`` go only with a ``custom`` model."""
        from .backbone_utils import is_timm_peer

        merged = super().merge_recipe(recipe, options)
        merged["head_kwargs"] = {**recipe.get("head_kwargs", {}), **options.get("head_kwargs", {})}
        if not options.get("decay_epochs") and recipe.get("decay_epochs"):
            merged["decay_epochs"] = recipe["decay_epochs"]
        if not options.get("model_kwargs"):
            custom = merged.get("model", cls.model) == "custom"
            merged["model_kwargs"] = recipe.get("model_kwargs", {}) if custom else options.get("model_kwargs", {})
        if is_timm_peer(merged.get("model", cls.model)):
            # Layer decay maps UniRepLKNet's stages and blocks to depths; a timm peer trains at one rate.
            if options.get("layer_decay") not in (None, 1.0):
                raise ValueError(f"--layer-decay {options['layer_decay']}: layer-wise lr decay follows UniRepLKNet's "
                                 f"stages and blocks, and {merged['model']} is a timm model; drop --layer-decay or "
                                 "pass 1.0")
            merged["layer_decay"] = 1.0
        return merged

    @classmethod
    def with_recipe(cls, recipe: Any = None, **options: Any) -> "DenseTrainConfig":
        cfg = super().with_recipe(recipe, **options)
        if cfg.model == "custom" and not cfg.model_kwargs:
            raise ValueError("--model custom needs --model-kwargs (depths, dims, kernel_sizes)")
        if (cfg.task == "detection" and cfg.detector == "cascade_mask_rcnn" and cfg.data != "scenes"
                and int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available()):
            cfg.sync_bn = True  # the recipe's SyncBN (backbone and 4conv-1fc box heads) under torchrun on GPUs
        return cfg

    def resolved(self) -> "DenseTrainConfig":
        """:meth:`with_recipe` of the options of this config that differ from the class defaults (``None``
        fields take the task's recipe): what :func:`train_dense` runs. Resolving twice changes nothing."""
        defaults = DenseTrainConfig()
        given = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)
                 if getattr(self, f.name) != getattr(defaults, f.name)}
        return type(self).with_recipe(**given)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d))  # tuples → lists: plain types for weights_only checkpoints


#: The official COCO recipe (Cascade Mask R-CNN 3×, UniRepLKNet-T in1k row).
DETECTION_DEFAULTS: Dict[str, Any] = dict(
    lr=1e-4, weight_decay=0.05, epochs=36, batch_size=2, layer_decay=0.8, drop_path=0.3, warmup_steps=500, warmup_ratio=1e-3,
    sched="step", decay_epochs=(27, 33), min_size=800, max_size=1333, head_kwargs={},
)
#: The official ADE20K recipe (UperNet 160k, UniRepLKNet-T 512 row: no layer decay, drop path 0.2).
SEGMENTATION_DEFAULTS: Dict[str, Any] = dict(
    lr=1e-4, weight_decay=0.05, epochs=128, batch_size=2, layer_decay=1.0, drop_path=0.2, warmup_steps=1500, warmup_ratio=1e-6,
    sched="poly", crop_size=512, short_side=512, scale_range=(0.5, 2.0), head_kwargs={},
)
#: The generated scenes: a tiny network, small heads, 64-pixel images. What the demo needs is optimizer steps
#: and fresh scenes (docs/dense.md, measured with one thread): 3 epochs of 320 scenes (240 steps) left the
#: detector at box AP50 3.5 — it takes off only in the few hundred steps after — and 50 epochs of 320 scenes
#: gave the segmenter 75 mIoU where 10 epochs of 1600 scenes (the same 4000 steps and CPU time) give 88.
#: Detection: 10 epochs of 640 scenes (1600 steps; box AP50 93), segmentation: 10 epochs of 1600 scenes;
#: about five CPU-minutes each.
SCENES_DETECTION: Dict[str, Any] = dict(
    model="custom", model_kwargs=SCENES_MODEL_KWARGS, scenes_train=640, epochs=10, batch_size=4, lr=2e-3,
    layer_decay=1.0, drop_path=0.0, warmup_steps=20, warmup_ratio=1e-3, decay_epochs=(8, 9), min_size=64, max_size=64,
    head_kwargs=dict(fpn_channels=32, anchor_sizes=(8, 16, 32, 64, 128), box_head_convs=1, box_head_channels=32,
                     representation_size=128, mask_head_channels=32,
                     # at most 3 objects in 64x64 pixels: far fewer proposals and sampled RoIs than for COCO
                     rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=300,
                     rpn_post_nms_top_n_test=100, rpn_batch_size_per_image=64, box_batch_size_per_image=64,
                     box_detections_per_img=20, box_score_thresh=0.01),
)
SCENES_SEGMENTATION: Dict[str, Any] = dict(
    model="custom", model_kwargs=SCENES_MODEL_KWARGS, scenes_train=1600, epochs=10, batch_size=4, lr=2e-3,
    layer_decay=1.0, drop_path=0.0, warmup_steps=20, warmup_ratio=1e-3, crop_size=None, short_side=None, scale_range=None,
    head_kwargs=dict(channels=64, aux_channels=32),
)
DenseTrainConfig.RECIPES = {"detection": DETECTION_DEFAULTS, "segmentation": SEGMENTATION_DEFAULTS}


# ----------------------------------------------------------------------------------------------- data
def _data_paths(cfg: DenseTrainConfig, main: bool, task: "DenseTask") -> Path:
    """The data root; for 'scenes' the generated set is written (once, by rank 0) under the output folder."""
    from ...engine.distributed import barrier

    if cfg.data != "scenes":
        return Path(cfg.data)
    root = Path(cfg.output) / "scenes"
    style = "" if cfg.scene_style == "flat" else f"-{cfg.scene_style}"  # flat: the marker name of older runs
    marker = root / f"{cfg.task}-{cfg.scenes_train}-{cfg.scenes_val}-{cfg.scene_size}-{cfg.seed}{style}.done"
    if main and not marker.exists():
        for old in root.glob(f"{cfg.task}-*.done"):  # another scene set is about to overwrite the files
            old.unlink()
        for split, n in (("train", cfg.scenes_train), ("val", cfg.scenes_val)):
            task.write_scenes(root, split, n, cfg)
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
    from .detection import MASK_DETECTORS

    head = dict(head_kwargs)
    if detector not in MASK_DETECTORS:
        head.pop("mask_head_channels", None)
    if detector in ("retinanet", "fcos"):
        for k in list(head):
            if k.startswith(("rpn_", "box_")) or k == "representation_size":
                head.pop(k)
        if detector == "fcos" and head.get("fpn_channels", 256) % 32:
            head["fpn_channels"] = 32 * max(1, round(head["fpn_channels"] / 32))
    return head


class CollateAsBatch:
    """A dense collate function's ``(images, targets)`` lists as the engine's :class:`~unireplknet.engine.Batch`
    (a class, not a closure: loader workers pickle it)."""

    def __init__(self, collate: Any):
        self.collate = collate

    def __call__(self, items: Any) -> Batch:
        images, targets = self.collate(items)
        return Batch(images, targets)


class DenseTask(Task):
    """What the two dense tasks share (:class:`DetectionTask`, :class:`SegmentationTask`): the generated scenes or
    a data root, a model that computes its own losses, the official layer decay under the backbone's prefix,
    per-epoch re-seeding of the augmentation, and evaluators that shard the held-out set themselves."""

    name: str
    metric: str
    higher_is_better = True
    find_unused_parameters = False
    backbone_prefix: str

    def __init__(self, cfg: DenseTrainConfig):
        self.cfg = cfg

    # the parts each task fills in
    def write_scenes(self, root: Path, split: str, count: int, cfg: DenseTrainConfig) -> None:
        raise NotImplementedError

    def build_sets(self, root: Path, cfg: DenseTrainConfig) -> Tuple[Any, Any, int, List[str], Any]:
        """(training set, held-out set, class count, class names, collate function)."""
        raise NotImplementedError

    def held_out_set(self, root: Path, cfg: DenseTrainConfig) -> Any:
        raise NotImplementedError

    def create_model(self, cfg: DenseTrainConfig, num_classes: int, **backbone: Any) -> nn.Module:
        raise NotImplementedError

    def losses(self, model: nn.Module, batch: Any, ctx: StepContext) -> Tuple[Dict[str, torch.Tensor], int]:
        raise NotImplementedError

    def score(self, model: nn.Module, held_out: Any, batch_size: int, device: Any, dist: Any) -> Dict[str, Any]:
        raise NotImplementedError

    # the engine's hooks
    def build_data(self, cfg: DenseTrainConfig, seed: int) -> TaskData:
        from ...engine.distributed import is_main_process

        root = _data_paths(cfg, is_main_process(), self)
        train_set, val_set, self.num_classes, names, collate = self.build_sets(root, cfg)
        self.train_set, self.val_set = train_set, val_set
        collate = CollateAsBatch(collate)
        return TaskData(train_set, val_set, collate, collate, f"{cfg.data}: {len(train_set)} training / "
                        f"{len(val_set)} held-out images, {self.num_classes} classes", list(names),
                        dict(config=cfg.to_dict()), eval_batch_size=cfg.eval_batch_size)

    def start_epoch(self, epoch: int) -> None:
        # The datasets draw flips/crops from their own generator: re-seed it per epoch so that a resumed run
        # draws what an uninterrupted one would.
        import numpy as np

        self.train_set._rng = np.random.default_rng([self.cfg.seed, epoch])

    def build_model(self, cfg: DenseTrainConfig, data: TaskData, pretrained: bool) -> nn.Module:
        if pretrained:
            raise ValueError("--pretrained: pass the official ImageNet weights as --checkpoint (a .pth/.safetensors "
                             "file); the detector and segmenter load them into the backbone")
        return self.create_model(cfg, self.num_classes, **_backbone_options(cfg, cfg.checkpoint, cfg.drop_path))

    def load_initial_weights(self, model: nn.Module, path: str) -> None:
        pass  # build_model passed --checkpoint to the backbone builder (official files, backbone. keys)

    def model_config(self, cfg: DenseTrainConfig, data: TaskData, model: nn.Module) -> Dict[str, Any]:
        return json.loads(json.dumps(dict(
            task=cfg.task, model=cfg.model, model_kwargs=cfg.model_kwargs, num_classes=self.num_classes,
            detector=cfg.detector if self.name == "detection" else None, head_kwargs=cfg.head_kwargs,
            min_size=cfg.min_size, max_size=cfg.max_size)))

    def param_groups(self, model: nn.Module, cfg: DenseTrainConfig) -> List[Dict[str, Any]]:
        """The official layer decay (MMDet/MMSeg's LearningRateDecayOptimizerConstructor) under the backbone prefix."""
        from .mm import layer_decay_param_groups

        return layer_decay_param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay, cfg.num_layers,
                                        cfg.decay_type, prefix=self.backbone_prefix)

    def training_loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        losses, samples = self.losses(model, batch, ctx)
        return StepOutput(sum(losses.values()), samples, parts={k: float(v.detach()) for k, v in losses.items()})

    def evaluate(self, model: nn.Module, loader: Any, ctx: StepContext) -> Dict[str, float]:
        # Both evaluators shard the held-out set over the ranks themselves and need whole images.
        return _plain_metrics(self.score(model, self.val_set, self.cfg.eval_batch_size, ctx.device, ctx.dist))

    def deploy_example(self, data: TaskData) -> Optional[torch.Tensor]:
        return None  # list inputs and dict outputs: the deploy check is the held-out score of both structures


class DetectionTask(DenseTask):
    """``det-train``: a torchvision detector (Faster/Mask R-CNN, RetinaNet, FCOS, Cascade Mask R-CNN) on COCO-format
    data, COCO box AP as the key metric."""

    name, metric = "detection", "box_AP"
    find_unused_parameters = True  # the RPN/RoI heads skip some parameters per batch
    backbone_prefix = "backbone.body."

    def write_scenes(self, root: Path, split: str, count: int, cfg: DenseTrainConfig) -> None:
        from ...data import scenes as scene_data

        scene_data.write_coco(root, split, count, seed=cfg.seed, size=cfg.scene_size, style=cfg.scene_style)

    def build_sets(self, root: Path, cfg: DenseTrainConfig) -> Tuple[Any, Any, int, List[str], Any]:
        from ...data.coco import CocoDetectionDataset, DetectionDataError, detection_collate
        from .detection import MASK_DETECTORS

        train_images, train_ann = _coco_files(root, "train")
        val_images, val_ann = _coco_files(root, "val")
        train_set = CocoDetectionDataset(train_images, train_ann, masks=cfg.detector in MASK_DETECTORS,
                                         num_classes=cfg.num_classes, hflip=cfg.hflip, seed=cfg.seed)
        if cfg.detector == "cascade_mask_rcnn" and cfg.data != "scenes":
            from ...data.coco import DetrStyleCrop  # the recipe's DETR-style resize + crop branch (p 0.5)

            train_set = DetrStyleCrop(train_set, seed=cfg.seed)
        val_set = CocoDetectionDataset(val_images, val_ann, masks=False, num_classes=cfg.num_classes)
        if val_set.cat_ids != train_set.cat_ids:
            raise DetectionDataError(f"{train_ann} and {val_ann} have different categories "
                                     f"({train_set.cat_ids} vs {val_set.cat_ids})")
        return (train_set, val_set, cfg.num_classes or train_set.num_classes, train_set.class_names,
                detection_collate)

    def held_out_set(self, root: Path, cfg: DenseTrainConfig) -> Any:
        from ...data.coco import CocoDetectionDataset

        images, ann = _coco_files(root, "val")
        return CocoDetectionDataset(images, ann, masks=False, num_classes=cfg.num_classes)

    def create_model(self, cfg: DenseTrainConfig, num_classes: int, **backbone: Any) -> nn.Module:
        from . import detection as det

        head = _head_kwargs_for(cfg.detector, cfg.head_kwargs)
        return det.build_detector(cfg.detector, cfg.model, num_classes, model_kwargs=cfg.model_kwargs or None,
                                  min_size=cfg.min_size, max_size=cfg.max_size, **backbone, **head)

    def losses(self, model: nn.Module, batch: Any, ctx: StepContext) -> Tuple[Dict[str, torch.Tensor], int]:
        images, targets = batch.inputs, batch.targets
        images = [ctx.to_device(im) for im in images]
        targets = [{k: ctx.to_device(v) for k, v in t.items()} for t in targets]
        return model(images, targets), len(images)

    def score(self, model: nn.Module, held_out: Any, batch_size: int, device: Any, dist: Any) -> Dict[str, Any]:
        from .detection import coco_evaluate

        return coco_evaluate(model, held_out, batch_size, device, dist)

    def export_onnx(self, model: nn.Module, path: Path, example: Sequence[torch.Tensor] = ()) -> Dict[str, Any]:
        """Its own exporter: the model takes images of any size (the ONNX graph is traced at one size)."""
        from .detection import export_onnx

        size = self.cfg.min_size or 800
        return export_onnx(model, path, image_size=(size, size))


class SegmentationTask(DenseTask):
    """``seg-train``: a UperNet segmenter on ADE20K-format data, mIoU as the key metric."""

    name, metric = "segmentation", "mIoU"
    backbone_prefix = "backbone."

    def write_scenes(self, root: Path, split: str, count: int, cfg: DenseTrainConfig) -> None:
        from ...data import scenes as scene_data

        scene_data.write_ade20k(root, split, count, seed=cfg.seed, size=cfg.scene_size, style=cfg.scene_style)

    def build_sets(self, root: Path, cfg: DenseTrainConfig) -> Tuple[Any, Any, int, List[str], Any]:
        from ...data.ade20k import ADE20KDataset, SegmentationDataError, segmentation_collate

        train_set = ADE20KDataset(root, "training", num_classes=cfg.num_classes, crop_size=cfg.crop_size,
                                  hflip=cfg.hflip, scale_range=cfg.scale_range, short_side=cfg.short_side,
                                  seed=cfg.seed)
        val_set = ADE20KDataset(root, "validation", num_classes=cfg.num_classes, short_side=cfg.short_side)
        num_classes = cfg.num_classes or (len(train_set.class_names) if train_set.class_names else None)
        if num_classes is None:
            raise SegmentationDataError(f"{root} has no classes.json: pass --num-classes (150 for ADE20K)")
        train_set.num_classes = val_set.num_classes = num_classes
        names = train_set.class_names or [str(i) for i in range(num_classes)]
        return train_set, val_set, num_classes, names, segmentation_collate

    def held_out_set(self, root: Path, cfg: DenseTrainConfig) -> Any:
        from ...data.ade20k import ADE20KDataset

        return ADE20KDataset(root, "validation", num_classes=cfg.num_classes, short_side=cfg.short_side)

    def create_model(self, cfg: DenseTrainConfig, num_classes: int, **backbone: Any) -> nn.Module:
        from . import segmentation as seg

        return seg.upernet(cfg.model, num_classes, model_kwargs=cfg.model_kwargs or None, **backbone,
                           **cfg.head_kwargs)

    def losses(self, model: nn.Module, batch: Any, ctx: StepContext) -> Tuple[Dict[str, torch.Tensor], int]:
        from .segmentation import segmentation_loss

        images, labels = batch.inputs, batch.targets
        logits, aux = model(ctx.to_device(images), with_aux=True)
        return segmentation_loss(logits, ctx.to_device(labels), aux), len(images)

    def score(self, model: nn.Module, held_out: Any, batch_size: int, device: Any, dist: Any) -> Dict[str, Any]:
        from .segmentation import evaluate_miou

        return evaluate_miou(model, held_out, self.num_classes, batch_size, device, dist)

    def export_onnx(self, model: nn.Module, path: Path, example: Sequence[torch.Tensor] = ()) -> Dict[str, Any]:
        """Its own exporter: the model takes images of any size (the ONNX graph is traced at one size)."""
        from .segmentation import export_onnx

        image, _ = self.val_set[0]
        return export_onnx(model, path, image_size=tuple(image.shape[-2:]))


#: The task of each ``DenseTrainConfig.task``.
DENSE_TASKS = {"detection": DetectionTask, "segmentation": SegmentationTask}


def dense_task(cfg: DenseTrainConfig) -> DenseTask:
    """The task object of ``cfg.task`` ('detection' or 'segmentation')."""
    if cfg.task not in DENSE_TASKS:
        raise ValueError(f"task must be 'detection' or 'segmentation', got {cfg.task!r}")
    return DENSE_TASKS[cfg.task](cfg)


def _backbone_options(cfg: DenseTrainConfig, checkpoint: Optional[str] = None,
                      drop_path: Optional[float] = None) -> Dict[str, Any]:
    """The backbone keywords of a training build (none when rebuilding a saved model)."""
    return dict(checkpoint=checkpoint, drop_path_rate=drop_path, with_cp=cfg.grad_checkpointing) \
        if drop_path is not None else {}


# ----------------------------------------------------------------------------------------------- training
def train_dense(cfg: DenseTrainConfig, callbacks: Any = ()) -> TrainResult:
    """Train a detector or segmenter on the engine; works under ``torchrun``. Returns the engine's
    :class:`~unireplknet.engine.TrainResult` (``untrained``: the score before training with ``eval_at_start``;
    ``deploy_structure``: the re-parameterized model's) with ``extras``: ``task``, ``key_metric`` and ``final``
    (the last epoch's row). :func:`dense_summary` is the command line's summary of it."""
    from ...engine import fit

    cfg = cfg.resolved()
    task = dense_task(cfg)
    r = fit(task, cfg, callbacks)
    r.extras.update(task=cfg.task, key_metric=task.metric,
                    final=_plain_metrics(r.history[-1]) if r.history else None)
    return r


def dense_summary(r: TrainResult) -> Dict[str, Any]:
    """The summary of a :func:`train_dense` run that ``det-train`` / ``seg-train`` print: the untrained score, the
    last epoch's row, the best, the deploy structure's score and the files written."""
    return dict(task=r.extras["task"], epochs=r.epochs, world_size=r.world_size, untrained=r.untrained,
                final=r.extras["final"], best=r.best, key_metric=r.extras["key_metric"],
                checkpoint=str(r.checkpoint), deploy=r.deploy_structure or None,
                deploy_file=str(r.deploy_file) if r.deploy_file else None,
                onnx_file=str(r.onnx_file) if r.onnx_file else None, onnx_max_diff=r.onnx_max_diff,
                onnx_skipped=r.onnx_skipped, wall_s=r.wall_s)


def _plain_metrics(m: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in m.items() if isinstance(v, (int, float, str)) or v is None}


# ----------------------------------------------------------------------------------------------- evaluation
def load_dense_model(path: Path, device: Any = "cpu", data: Optional[str] = None
                     ) -> Tuple[nn.Module, DenseTrainConfig, Dict[str, Any]]:
    """Rebuild the detector/segmenter of a ``last.pth`` / ``best.pth`` / ``deploy.safetensors`` and load it."""
    from ...engine.checkpointing import load_training_checkpoint
    from ...model import reparameterize

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist; pass the last.pth or deploy.safetensors "
                                    "of a det-train / seg-train run")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise ValueError(f"{path} is not a readable safetensors file ({e})") from e
        ckpt = dict(model=state, deploy=True, **{k: json.loads(meta[k]) for k in ("data_config", "model_config")
                                                 if k in meta})
    else:
        ckpt = load_training_checkpoint(path, device)
    if ckpt.get("model_config", {}).get("task") not in ("detection", "segmentation"):
        raise ValueError(f"{path} is not a detection/segmentation checkpoint of `unireplknet det-train`/`seg-train`")
    from ...checkpoint import require_fields
    from ...limits import build_checked

    require_fields(ckpt.get("data_config") or {}, ("config",), str(path), field="data_config")
    fields = {f.name for f in dataclasses.fields(DenseTrainConfig)}
    cfg = DenseTrainConfig(**{k: v for k, v in ckpt["data_config"]["config"].items() if k in fields})
    cfg.checkpoint = None
    if data is not None:
        cfg.data = data
    require_fields(ckpt["model_config"], ("num_classes",), str(path))
    cfg.num_classes = ckpt["model_config"]["num_classes"]
    # the class count and the config's sizes come from the file: checked against its tensors (the layers that
    # re-parameterization changes keep their shapes) and the memory limit before the model is allocated
    model = build_checked(lambda: dense_task(cfg).create_model(cfg, cfg.num_classes), ckpt["model"], str(path))
    if ckpt.get("deploy"):
        reparameterize(model)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), copy.deepcopy(cfg), ckpt


def evaluate_dense(path: Path, data: Optional[str] = None, device: str = "auto",
                   batch_size: int = 8) -> Dict[str, Any]:
    """COCO box/mask AP or mIoU of a checkpoint on the held-out split of its data (or of ``data``)."""
    from ...engine.distributed import init_distributed

    dist_info = init_distributed(device)
    model, cfg, _ = load_dense_model(path, dist_info.device, data)
    cfg.eval_batch_size = batch_size
    task = dense_task(cfg)
    task.num_classes = cfg.num_classes
    val = task.held_out_set(_data_paths(cfg, dist_info.is_main, task), cfg)
    return _plain_metrics(task.score(model, val, batch_size, dist_info.device, dist_info))
