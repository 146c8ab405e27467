"""UniRepLKNet weights to and from files: the package's user-facing checkpoint API.

:func:`load_model` builds the model a file was saved from, :func:`save_model` writes one; the reading and
writing itself is :mod:`unireplknet.checkpoint_io` (a leaf that imports no model code), the mapping of the
official layouts onto the model (``load_checkpoint``, ``checkpoint_filter_fn``, ``infer_config`` …) lives beside
the model in :mod:`unireplknet.model`; both are re-exported here.

* Files are read with ``torch.load(weights_only=True)`` or from safetensors — never by unpickling arbitrary
  objects.
* Every official layout is accepted: tensors at the top level, under ``model`` (classification), or under
  ``state_dict`` with a ``backbone.`` prefix (MMDetection / MMSegmentation); training or deploy structure.
* Loading is strict: a checkpoint either loads completely or raises :class:`CheckpointMismatchError` naming
  the missing, unexpected and mis-shaped tensors and, where it can tell, the variant the file belongs to.
  The only tolerated difference is a classifier of another class count, dropped with a warning when the caller
  asks for it (fine-tuning), and the features-mode LayerNorms ``norm0…3`` that a classifier checkpoint lacks.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from .checkpoint_io import (
    CheckpointError,
    CheckpointMismatchError,
    PathLike,
    PretrainedWeightsUnavailableError,
    StateDict,
    read_state_dict,
    unwrap_state_dict,
    write_safetensors,
)
from .model import (
    STEM_WEIGHT,
    UniRepLKNet,
    checkpoint_filter_fn,
    differs_only_in_input_channels,
    infer_config,
    is_deploy_layout,
    load_checkpoint,
    load_state_dict_pre_hook,
    reparameterize,
    strip_prefixes,
    to_deploy_state_dict,
)

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "PretrainedWeightsUnavailableError",
    "read_state_dict",
    "unwrap_state_dict",
    "strip_prefixes",
    "infer_config",
    "is_deploy_layout",
    "checkpoint_filter_fn",
    "load_state_dict_pre_hook",
    "differs_only_in_input_channels",
    "STEM_WEIGHT",
    "load_checkpoint",
    "save_model",
    "load_model",
    "to_deploy_state_dict",
]

# ----------------------------------------------------------------------------------------------- saving
def save_model(model: nn.Module, path: PathLike, metadata: Optional[Mapping[str, str]] = None) -> Path:
    """Write a model's weights and constructor config to ``path`` as safetensors, atomically.

    The file is written next to its destination and renamed into place, so an interrupted save never
    destroys an earlier file. :func:`load_model` rebuilds the model from it without being told the variant.
    """
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    config = infer_config(tensors)
    config["kernel_sizes"] = [list(k) for k in config["kernel_sizes"]]
    meta = {"format": "pt", "unireplknet_config": json.dumps(config)}
    meta.update(metadata or {})
    return write_safetensors(tensors, path, meta)


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu", use_ema: bool = False,
               **overrides: Any) -> nn.Module:
    """Build the UniRepLKNet a checkpoint was saved from and load it (any official or own file).

    The structure (variant, training or deploy, class count, input channels) is inferred from the keys and
    shapes of its tensors, so official files need no metadata either. ``use_ema`` takes the EMA weights of a
    training checkpoint that has them.
    """
    sd = read_state_dict(path, use_ema=use_ema)
    config = infer_config(sd)
    config.update(overrides)
    model = UniRepLKNet(**config)
    load_checkpoint(model, sd)
    return model.to(device).eval()
