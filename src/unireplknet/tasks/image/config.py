"""The image task's options: the official ImageNet recipe (paper, section 4) and the embedded-digits recipe."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple

from ...engine.config import EngineConfig, plain

__all__ = ["TrainConfig", "DIGITS_DEFAULTS", "DIGITS_MODEL_KWARGS"]

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
class TrainConfig(EngineConfig):
    """Every option of :func:`unireplknet.tasks.image.train` (image classification); the defaults are the official
    recipe (paper, section 4).

    ``data=None`` selects the embedded digits; ``TrainConfig.with_recipe(**options)`` fills in the digits recipe
    (:data:`DIGITS_DEFAULTS`) for the options the caller left unset.
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

    BUILTIN_DATA: ClassVar[Tuple[str, ...]] = ("digits",)
    RECIPES: ClassVar[Dict[str, Dict[str, Any]]] = {"digits": dict(DIGITS_DEFAULTS, in_chans=1)}

    @classmethod
    def default_recipe(cls, options: Dict[str, Any]) -> Optional[str]:
        """The digits recipe for the embedded digits; the class defaults (the ImageNet recipe) for a folder."""
        return "digits" if options.get("data") in (None, "digits") else None

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only (JSON-able, ``weights_only``-loadable)."""
        d = dataclasses.asdict(self)
        d["model_kwargs"] = plain(d["model_kwargs"])
        return d
