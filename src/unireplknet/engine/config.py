"""Training options: the official ImageNet recipe as defaults, and the lighter embedded-digits defaults."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

__all__ = ["EngineConfig", "TrainConfig", "DIGITS_DEFAULTS", "DIGITS_MODEL_KWARGS"]

#: The network of the embedded-digits default: a four-stage UniRepLKNet scaled down from variant A
#: (dims 40-80-160-320, depths 2-2-6-2), so it trains in minutes on two CPU cores. At 32x32 input the stage
#: maps are 8, 4, 2 and 1 pixels wide, so the first two stages get the Dilated Reparam Block (kernels 7 and
#: 5 cover their whole map) and the last two a plain 3x3 block, as the official small-map stages do.
DIGITS_MODEL_KWARGS: Dict[str, Any] = dict(
    depths=(1, 1, 2, 1),
    dims=(16, 32, 64, 128),
    kernel_sizes=((7,), (5,), (3, 3), (3,)),
)

#: Why lighter than ImageNet: 1,438 images of 8x8 pixels and a few epochs. Flips and RandomResizedCrop would
#: change what a digit is; mixup/cutmix and RandAugment slow convergence more than they help at this size.
DIGITS_DEFAULTS: Dict[str, Any] = dict(
    model="custom",
    model_kwargs=DIGITS_MODEL_KWARGS,
    input_size=32,
    epochs=12,
    batch_size=32,
    lr=4e-3,
    warmup_epochs=1.0,
    weight_decay=0.05,
    drop_path=0.0,
    mixup=0.0,
    cutmix=0.0,
    smoothing=0.1,
    auto_augment="",
    reprob=0.0,
    model_ema=False,
    workers=0,
    output="runs/digits",
)


@dataclass
class EngineConfig:
    """The options the engine owns, shared by every task (the ``*-train`` engine flags, docs/cli/engine.md).

    Task configs subclass it and add their own options (and their own defaults for these). The defaults here
    are the official ImageNet recipe (paper, section 4: AdamW, lr 4e-3 at batch 4096, wd 0.05, cosine to 1e-6).
    """

    # model
    model: str = "unireplknet_a"
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    checkpoint: Optional[str] = None
    drop_path: float = 0.1
    grad_checkpointing: bool = False
    sync_bn: bool = False
    # optimisation
    epochs: int = 300
    batch_size: int = 64
    accum_steps: int = 1
    lr: float = 4e-3
    min_lr: float = 1e-6
    warmup_epochs: float = 5.0
    weight_decay: float = 0.05
    opt: str = "adamw"  # any optimizer name of timm's factory (audio and forecasting: "adam")
    opt_eps: float = 1e-8
    opt_betas: Optional[Tuple[float, float]] = None  # None: the optimizer's default
    layer_decay: Optional[float] = None
    clip_grad: Optional[float] = None
    #: "cosine": warmup then cosine to min_lr; "step": the rate times decay_rate after every epoch from
    #: decay_start on (the official audio recipe; forecasting's halving is decay_start 1, decay_rate 0.5)
    sched: str = "cosine"
    decay_start: int = 1
    decay_epochs: Optional[Tuple[int, ...]] = None  # "step": decay after these epochs instead
    decay_rate: float = 1.0
    warmup_steps: Optional[int] = None  # instead of warmup_epochs ("step"/"poly" warm up from warmup_ratio × lr)
    warmup_ratio: float = 0.0
    #: stop after this many evaluations without a better held-out metric (None: never)
    patience: Optional[int] = None
    model_ema: bool = False
    model_ema_decay: float = 0.9999
    # execution
    device: str = "auto"
    amp: str = "none"  # none | bf16 | fp16
    channels_last: Optional[bool] = None  # None: on for CUDA, off for CPU
    seed: int = 0
    workers: int = 4
    output: Optional[str] = "runs/train"  # None: a temporary folder, removed at the end
    resume: Optional[str] = None  # None: a fresh run; "auto": OUTPUT/last.pth; else a checkpoint path
    overwrite: bool = False
    eval_every: int = 1
    eval_at_start: bool = False  # also score the untrained model (a baseline in the summary)
    tensorboard: Optional[bool] = None  # None: when installed
    progress: bool = False
    # the end of training
    export_deploy: bool = True
    export_onnx: bool = True
    deploy_from_ema: bool = False


@dataclass
class TrainConfig(EngineConfig):
    """Every option of :func:`unireplknet.engine.train` (image classification); the defaults are the official
    recipe (paper, section 4).

    ``data=None`` selects the embedded digits; :meth:`for_data` fills in the digits defaults for options the
    caller left unset.
    """

    # data
    data: Optional[str] = None
    val_split: float = 0.1
    input_size: Optional[int] = None
    in_chans: int = 3
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    # model
    num_classes: Optional[int] = None
    layer_scale_init_value: float = 1e-6
    head_init_scale: float = 1.0
    # augmentation / regularisation
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1
    auto_augment: str = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    hflip: float = 0.5
    reprob: float = 0.25
    remode: str = "pixel"
    #: False: the training set gets the deterministic evaluation transform (no random augmentation at all).
    train_augment: bool = True
    recount: int = 1

    @classmethod
    def for_data(cls, **options: Any) -> "TrainConfig":
        """A config from keyword options, taking the digits defaults for unset ones when ``data`` is None."""
        data = options.get("data")
        merged: Dict[str, Any] = {}
        if data in (None, "digits"):
            merged.update(DIGITS_DEFAULTS)
            merged["in_chans"] = 1
        merged.update({k: v for k, v in options.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise TypeError(f"unknown training options: {', '.join(unknown)}")
        return cls(**merged)

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only (JSON-able, ``weights_only``-loadable)."""
        d = dataclasses.asdict(self)
        d["model_kwargs"] = plain(d["model_kwargs"])
        return d


def plain(obj: Any) -> Any:
    """Dicts, lists and tuples as plain dicts (string keys) and lists, so ``weights_only`` loading and JSON take them."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
