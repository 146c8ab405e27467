"""Weights into a model and out of it: :func:`load_checkpoint`, timm's pretrained filter, :func:`save_model`.

Loading is strict (:func:`unireplknet.checkpoint.layouts.fit_to_model`): a checkpoint either loads completely or
raises :class:`CheckpointMismatchError`. The only tolerated difference is a classifier of another class count,
dropped with a warning when the caller asks for it (fine-tuning), and the features-mode LayerNorms
``norm0…3`` that a classifier checkpoint lacks. Building a model from a file is
:func:`unireplknet.load_model`, in the layer above the model.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from torch import nn

from .io import PathLike, StateDict, read_state_dict, unwrap_state_dict, write_safetensors
from .layouts import (
    STEM_WEIGHT,
    differs_only_in_input_channels,
    fit_to_model,
    infer_config,
    is_deploy_layout,
    strip_prefixes,
    unireplknet_class,
)

__all__ = ["load_checkpoint", "checkpoint_filter_fn", "save_model"]

_logger = logging.getLogger(__name__)


def _trains_but_file_deploys(model: nn.Module, sd: Mapping[str, Any]) -> bool:
    return unireplknet_class(model) is not None and not model.deploy and is_deploy_layout(sd)


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> StateDict:
    """timm's pretrained filter: official layouts in, exactly the model's keys out (head dropped on class
    mismatch); the model module hands it to timm as part of the timm API."""
    sd = strip_prefixes(unwrap_state_dict(state_dict, source="pretrained checkpoint"))
    if _trains_but_file_deploys(model, sd):
        # A re-parameterized file (e.g. timm's save_for_hf of a deploy model): the model takes its structure.
        _logger.info("the pretrained checkpoint is in the deploy layout: re-parameterizing the model to load it")
        model.reparameterize_unireplknet()
    # A model with another input channel count (e.g. in_chans=1 for grey images): timm adapts the stem conv
    # (the pretrained cfg's first_conv) after this filter, so let the RGB stem through unchanged here.
    stem = STEM_WEIGHT
    target = model.state_dict().get(stem)
    rgb_stem = sd.get(stem)
    other_chans = differs_only_in_input_channels(rgb_stem, target)
    if other_chans:
        sd[stem] = target
    sd = fit_to_model(sd, model, drop_mismatched_head=True, source="the pretrained checkpoint")
    if other_chans:
        sd[stem] = rgb_stem
    return sd


def load_checkpoint(
    model: nn.Module,
    checkpoint: Union[PathLike, Mapping[str, Any]],
    drop_mismatched_head: bool = False,
    drop_head: bool = False,
    use_ema: bool = False,
) -> nn.Module:
    """Load an official or own checkpoint (file path or state dict) into ``model`` strictly.

    A training-layout checkpoint loads into a deploy model (it is re-parameterized on the fly); a deploy-layout
    checkpoint loaded into a training-structure UniRepLKNet re-parameterizes the model first. ``drop_head``
    ignores the checkpoint's classifier entirely (backbone initialisation); ``drop_mismatched_head`` only when
    its class count differs (fine-tuning, with a warning).
    """
    if isinstance(checkpoint, Mapping):
        sd, source = unwrap_state_dict(checkpoint, use_ema=use_ema), "the state dict"
    else:
        sd, source = read_state_dict(checkpoint, use_ema=use_ema), str(checkpoint)
    sd = strip_prefixes(sd)
    if drop_head:
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
        target = model.state_dict()
        for k in ("head.weight", "head.bias"):
            if k in target:
                sd[k] = target[k]
    if _trains_but_file_deploys(model, sd):
        _logger.info("%s is in the deploy layout: re-parameterizing the model before loading", source)
        model.reparameterize_unireplknet()
    sd = fit_to_model(sd, model, drop_mismatched_head=drop_mismatched_head, source=source)
    model.load_state_dict(sd, strict=True)
    return model


def save_model(model: nn.Module, path: PathLike, metadata: Optional[Mapping[str, str]] = None) -> Path:
    """Write a model's weights and constructor config to ``path`` as safetensors, atomically.

    :func:`unireplknet.load_model` rebuilds the model from it without being told the variant.
    """
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    config = infer_config(tensors)
    config["kernel_sizes"] = [list(k) for k in config["kernel_sizes"]]
    meta = {"format": "pt", "unireplknet_config": json.dumps(config)}
    meta.update(metadata or {})
    return write_safetensors(tensors, path, meta)
