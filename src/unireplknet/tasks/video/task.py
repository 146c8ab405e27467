"""Video classification with the unchanged UniRepLKNet: clip → frame mosaic (or official reshape) → backbone.

``VideoClassifier`` wraps a 3-channel UniRepLKNet (with its own classification head, as the official
Kinetics model) and forms the image inside ``forward``, so it takes clips (B, 3, T, H, W) directly and
multi-view test batches (B, V, 3, T, H, W) through :meth:`VideoClassifier.forward_views`.

:func:`train_video` trains one on the generated motion set (default; easy or hard clips), a folder of videos
or a Kinetics list, with the official recipe where it applies (AdamW, warmup + cosine, label smoothing 0.1,
mixup 0.8 / cutmix 1.0 on the clip before the layout, 5 clips × 3 crops at test time).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Optional, Tuple

import torch
from torch import nn

from ...engine.config import EngineConfig
from ...engine.config import plain
from ...engine.loop import TrainResult
from ...engine.task import TaskData
from ...modalities.video import LAYOUTS, clip_to_image, mosaic_grid
from ..views import ViewClassification, prefixed_group_matcher, task_data

__all__ = ["OFFICIAL_K400_KWARGS", "MOTION_DEMO_KWARGS", "VideoClassifier", "create_video_classifier",
           "VideoTrainConfig", "VideoClassification", "HARD_DEMO_EPOCHS", "HARD_DEMO_LR", "train_video", "clip_mixup", "load_video_classifier", "build_video_data",
]

_logger = logging.getLogger(__name__)

#: Epochs and peak learning rate of the hard motion demo (``VideoTrainConfig.RECIPES["motion-hard"]``), chosen on the
#: validation split (docs/video.md, "hard motion clips").
HARD_DEMO_EPOCHS = 32
HARD_DEMO_LR = 4e-3

#: The network of the official Kinetics-400 script (official `Video/` code, described in docs/video.md): B-width dims with S depths, stage-4 kernels 11,
#: drop path 0.4. The paper's table calls it "UniRepLKNet-S, 55.5M"; build ``unireplknet_s`` for that.
OFFICIAL_K400_KWARGS: Dict[str, Any] = dict(
    depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024),
    kernel_sizes=((3, 3, 3), (13, 13, 13), (13, 3, 3) * 9, (11, 11, 11)), drop_path_rate=0.4,
)

#: The small network of the motion demo: 4 frames of 32² in a 2×2 mosaic give a 64² image (stage maps 16, 8,
#: 4, 2). A frame is 4×4 pixels of the stage-2 map, so the 7×7 kernels of stages 2-3 reach the neighbouring
#: frames: that is what lets a 2-D network compare frames. Sized to train in minutes on two CPU cores.
MOTION_DEMO_KWARGS: Dict[str, Any] = dict(
    depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), kernel_sizes=((3,), (7,), (7, 7), (3,)),
)


class VideoClassifier(nn.Module):
    """A UniRepLKNet classifier on clips: ``logits = backbone(layout(clip))``.

    Args:
        backbone: a 3-channel :class:`~unireplknet.UniRepLKNet` in logits mode (its head is the classifier).
        num_frames: T of the clips it takes (must fill the grid).
        layout: "mosaic" (the paper; default) or "reshape" (the official code; for its checkpoints).
        grid: (rows, cols) of the frame grid; default square.
    """

    def __init__(self, backbone: nn.Module, num_frames: int = 16, layout: str = "mosaic",
                 grid: Optional[Tuple[int, int]] = None):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.grid = mosaic_grid(num_frames, grid)
        self.backbone, self.num_frames, self.layout = backbone, num_frames, layout

    @property
    def num_classes(self) -> int:
        return int(self.backbone.num_classes)

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """The backbone's layer groups under the ``backbone.`` prefix (for layer-wise lr decay)."""
        return prefixed_group_matcher(self.backbone.group_matcher(coarse), "backbone.")

    def clip_to_image(self, clip: torch.Tensor) -> torch.Tensor:
        """The image the backbone sees for a batch of clips (B, C, T, H, W)."""
        if clip.dim() != 5:
            raise ValueError(f"VideoClassifier expects clips (B, C, T, H, W), got shape {tuple(clip.shape)}; "
                             "for multi-view test batches (B, V, C, T, H, W) use forward_views")
        if clip.shape[2] != self.num_frames:
            raise ValueError(f"the model was built for {self.num_frames} frames per clip, got {clip.shape[2]} "
                             f"(clip shape {tuple(clip.shape)}); sample {self.num_frames} frames")
        if not torch.isfinite(clip).all():
            raise ValueError("the clip contains NaN or infinite values; check the decoding / normalisation")
        return clip_to_image(clip, self.layout, self.grid)

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(self.clip_to_image(clip))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.clip_to_image(clip))

    def forward_views(self, views: torch.Tensor) -> torch.Tensor:
        """(B, V, C, T, H, W) test views → (B, V, classes) logits (average their softmax for the clip score)."""
        if views.dim() == 5:
            return self(views)
        b, v = views.shape[:2]
        return self(views.flatten(0, 1)).view(b, v, -1)


def create_video_classifier(model: str = "official", num_classes: int = 400, num_frames: int = 16,
                            layout: str = "mosaic", model_kwargs: Optional[Dict[str, Any]] = None,
                            pretrained: bool = False, **overrides: Any) -> VideoClassifier:
    """A :class:`VideoClassifier` around a named variant, the official K400 network or custom kwargs.

    ``model``: ``"official"`` (:data:`OFFICIAL_K400_KWARGS`), ``"custom"`` (``model_kwargs``) or a variant
    name (``unireplknet_s`` … ; ``pretrained`` loads ImageNet weights as an initialisation).
    """
    from ..views import build_task_backbone

    backbone = build_task_backbone(model, num_classes, OFFICIAL_K400_KWARGS, model_kwargs, pretrained, **overrides)
    return VideoClassifier(backbone, num_frames, layout)


def clip_mixup(num_classes: int, mixup: float = 0.8, cutmix: float = 1.0, smoothing: float = 0.1):
    """timm Mixup/CutMix applied to clips the official way: on the (B, C·T, H, W) view, before the layout.

    CutMix thus cuts the same box out of every frame. Returns a ``(x, y) -> (x, soft_y)`` batch transform.
    """
    from timm.data import Mixup

    mix = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=smoothing, num_classes=num_classes,
                mode="batch")

    def transform(x: torch.Tensor, y: torch.Tensor):
        if x.shape[0] % 2:  # timm mixes a batch with its reverse and needs an even size
            x, y = x[:-1], y[:-1]
        b, c, t, h, w = x.shape
        flat, soft = mix(x.reshape(b, c * t, h, w), y)
        return flat.reshape(b, c, t, h, w), soft

    return transform


@dataclass
class VideoTrainConfig(EngineConfig):
    """Options of :func:`train_video`: the engine options (defaults of the motion demo here) and the clip ones.

    ``data=None`` is the generated motion set (``difficulty`` "easy" or "hard", scored on ``eval_split``). The
    class defaults are the easy motion demo; :attr:`RECIPES` holds ``"motion-hard"``, the hard motion demo, and
    ``"kinetics"``, the official Kinetics-400 recipe (the default of :meth:`with_recipe` when ``data`` is given).
    """

    data: Optional[str] = None  # None | folder root | Kinetics CSV / list file
    val_data: Optional[str] = None  # folder or list of the held-out videos (default: split off --val-split)
    data_root: Optional[str] = None  # where the files of a list live (default: next to the list)
    val_split: float = 0.1
    num_frames: int = 4  # motion demo: 4 frames (Kinetics recipe: 16)
    sampling_rate: int = 4
    input_size: int = 32  # frame side (Kinetics recipe: 224)
    layout: str = "mosaic"
    clips_per_class: int = 48  # motion set: training clips per class (held-out: a quarter of it)
    difficulty: str = "easy"  # motion set: "easy" or "hard" (unireplknet.data.video.motion)
    eval_split: str = "val"  # motion set: the held-out split scored after every epoch ("val" or "test")
    #: hard motion set: keyword arguments of render_hard_motion_clip that switch parts of the difficulty off
    #: (ablations: camera_scale, texture_scale, distractors)
    hard_options: Dict[str, Any] = field(default_factory=dict)
    smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    auto_augment: str = ""
    hflip: float = 0.0
    reprob: float = 0.0
    crop_scale: Tuple[float, float] = (0.7, 1.0)
    test_clips: int = 1
    test_crops: int = 1
    skip_unreadable: bool = False
    # engine options with the motion demo's values
    model: str = "custom"
    model_kwargs: Dict[str, Any] = field(default_factory=lambda: dict(MOTION_DEMO_KWARGS))
    drop_path: float = 0.0
    epochs: int = 8
    batch_size: int = 16
    lr: float = 2e-3
    warmup_epochs: float = 1.0
    workers: int = 0
    output: Optional[str] = "runs/video"

    RECIPES: ClassVar[Dict[str, Dict[str, Any]]] = {
        "demo": {},
        # The official Kinetics-400 recipe (official `Video/` code, described in docs/video.md), for a real data set.
        "kinetics": dict(model="official", model_kwargs={}, drop_path=0.4, num_frames=16, input_size=224, epochs=90,
                         batch_size=8, lr=1e-3, warmup_epochs=5.0, layer_decay=0.75, mixup=0.8, cutmix=1.0,
                         auto_augment="rand-m7-n4-mstd0.5-inc1", hflip=0.5, reprob=0.25, crop_scale=(0.08, 1.0),
                         test_clips=5, test_crops=3, workers=4),
        # The hard motion demo (docs/video.md): hard clips, 80 training clips per class, scored on the test split.
        # Its epochs and learning rate were chosen on the validation split (docs/video.md).
        "motion-hard": dict(difficulty="hard", eval_split="test", clips_per_class=80, epochs=HARD_DEMO_EPOCHS,
                            lr=HARD_DEMO_LR),
    }

    @classmethod
    def default_recipe(cls, options: Dict[str, Any]) -> Optional[str]:
        return "kinetics" if options.get("data") else "demo"


def motion_set_name(cfg: VideoTrainConfig) -> str:
    """How the summaries name the generated set of ``cfg`` (e.g. "the hard motion clips (test split)")."""
    return f"the generated {'hard ' if cfg.difficulty == 'hard' else ''}motion clips ({cfg.eval_split} split held out)"


def build_video_data(cfg: VideoTrainConfig):
    """(train set, held-out set, class names) for a :class:`VideoTrainConfig`."""
    from pathlib import Path

    from ...data.build import split_samples
    from ...data.video import VideoClipDataset, read_kinetics_csv, scan_video_folder
    from ...modalities.video import ClipEvalTransform, ClipTransform

    train_tf = ClipTransform(cfg.input_size, scale=cfg.crop_scale, hflip=cfg.hflip, auto_augment=cfg.auto_augment,
                             reprob=cfg.reprob)
    eval_tf = ClipEvalTransform(cfg.input_size, cfg.test_crops)
    if cfg.data is None:
        from ...data.video import MotionClips

        if cfg.eval_split not in ("val", "test"):
            raise ValueError(f"eval_split must be 'val' or 'test', got {cfg.eval_split!r}; choose settings on 'val' "
                             "and report 'test' once")
        common = dict(num_frames=cfg.num_frames, size=cfg.input_size, seed=cfg.seed, difficulty=cfg.difficulty,
                      hard_options=cfg.hard_options)
        train = MotionClips("train", cfg.clips_per_class, transform=train_tf, **common)
        val = MotionClips(cfg.eval_split, max(1, cfg.clips_per_class // 4), transform=lambda c: eval_tf(c), **common)
        return train, val, list(train.classes)

    def load(spec: str, names=None):
        p = Path(spec)
        if p.is_dir():
            return scan_video_folder(p, names)
        return read_kinetics_csv(p, cfg.data_root, names)

    classes, samples = load(cfg.data)
    if cfg.val_data:
        _, val_samples = load(cfg.val_data, classes)
        train_samples = samples
    else:
        train_samples, val_samples = split_samples(samples, cfg.val_split, cfg.seed)
    on_error = "skip" if cfg.skip_unreadable else "raise"
    common = dict(num_frames=cfg.num_frames, sampling_rate=cfg.sampling_rate, size=cfg.input_size,
                  on_error=on_error)
    train = VideoClipDataset(train_samples, classes, True, transform=train_tf, **common)
    val = VideoClipDataset(val_samples, classes, False, transform=eval_tf, test_clips=cfg.test_clips,
                           test_crops=cfg.test_crops, **common)
    return train, val, classes


class VideoClassification(ViewClassification):
    """The engine task of :func:`train_video`: clips → :class:`VideoClassifier`, mixup on the clip, multi-view test."""

    name = "video"

    def build_data(self, cfg: VideoTrainConfig, seed: int) -> TaskData:
        from ...data.video import collate_clips

        train, val, classes = build_video_data(cfg)
        self.smoothing = cfg.smoothing
        self.mix = clip_mixup(len(classes), cfg.mixup, cfg.cutmix, cfg.smoothing) if (cfg.mixup or cfg.cutmix) else None
        what = motion_set_name(cfg) if cfg.data is None else cfg.data
        return task_data(train, val, classes, collate_clips if cfg.data is not None else None,
                         f"{what}: {len(train)} training / {len(val)} held-out clips, {len(classes)} classes",
                         dict(num_frames=cfg.num_frames, input_size=cfg.input_size, layout=cfg.layout), cfg.batch_size)

    def build_model(self, cfg: VideoTrainConfig, data: TaskData, pretrained: bool) -> nn.Module:
        return create_video_classifier(cfg.model, len(data.class_names), cfg.num_frames, cfg.layout, cfg.model_kwargs,
                                       pretrained, drop_path_rate=cfg.drop_path)

    def model_config(self, cfg: VideoTrainConfig, data: TaskData, model: nn.Module) -> Dict[str, Any]:
        return dict(task="video", model=cfg.model, model_kwargs=plain(cfg.model_kwargs), classes=data.class_names,
                    num_frames=cfg.num_frames, layout=cfg.layout, input_size=cfg.input_size)

    def batch_transform(self, x: torch.Tensor, y: torch.Tensor):
        return self.mix(x, y) if self.mix is not None else (x, y)

    def forward_views(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model.forward_views(x)

    def deploy_example(self, data: TaskData) -> torch.Tensor:
        dc = data.data_config
        return torch.randn(2, 3, dc["num_frames"], dc["input_size"], dc["input_size"])


def train_video(cfg: VideoTrainConfig, callbacks=()) -> TrainResult:
    """Train a :class:`VideoClassifier` on the engine (see the module docstring); returns the engine's
    :class:`~unireplknet.engine.TrainResult` (``train_structure``: the trained structure's held-out metrics)."""
    from ...engine import fit

    return fit(VideoClassification(), cfg, callbacks)


def load_video_classifier(path: str, map_location: str = "cpu") -> Tuple[VideoClassifier, Dict[str, Any]]:
    """Rebuild a :class:`VideoClassifier` from a ``last.pth`` of :func:`train_video`; returns (model, model_config)."""
    from ..views import read_task_checkpoint

    state, mc, kwargs = read_task_checkpoint(path, "video", "video-train", map_location)
    from ...limits import build_checked

    model = build_checked(lambda: create_video_classifier(mc["model"], len(mc["classes"]), mc["num_frames"],
                                                          mc["layout"], kwargs), state, str(path))
    model.load_state_dict(state)
    return model.eval(), mc
