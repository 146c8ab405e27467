"""OpenMMLab integration (MMDetection 3.x / MMSegmentation 1.x / MMEngine) and the recipe's layer-wise lr decay.

Importing this module registers, in every OpenMMLab registry that is installed:

* the backbone ``UniRepLKNetBackbone`` (alias ``UniRepLKNet``) in ``MODELS`` of mmengine, mmdet and mmseg,
  with the official config keys (``depths``, ``dims``, ``drop_path_rate``, ``layer_scale_init_value``,
  ``kernel_sizes``, ``deploy``, ``with_cp``, ``init_cfg=dict(type='Pretrained', checkpoint=...)``,
  ``attempt_use_lk_impl``, ``use_sync_bn``); it returns the tuple of four LayerNorm-ed stage maps;
* the optimizer-wrapper constructor ``UniRepLKNetLearningRateDecayOptimizerConstructor`` (paramwise_cfg
  ``decay_rate``, ``decay_type`` 'layer_wise' | 'stage_wise', ``num_layers``, optional ``dw_scale``) in
  mmengine's ``OPTIM_WRAPPER_CONSTRUCTORS`` (mmdet's and mmseg's registries find it through their parent).

In a config: ``custom_imports = dict(imports=['unireplknet.tasks.dense.mm'], allow_failed_imports=False)``.

The lr-decay rule itself, :func:`get_layer_id` / :func:`layer_decay_param_groups`, needs no OpenMMLab package;
the command-line training of torchvision detectors and UperNet segmenters uses it too.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ...model import UniRepLKNet

__all__ = [
    "get_layer_id",
    "layer_decay_param_groups",
    "UniRepLKNetBackbone",
    "register_all",
    "REGISTERED",
]

_logger = logging.getLogger(__name__)

#: Where :func:`register_all` put the classes, e.g. ``{'mmdet.MODELS': 'UniRepLKNetBackbone', ...}``.
REGISTERED: Dict[str, str] = {}


# ----------------------------------------------------------------------------------------------- lr decay
def get_layer_id(name: str, num_layers: int, decay_type: str = "layer_wise", prefix: str = "backbone.") -> int:
    """The lr-decay group of parameter ``name`` (official ``UniRepLKNetLearningRateDecayOptimizerConstructor``).

    layer_wise: stem (``downsample_layers.0``) 0, stage 0 → 1, down-sampling 1 and stage 1 → 2,
    down-sampling 2 → 3, stage 2 block j → 3 + j // 3, down-sampling 3 and stage 3 → ``num_layers``,
    everything else (the per-stage norms, neck, heads) → ``num_layers + 1``.
    stage_wise: every down-sampling layer 0, stage i → i + 1, everything else ``num_layers + 1``.
    """
    if decay_type not in ("layer_wise", "stage_wise"):
        raise ValueError(f"decay_type must be 'layer_wise' or 'stage_wise', got {decay_type!r}")
    if not name.startswith(prefix):
        return num_layers + 1
    parts = name[len(prefix):].split(".")
    if len(parts) < 2 or parts[0] not in ("downsample_layers", "stages") or not parts[1].isdigit():
        return num_layers + 1
    stage = int(parts[1])
    if decay_type == "stage_wise":
        return 0 if parts[0] == "downsample_layers" else stage + 1
    if parts[0] == "downsample_layers":
        return {0: 0, 1: 2, 2: 3}.get(stage, num_layers)
    if stage == 0:
        return 1
    if stage == 1:
        return 2
    if stage == 2:
        block = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
        return 3 + block // 3
    return num_layers


def _no_weight_decay(name: str, param: torch.Tensor) -> bool:
    # The recipe: 1-D parameters (norm affine, layer scale) and biases get no weight decay.
    return param.ndim == 1 or name.endswith(".bias")


def layer_decay_param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    decay_rate: float = 1.0,
    num_layers: int = 12,
    decay_type: str = "layer_wise",
    prefix: str = "backbone.",
    dw_scale: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """Optimizer parameter groups with the recipe's lr scales and weight-decay exemptions.

    Group ``id`` gets ``lr_scale = decay_rate ** (num_layers + 1 - id)`` (so the heads keep the base lr), ``lr``
    = base lr × lr_scale; parameters whose name contains ``dwconv`` are scaled by ``dw_scale`` as well.
    ``prefix`` is where the UniRepLKNet sits in ``model`` (``backbone.`` for MMDet/MMSeg and the UperNet
    segmenter, ``backbone.body.`` for torchvision detectors, ``''`` for a bare backbone). Every group also
    carries ``lr_scale`` and ``group_name`` (schedulers multiply their factor by the group's base ``lr``).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    groups: Dict[str, Dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer_id = get_layer_id(name, num_layers, decay_type, prefix)
        no_decay = _no_weight_decay(name, param)
        scale = decay_rate ** (num_layers + 1 - layer_id)
        is_dw = dw_scale is not None and "dwconv" in name
        if is_dw:
            scale *= dw_scale
        key = f"layer_{layer_id}_{'no_decay' if no_decay else 'decay'}{'_dw' if is_dw else ''}"
        if key not in groups:
            groups[key] = dict(params=[], param_names=[], lr=lr * scale, lr_scale=scale, group_name=key,
                               weight_decay=0.0 if no_decay else weight_decay)
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return list(groups.values())


# ----------------------------------------------------------------------------------------------- backbone
class UniRepLKNetBackbone(UniRepLKNet):
    """The official MMDet/MMSeg backbone: features mode, 3 input channels, SyncBN in the blocks.

    The constructor keeps the official keywords; with ``init_cfg=dict(type='Pretrained', checkpoint=path)``,
    :meth:`init_weights` (which MMEngine's runner calls after building the model) loads an official classification
    checkpoint (classifier dropped, everything else strict) or a detection/segmentation
    checkpoint (``backbone.`` keys). ``forward`` returns a tuple of the four stage maps (strides 4–32).
    """

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 27, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        kernel_sizes: Optional[Sequence[Sequence[int]]] = None,
        deploy: bool = False,
        with_cp: bool = False,
        init_cfg: Optional[Dict[str, Any]] = None,
        attempt_use_lk_impl: bool = False,
        use_sync_bn: bool = True,
        in_chans: int = 3,
    ):
        init_cfg = dict(init_cfg) if init_cfg else None
        if init_cfg is not None and init_cfg.get("type", "Pretrained") != "Pretrained":
            raise ValueError(f"UniRepLKNetBackbone supports init_cfg type 'Pretrained' only, got {init_cfg['type']!r}")
        super().__init__(
            in_chans=in_chans, num_classes=None, depths=depths, dims=dims, drop_path_rate=drop_path_rate,
            layer_scale_init_value=layer_scale_init_value,
            kernel_sizes=None if kernel_sizes is None else tuple(tuple(k) for k in kernel_sizes),
            deploy=deploy, with_cp=with_cp, init_cfg=init_cfg, attempt_use_lk_impl=attempt_use_lk_impl,
            use_sync_bn=use_sync_bn,
        )
        self.is_init = False  # MMEngine's runner calls init_weights(), which loads init_cfg['checkpoint']

    def init_weights(self) -> None:
        """Called by MMEngine's model initialisation: loads ``init_cfg['checkpoint']`` (official or own layout)."""
        super().init_weights()
        self.is_init = True

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:  # type: ignore[override]
        return tuple(self.forward_intermediates(x, intermediates_only=True))


# ----------------------------------------------------------------------------------------------- registries
def _make_constructor_class():
    from mmengine.optim import DefaultOptimWrapperConstructor

    class UniRepLKNetLearningRateDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
        """Layer-wise / stage-wise lr decay for UniRepLKNet backbones (the official paramwise_cfg keys)."""

        def add_params(self, params: List[dict], module: nn.Module, **kwargs: Any) -> None:
            cfg = dict(self.paramwise_cfg)
            num_layers = int(cfg.get("num_layers", 12))
            decay_rate = float(cfg.get("decay_rate", 1.0))
            decay_type = cfg.get("decay_type", "layer_wise")
            groups = layer_decay_param_groups(
                module, self.base_lr, self.base_wd or 0.0, decay_rate, num_layers, decay_type,
                prefix="backbone.", dw_scale=cfg.get("dw_scale"),
            )
            for g in groups:
                g.pop("param_names")
                g.pop("group_name")
                params.append(g)
            _logger.info("layer-decay groups: %s", {round(g["lr_scale"], 6) for g in groups})

    UniRepLKNetLearningRateDecayOptimizerConstructor.__qualname__ = "UniRepLKNetLearningRateDecayOptimizerConstructor"
    UniRepLKNetLearningRateDecayOptimizerConstructor.__module__ = __name__
    return UniRepLKNetLearningRateDecayOptimizerConstructor


def _register(registry: Any, where: str, cls: type, names: Sequence[str]) -> None:
    for name in names:
        registry.register_module(name=name, module=cls, force=True)
        REGISTERED[f"{where}:{name}"] = cls.__name__


def register_all() -> Dict[str, str]:
    """Register the backbone and the optimizer constructor with every installed OpenMMLab registry.

    Returns :data:`REGISTERED`. Missing packages are skipped silently (this runs on import); a package that is
    installed but fails to import (e.g. mmdet without a compatible mmcv) is logged.
    """
    try:
        from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    except ImportError:
        return REGISTERED
    _register(MODELS, "mmengine.MODELS", UniRepLKNetBackbone, ("UniRepLKNetBackbone", "UniRepLKNet"))
    _register(OPTIM_WRAPPER_CONSTRUCTORS, "mmengine.OPTIM_WRAPPER_CONSTRUCTORS", _constructor(),
              ("UniRepLKNetLearningRateDecayOptimizerConstructor",))
    for package in ("mmdet", "mmseg"):
        try:
            registry = __import__(f"{package}.registry", fromlist=["MODELS"])
        except ImportError as err:
            if getattr(err, "name", None) not in (package, None):
                _logger.info("%s is installed but its registry did not import (%s); not registered there",
                             package, err)
            continue
        except Exception as err:  # e.g. mmdet's assertion on the mmcv version
            _logger.info("%s did not import (%s: %s); not registered there", package, type(err).__name__, err)
            continue
        _register(registry.MODELS, f"{package}.MODELS", UniRepLKNetBackbone, ("UniRepLKNetBackbone", "UniRepLKNet"))
    return REGISTERED


_CONSTRUCTOR: Optional[type] = None


def _constructor() -> type:
    global _CONSTRUCTOR
    if _CONSTRUCTOR is None:
        _CONSTRUCTOR = _make_constructor_class()
    return _CONSTRUCTOR


def __getattr__(name: str) -> Any:
    # The constructor class exists only where mmengine is installed; build it on first access.
    if name == "UniRepLKNetLearningRateDecayOptimizerConstructor":
        try:
            return _constructor()
        except ImportError:
            raise ImportError("the optimizer constructor needs mmengine: pip install 'unireplknet[mm]'") from None
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_all()
