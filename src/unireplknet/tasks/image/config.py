"""The image task's options: the official ImageNet recipe (paper, section 4) and the embedded-digits recipe."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple

from ...engine.config import EngineConfig, plain

__all__ = ["TrainConfig", "DIGITS_DEFAULTS", "DIGITS_MODEL_KWARGS", "FASHION_MNIST_RECIPE",
           "FASHION_MNIST_QUICK_RECIPE"]

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

#: The recipe of an IDX folder (MNIST-family 28x28 grey images; docs/fashion_mnist.md): UniRepLKNet-A on the
#: images centred on a 32x32 canvas (the least input its stride-32 stages take), the standard Fashion-MNIST
#: augmentation of the published WRN rows (random crop after 4-pixel padding, horizontal flip, random erasing)
#: and no RandAugment or mixup/cutmix (60,000 small images and a few dozen epochs: they slow convergence).
#: Starting values; the long run's numbers in docs/fashion_mnist.md say what they reach.
FASHION_MNIST_RECIPE: Dict[str, Any] = dict(
    model="unireplknet_a",
    model_kwargs={},
    in_chans=1,
    input_size=32,
    fit="pad",
    crop_padding=4,
    hflip=0.5,
    reprob=0.25,
    remode="pixel",
    auto_augment="",
    mixup=0.0,
    cutmix=0.0,
    smoothing=0.1,
    opt="adamw",
    lr=2e-3,
    weight_decay=0.05,
    batch_size=128,
    epochs=30,
    warmup_epochs=1.0,
    drop_path=0.1,
    # 30 epochs of ~420 steps: a decay of 0.999 averages the last ~1,000 steps (0.9999 would lag a whole run)
    model_ema=True,
    model_ema_decay=0.999,
    val_split=0.1,
    workers=0,
    output="runs/fashion-mnist",
)

#: The quick recipe: the same pipeline for a few epochs, without EMA (too few steps to average).
FASHION_MNIST_QUICK_RECIPE: Dict[str, Any] = dict(
    FASHION_MNIST_RECIPE, epochs=4, warmup_epochs=0.5, model_ema=False, output="runs/fashion-mnist-quick")


@dataclass
class TrainConfig(EngineConfig):
    """Every option of :func:`unireplknet.tasks.image.train` (image classification); the defaults are the official
    recipe (paper, section 4).

    ``data=None`` selects the embedded digits; ``TrainConfig.with_recipe(**options)`` fills in the digits recipe
    (:data:`DIGITS_DEFAULTS`) for the options the caller left unset, and for an IDX folder (MNIST, Fashion-MNIST
    …) the ``fashion-mnist`` recipe (:data:`FASHION_MNIST_RECIPE`); ``with_recipe("fashion-mnist-quick", …)``
    names another.

    IDX folders only: ``class_names`` (a known set's name or a comma list), ``fit`` (``pad``: centre the images on
    the input canvas; ``resize``), ``crop_padding`` (pixels of padding before the training crop) and
    ``evaluate_test`` (score the ``t10k`` split once after training, with the best weights).
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
    # IDX folders
    class_names: Optional[str] = None
    fit: str = "pad"
    crop_padding: int = 4
    evaluate_test: bool = True

    BUILTIN_DATA: ClassVar[Tuple[str, ...]] = ("digits",)
    RECIPES: ClassVar[Dict[str, Dict[str, Any]]] = {
        "digits": dict(DIGITS_DEFAULTS, in_chans=1),
        "fashion-mnist": FASHION_MNIST_RECIPE,
        "fashion-mnist-quick": FASHION_MNIST_QUICK_RECIPE,
    }

    @classmethod
    def default_recipe(cls, options: Dict[str, Any]) -> Optional[str]:
        """The digits recipe for the embedded digits, the fashion-mnist recipe for an IDX folder; the class
        defaults (the ImageNet recipe) for an image folder."""
        from ...data.idx import is_idx_folder

        data = options.get("data")
        if data in (None, "digits"):
            return "digits"
        return "fashion-mnist" if is_idx_folder(data) else None

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only (JSON-able, ``weights_only``-loadable)."""
        d = dataclasses.asdict(self)
        d["model_kwargs"] = plain(d["model_kwargs"])
        return d
