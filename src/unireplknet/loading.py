"""Models from checkpoint files: :func:`load_model` builds the UniRepLKNet a file was saved from.

One layer above the model (the checkpoint package below it reads files and maps layouts but builds no model).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from .checkpoint import (CheckpointMismatchError, PathLike, StateDict, check_model_config, convert_to_deploy_layout,
                         infer_config, load_checkpoint, read_state_dict, strip_prefixes)
from .limits import build_checked
from .model import UniRepLKNet

__all__ = ["load_model", "to_deploy_state_dict"]


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu", use_ema: bool = False,
               model_config: Optional[Mapping[str, Any]] = None, **overrides: Any) -> nn.Module:
    """Build the UniRepLKNet a checkpoint was saved from and load it (any official or own file).

    The structure (variant, training or deploy, class count, input channels) is inferred from the keys and
    shapes of its tensors, so official files need no metadata either. ``use_ema`` takes the EMA weights of a
    training checkpoint that has them. ``model_config``, the run's stored description of the network (when the
    file has one), must describe the same network as the tensors: a field that does not (another variant, class
    count or input channel count) or is missing is an error naming it, before anything is built.
    """
    sd = read_state_dict(path, use_ema=use_ema)
    empty = [k for k, v in sd.items() if v.numel() == 0]
    if empty:  # shapes without values: what they announce (a class count, a width) is not to be believed
        from .limits import LimitError

        raise LimitError(f"{path} holds zero-element tensors ({', '.join(f'{k} {tuple(sd[k].shape)}' for k in empty[:2])}"
                         f"{f' and {len(empty) - 2} more' if len(empty) > 2 else ''}); it holds no weights for them. "
                         "It is not a checkpoint a run wrote: use the file the run or the download gave")
    try:
        config = infer_config(sd)  # a tensor of the wrong rank (a 1-D stem weight) is named here
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f"{path}: {e}") from None
    if model_config:
        check_model_config(model_config, config, str(path))
    config.update(overrides)
    model = build_checked(lambda: UniRepLKNet(**config), strip_prefixes(sd), str(path))
    load_checkpoint(model, sd)
    return model.to(device).eval()


def to_deploy_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Convert a training-layout state dict into the deploy layout (re-parameterizes a temporary model)."""
    return convert_to_deploy_layout(state_dict, UniRepLKNet)
