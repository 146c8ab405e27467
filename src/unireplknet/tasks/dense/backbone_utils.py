"""The parts every dense model shares: the backbone (a features-mode UniRepLKNet or a timm peer), its checks,
the feature pyramid (FPN) and the anchors, and the argument checks of the detector builders.

The detectors (:mod:`.detection`, :mod:`.cascade`) and the segmenter (:mod:`.segmentation`) build on these;
none of them imports another for them.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ...model import UniRepLKNet

__all__ = ["is_timm_peer", "TimmFeatureBackbone", "DenseBackbone", "check_dense_backbone", "dense_backbone_strides",
           "build_backbone", "UniRepLKNetFPN", "anchor_generator", "check_detector_args", "check_num_classes",
           "backbone_body", "require_torchvision"]

_logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


def require_torchvision():
    try:
        import torchvision  # noqa: F401
        from torchvision.models import detection  # noqa: F401
    except ImportError:  # pragma: no cover - torchvision ships with the project's torch here
        raise ImportError("detection needs torchvision: pip install 'unireplknet[detection]'") from None



def is_timm_peer(model: Any) -> bool:
    """Whether ``model`` names a timm model other than a UniRepLKNet (a *peer* backbone such as
    ``convnext_atto`` or ``resnet18``), decided as the engine's model factory decides it."""
    if not isinstance(model, str) or model == "custom" or model.startswith("unireplknet"):
        return False
    import timm

    from ... import zoo

    base = model.split(".")[0]
    return base not in zoo.VARIANTS and timm.is_model(base)


class TimmFeatureBackbone(nn.Module):
    """A timm model as a dense backbone: ``timm.create_model(name, features_only=True)`` keeping its last four
    feature levels, with the interface the necks and heads read from a features-mode UniRepLKNet.

    ``dims`` (channels) and ``strides`` come from timm's ``feature_info``; ``forward_intermediates(x, indices)``
    returns the chosen levels' maps as UniRepLKNet's does. Four levels whose stride doubles from one to the next
    are required (FPN, RoIAlign level mapping and UperNet assume a pyramid like strides 4, 8, 16, 32): a
    hierarchical ConvNet (ConvNeXt, ResNet, EfficientNet …) fits, a plain ViT (every level stride 16) does not.
    Built through the engine's one model factory (:func:`unireplknet.factory.build_model`), so ``--model`` means
    the same in every task.
    """

    num_levels = 4

    def __init__(self, name: str, model_kwargs: Optional[Mapping[str, Any]] = None, drop_path_rate: float = 0.0,
                 checkpoint: Optional[PathLike] = None, with_cp: bool = False):
        super().__init__()
        from ...factory import build_model

        kwargs: Dict[str, Any] = dict(model_kwargs or {})
        kwargs.update(features_only=True, out_indices=tuple(range(-self.num_levels, 0)))
        if checkpoint is not None:  # timm loads it (weights_only / safetensors) before cutting off the classifier
            kwargs["pretrained_cfg_overlay"] = dict(file=str(checkpoint))
        try:
            body = build_model(name, num_classes=0, model_kwargs=kwargs, pretrained=checkpoint is not None,
                               drop_path_rate=drop_path_rate)
            info = body.feature_info
            dims, strides = tuple(info.channels()), tuple(info.reduction())
        except (TypeError, ValueError, AttributeError, AssertionError, RuntimeError, IndexError) as e:
            weights = f" and load {checkpoint} into it" if checkpoint is not None else ""
            raise ValueError(
                f"--model {name}: timm cannot build it as a feature extractor{weights} (timm.create_model(..., "
                f"features_only=True, out_indices=(-4, -3, -2, -1)) failed: {e}). Detection and segmentation need "
                "a timm model with features_only support and four feature levels, e.g. convnext_atto, resnet18 "
                "or efficientnet_b0; or use a UniRepLKNet (unireplknet_a … unireplknet_xl, or 'custom')."
            ) from None
        if len(strides) != self.num_levels or any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise ValueError(
                f"--model {name}: its timm feature levels have strides {list(strides)}, but the dense heads need "
                f"{self.num_levels} levels whose stride doubles from one to the next (e.g. 4, 8, 16, 32) to build "
                "a feature pyramid; use a hierarchical backbone (convnext_*, resnet*, efficientnet_* …) or a "
                "UniRepLKNet."
            )
        if with_cp and hasattr(body, "set_grad_checkpointing"):
            body.set_grad_checkpointing(True)
        self.body = body
        self.model_name = name
        self.dims, self.strides = dims, strides

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Sequence[int]] = None,
                              stop_early: bool = True, intermediates_only: bool = True) -> List[torch.Tensor]:
        """The feature maps of levels ``indices`` (default all four), as UniRepLKNet's method of that name."""
        if not intermediates_only:
            raise ValueError("a timm feature extractor has no final output besides its feature levels")
        feats = self.body(x)
        return feats if indices is None else [feats[i] for i in indices]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.body(x)


DenseBackbone = Union[UniRepLKNet, TimmFeatureBackbone]


def dense_backbone_strides(body: nn.Module) -> Tuple[int, ...]:
    """Strides of the four levels a dense head reads (UniRepLKNet: 4, 8, 16, 32)."""
    return tuple(getattr(body, "strides", (4, 8, 16, 32)))


def check_dense_backbone(body: Any, who: str) -> None:
    """Refuse anything but a features-mode UniRepLKNet or a :class:`TimmFeatureBackbone`."""
    if isinstance(body, TimmFeatureBackbone):
        return
    if not isinstance(body, UniRepLKNet) or body.output_mode != "features":
        raise TypeError(
            f"{who} needs a features-mode UniRepLKNet (num_classes=None) or a timm peer backbone; build it with "
            "unireplknet.tasks.dense.detection.build_backbone(...)"
        )


def build_backbone(
    model: str = "unireplknet_t",
    *,
    checkpoint: Optional[PathLike] = None,
    model_kwargs: Optional[Mapping[str, Any]] = None,
    drop_path_rate: float = 0.0,
    with_cp: bool = False,
    deploy: bool = False,
    in_chans: int = 3,
    use_sync_bn: bool = False,
) -> DenseBackbone:
    """A UniRepLKNet in the official features mode (``num_classes=None``: four LayerNorm-ed stage maps), or a
    timm peer backbone (:class:`TimmFeatureBackbone`) for any other timm model name.

    ``model`` is a variant name (``unireplknet_a`` … ``unireplknet_xl``), ``'custom'`` with ``model_kwargs``
    (depths, dims, kernel_sizes), or a timm model (``convnext_atto``, ``resnet18`` …; ``model_kwargs`` go to its
    constructor). ``checkpoint`` is loaded strictly with the classifier dropped: an official classification
    file, or a detection/segmentation file with ``backbone.`` keys; for a timm model, a file of that model
    (timm loads it, classifier dropped).
    """
    from ...checkpoint import load_checkpoint
    from ...zoo import variant_config

    if is_timm_peer(model):
        if deploy or in_chans != 3 or use_sync_bn:
            raise ValueError(f"deploy, in_chans and use_sync_bn are UniRepLKNet options; {model} is a timm model")
        return TimmFeatureBackbone(model, model_kwargs, drop_path_rate, checkpoint, with_cp)
    kwargs: Dict[str, Any] = dict(model_kwargs or {})
    if model != "custom":
        kwargs = {**variant_config(model), **kwargs}
    elif not kwargs:
        raise ValueError("model='custom' needs model_kwargs (depths, dims, kernel_sizes)")
    if kwargs.get("kernel_sizes") is not None:
        kwargs["kernel_sizes"] = tuple(tuple(int(k) for k in stage) for stage in kwargs["kernel_sizes"])
    backbone = UniRepLKNet(
        in_chans=in_chans, num_classes=None, drop_path_rate=drop_path_rate, with_cp=with_cp, deploy=deploy,
        use_sync_bn=use_sync_bn, **kwargs,
    )
    if checkpoint is not None:
        load_checkpoint(backbone, checkpoint, drop_head=True)
        _logger.info("backbone initialised from %s", checkpoint)
    return backbone


class UniRepLKNetFPN(nn.Module):
    """UniRepLKNet stage maps → torchvision ``FeaturePyramidNetwork``: the ``backbone`` torchvision detectors take.

    Args:
        body: a features-mode UniRepLKNet or a timm peer backbone (see :func:`build_backbone`); the pyramid's
            input channels are its ``dims`` (a timm model's ``feature_info`` channels).
        out_channels: channels of every pyramid level.
        returned_stages: which stages (0 … 3, strides 4 … 32) feed the pyramid.
        extra_blocks: ``'maxpool'`` (one extra stride-2× level, R-CNN style), ``'p6p7'`` (two extra conv
            levels from P5, RetinaNet/FCOS style) or ``None``.

    ``forward`` returns an ordered dict ``{'0': P_first, …, 'pool' | 'p6', 'p7'}`` as torchvision expects.
    """

    def __init__(
        self,
        body: DenseBackbone,
        out_channels: int = 256,
        returned_stages: Sequence[int] = (0, 1, 2, 3),
        extra_blocks: Optional[str] = "maxpool",
    ):
        super().__init__()
        require_torchvision()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7

        check_dense_backbone(body, "UniRepLKNetFPN")
        returned_stages = tuple(sorted(int(i) for i in returned_stages))
        if not returned_stages or any(i not in range(4) for i in returned_stages):
            raise ValueError(f"returned_stages must be a non-empty subset of 0..3, got {returned_stages}")
        extra: Optional[nn.Module]
        if extra_blocks == "maxpool":
            extra = LastLevelMaxPool()
        elif extra_blocks == "p6p7":
            extra = LastLevelP6P7(out_channels, out_channels)
        elif extra_blocks is None:
            extra = None
        else:
            raise ValueError(f"extra_blocks must be 'maxpool', 'p6p7' or None, got {extra_blocks!r}")
        self.body = body
        self.returned_stages = returned_stages
        self.fpn = FeaturePyramidNetwork([body.dims[i] for i in returned_stages], out_channels, extra_blocks=extra)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats = self.body.forward_intermediates(
            x, indices=list(self.returned_stages), stop_early=True, intermediates_only=True
        )
        return self.fpn(OrderedDict((str(k), f) for k, f in enumerate(feats)))


# ----------------------------------------------------------------------------------------------- detectors
def anchor_generator(base_sizes: Sequence[int], octave_scales: bool):
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if octave_scales:  # RetinaNet: three scales per octave
        sizes = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in base_sizes)
    else:
        sizes = tuple((s,) for s in base_sizes)
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def check_sizes(min_size: int, max_size: int) -> None:
    if min_size < 32:
        raise ValueError(
            f"min_size={min_size}: images are resized so their shorter side is min_size, and the stride-32 "
            "backbone needs at least 32 pixels; use min_size >= 32 (torchvision pads the rest to a multiple of 32)"
        )
    if max_size < min_size:
        raise ValueError(f"max_size ({max_size}) must be >= min_size ({min_size})")


def check_num_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes (object categories, without background) must be >= 1, got {num_classes!r}")


def check_detector_args(
    num_classes: int, min_size: int, max_size: int, anchor_sizes: Sequence[int], levels: str
) -> None:
    """The argument checks every detector builder shares (``levels`` names its five pyramid levels)."""
    check_num_classes(num_classes)
    check_sizes(min_size, max_size)
    if len(anchor_sizes) != 5:
        raise ValueError(f"anchor_sizes needs one base size per pyramid level (5: {levels}), got {len(anchor_sizes)}")


def backbone_body(model: Union[str, DenseBackbone], checkpoint, model_kwargs, drop_path_rate, with_cp, deploy) -> DenseBackbone:
    if isinstance(model, (UniRepLKNet, TimmFeatureBackbone)):
        if checkpoint is not None:
            raise ValueError("pass either a built backbone or a checkpoint to build it from, not both")
        return model
    return build_backbone(model, checkpoint=checkpoint, model_kwargs=model_kwargs, drop_path_rate=drop_path_rate,
                          with_cp=with_cp, deploy=deploy)
