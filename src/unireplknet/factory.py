"""The one model factory of every task: a UniRepLKNet variant, ``custom``, or another timm model as a peer backbone.

:func:`build_model` is what every task (images, audio, video, point clouds, time series, dense prediction) and
the command line call; :func:`adapt_stem_to_input_channels` lets an RGB checkpoint start a grey-input model the
way timm adapts ``--pretrained`` weights.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from torch import nn

__all__ = ["build_model", "unknown_variant_message", "adapt_stem_to_input_channels"]

_logger = logging.getLogger(__name__)


def unknown_variant_message(name: str) -> str:
    import timm

    known = ", ".join(timm.list_models("unireplknet_*")) or "unireplknet_a … unireplknet_xl"
    return (f"unknown model {name!r}; choose one of: {known} ('custom' with --model-kwargs), or any timm model name "
            "(timm.list_models(), e.g. convnext_tiny) as a peer backbone")


def build_model(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    model_kwargs: Optional[Dict[str, Any]] = None,
    pretrained: bool = False,
    **overrides: Any,
) -> nn.Module:
    """A UniRepLKNet by variant name (``unireplknet_a`` … ``unireplknet_xl``, via timm), ``'custom'``, or any
    other timm model (``convnext_tiny``, ``resnet50`` …) as a peer backbone for the same task.

    ``'custom'`` passes ``model_kwargs`` (depths, dims, kernel_sizes …) to :class:`~unireplknet.UniRepLKNet`;
    ``overrides`` (drop_path_rate, layer_scale_init_value, head_init_scale, use_sync_bn, deploy) go to both.
    Another timm model gets ``model_kwargs`` and ``drop_path_rate`` (its own constructor checks them).
    """
    import inspect

    import timm

    from . import zoo  # registers the variants with timm
    from .model import UniRepLKNet

    kwargs = dict(model_kwargs or {})
    if name != "custom" and not name.startswith("unireplknet") and not name.split(".")[0] in zoo.VARIANTS \
            and timm.is_model(name.split(".")[0]):
        try:
            def peer(weights: bool) -> nn.Module:
                return timm.create_model(name, pretrained=weights, num_classes=num_classes, in_chans=in_chans,
                                         drop_path_rate=overrides.get("drop_path_rate", 0.0), **kwargs)

            _check_weights_memory(lambda: peer(False), name, num_classes)
            return peer(pretrained)
        except TypeError as e:  # an option that model does not take
            raise ValueError(f"--model {name} --model-kwargs: {e}") from None
    known = set(inspect.signature(UniRepLKNet.__init__).parameters) - {"self", "in_chans", "num_classes"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"--model-kwargs: unknown UniRepLKNet argument(s) {', '.join(unknown)}; the known ones are "
                         f"{', '.join(sorted(known))}")
    if name == "custom":
        if pretrained:
            raise ValueError("--pretrained needs a named variant (e.g. unireplknet_a), not 'custom'")
        if "kernel_sizes" in kwargs and kwargs["kernel_sizes"] is not None:
            kwargs["kernel_sizes"] = tuple(tuple(k) for k in kwargs["kernel_sizes"])
        _check_weights_memory(lambda: UniRepLKNet(in_chans=in_chans, num_classes=num_classes, **kwargs,
                                                  **overrides), name, num_classes)
        return UniRepLKNet(in_chans=in_chans, num_classes=num_classes, **kwargs, **overrides)
    full = name if name.startswith("unireplknet_") else f"unireplknet_{name}"
    if full.split(".")[0] not in timm.list_models("unireplknet_*"):
        raise ValueError(unknown_variant_message(name))
    return zoo.create_model(full, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans,
                            **kwargs, **overrides)


def _check_weights_memory(build, name: str, num_classes: int) -> None:
    """Refuse a model whose weights alone exceed the memory limit (dims of 100,000 would ask for 180 GB), counted
    on the meta device before anything is allocated."""
    from .limits import check_memory, model_bytes

    check_memory(model_bytes(build), f"--model {name} with {num_classes:,} classes (its weights)",
                 "choose smaller --model-kwargs dims/depths or fewer classes")


def adapt_stem_to_input_channels(path: str, model: nn.Module) -> Any:
    """``path``, or its state dict with an RGB stem adapted to the model's input channels the way timm adapts
    ``--pretrained`` weights (``in_chans=1``: the sum over R, G, B), so a downloaded official file given as
    ``--checkpoint`` works like ``--pretrained`` for grey images."""
    from .checkpoint import STEM_WEIGHT, differs_only_in_input_channels, read_state_dict, strip_prefixes

    target = model.state_dict().get(STEM_WEIGHT)
    if target is None or target.shape[1] == 3:
        return path
    sd = strip_prefixes(read_state_dict(path))
    w = sd.get(STEM_WEIGHT)
    if not differs_only_in_input_channels(w, target) or w.shape[1] != 3:
        return path  # nothing to adapt, or a real mismatch that load_checkpoint explains with the file's name
    from timm.models import adapt_input_conv

    _logger.info("%s: RGB stem adapted to %d input channel(s)", path, target.shape[1])
    sd[STEM_WEIGHT] = adapt_input_conv(target.shape[1], w).to(w.dtype)
    return sd
