"""The official state-dict layouts and how they map onto the model: prefixes, structure, head, variant.

Every official layout is accepted: tensors at the top level, under ``model`` (classification), or under
``state_dict`` with a ``backbone.`` prefix (MMDetection / MMSegmentation); training or deploy structure.
Fitting is strict: a state dict either fits the model completely or :class:`CheckpointMismatchError` names the
missing, unexpected and mis-shaped tensors and, where it can tell, the variant the file belongs to.

This package sits below :mod:`unireplknet.model` (the model imports it), so it never imports the model: it
recognises a UniRepLKNet by the class on the model's own bases (:func:`unireplknet_class`) and converts through
the model's own methods.
"""
from __future__ import annotations

import logging
import re
import warnings
from typing import Any, Dict, List, Mapping, MutableMapping, Optional, Tuple

import torch
from torch import nn

from .io import CheckpointError, CheckpointMismatchError, StateDict

__all__ = [
    "ARCHITECTURES",
    "STEM_WEIGHT",
    "strip_prefixes",
    "is_deploy_layout",
    "infer_config",
    "downsample_norm_of",
    "check_model_config",
    "require_fields",
    "variant_name",
    "differs_only_in_input_channels",
    "unireplknet_class",
    "convert_to_deploy_layout",
    "fit_to_model",
    "load_state_dict_pre_hook",
]

_logger = logging.getLogger(__name__)

_PREFIXES = ("module.", "_orig_mod.")

#: depths and dims of the official variants (the zoo adds the paper's numbers), to name a checkpoint's variant.
ARCHITECTURES: Dict[str, Tuple[Tuple[int, int, int, int], Tuple[int, int, int, int]]] = {
    "a": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "f": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "p": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "n": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "t": ((3, 3, 18, 3), (80, 160, 320, 640)),
    "s": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "b": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "l": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "xl": ((3, 3, 27, 3), (256, 512, 1024, 2048)),
}

#: The first (stem) convolution's weight: the one tensor whose shape depends on the input channel count.
STEM_WEIGHT = "downsample_layers.0.0.weight"

#: Where the model class is defined (this package cannot import it: the model imports this package).
_MODEL_CLASS = (__name__.split(".")[0] + ".model", "UniRepLKNet")


def unireplknet_class(model: nn.Module) -> Optional[type]:
    """The ``UniRepLKNet`` class among ``model``'s bases, or None: ``isinstance(model, UniRepLKNet)`` without
    importing the model module."""
    for cls in type(model).__mro__:
        if (cls.__module__, cls.__qualname__) == _MODEL_CLASS:
            return cls
    return None


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Remove DDP/compile prefixes; keep only the ``backbone.`` part of a detector/segmenter checkpoint."""
    out: StateDict = {}
    has_backbone = any(k.startswith("backbone.") for k in state_dict)
    for k, v in state_dict.items():
        for prefix in _PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix):]
        if has_backbone:
            if not k.startswith("backbone."):
                continue  # neck / heads of a detector or segmenter
            k = k[len("backbone."):]
        out[k] = v
    return out


# ----------------------------------------------------------------------------------------------- structure
def is_deploy_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for the deploy (re-parameterized) key layout, False for the training layout."""
    has_train = any(k.endswith((".act.1.beta", ".pwconv2.2.running_mean")) for k in state_dict)
    has_deploy = any(k.endswith(".pwconv2.0.bias") for k in state_dict)
    return has_deploy and not has_train


def infer_config(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """Constructor arguments of the model a state dict was saved from, read off its keys and shapes."""
    sd = strip_prefixes(state_dict)
    if "downsample_layers.0.0.weight" not in sd:
        raise CheckpointMismatchError("not a UniRepLKNet state dict: it has no 'downsample_layers.0.0.weight'")
    _check_ranks(sd)
    in_chans = sd["downsample_layers.0.0.weight"].shape[1]
    dims: List[int] = []
    depths: List[int] = []
    kernel_sizes: List[Tuple[int, ...]] = []
    for i in range(4):
        key = f"downsample_layers.{i}.0.weight" if i else "downsample_layers.0.3.weight"
        if key not in sd:
            raise CheckpointMismatchError(f"not a complete UniRepLKNet state dict: '{key}' is missing")
        dims.append(sd[key].shape[0])
        blocks = sorted({int(m.group(1)) for k in sd for m in [re.match(rf"stages\.{i}\.(\d+)\.", k)] if m})
        depths.append(len(blocks))
        stage_ks = []
        for j in blocks:
            w = sd.get(f"stages.{i}.{j}.dwconv.lk_origin.weight", sd.get(f"stages.{i}.{j}.dwconv.weight"))
            stage_ks.append(0 if w is None else int(w.shape[-1]))
        kernel_sizes.append(tuple(stage_ks))
    config: Dict[str, Any] = dict(
        in_chans=int(in_chans), depths=tuple(depths), dims=tuple(int(d) for d in dims),
        kernel_sizes=tuple(kernel_sizes), deploy=is_deploy_layout(sd),
    )
    config["downsample_norm"] = downsample_norm_of(sd, config["deploy"])
    if "head.weight" in sd:
        config["num_classes"] = int(sd["head.weight"].shape[0])
    elif "norm0.weight" in sd:
        config["num_classes"] = None
    else:
        config["num_classes"] = 0
    if not config["deploy"]:
        has_ls = any(re.fullmatch(r"stages\.\d+\.\d+\.gamma", k) for k in sd)
        config["layer_scale_init_value"] = 1e-6 if has_ls else None
    return config


def downsample_norm_of(state_dict: Mapping[str, torch.Tensor], deploy: bool) -> str:
    """``'batchnorm'`` or ``'layernorm'``: the norm after the first stem convolution says which norm the stem and
    down-sampling layers have — BatchNorm statistics, LayerNorm's affine pair, or (deploy layout) no tensors at
    all: a BatchNorm fused into the convolution."""
    if "downsample_layers.0.1.running_mean" in state_dict:
        return "batchnorm"
    if "downsample_layers.0.1.weight" in state_dict or not deploy:
        return "layernorm"
    return "batchnorm"


#: The rank (number of dimensions) and the shape's meaning of every tensor :func:`infer_config` reads a size from.
_RANKS = (
    (re.compile(r"stages\.\d+\.\d+\.dwconv\.(lk_origin\.)?weight"), 4, "(channels, 1, kernel, kernel)"),
    (re.compile(r"head\.weight"), 2, "(classes, features)"),
)
_DOWNSAMPLE_CONVS = {"downsample_layers.0.0.weight": "(channels/2, in_chans, 3, 3)",
                     "downsample_layers.0.3.weight": "(channels, channels/2, 3, 3)",
                     **{f"downsample_layers.{i}.0.weight": "(channels, previous channels, 3, 3)" for i in (1, 2, 3)}}


def _check_ranks(sd: Mapping[str, torch.Tensor]) -> None:
    """Every tensor whose sizes :func:`infer_config` reads must have the rank the architecture needs: a 1-D stem
    weight would otherwise end in an IndexError, or in a model built from a misread size."""
    for key, tensor in sd.items():
        shape = tuple(getattr(tensor, "shape", ()))
        if key in _DOWNSAMPLE_CONVS:
            rank, meaning = 4, _DOWNSAMPLE_CONVS[key]
        else:
            rank, meaning = next(((r, m) for pattern, r, m in _RANKS if pattern.fullmatch(key)), (None, None))
        if rank is not None and len(shape) != rank:
            raise CheckpointMismatchError(
                f"the tensor {key} has shape {shape} ({len(shape)}-D), but a UniRepLKNet needs a {rank}-D tensor "
                f"{meaning} there; the file was altered or is not a UniRepLKNet checkpoint")


def require_fields(config: Mapping[str, Any], fields: Any, source: str, field: str = "model_config") -> None:
    """Refuse a stored configuration that lacks any of ``fields``, naming the first one missing."""
    missing = [f for f in fields if f not in config]
    if missing:
        raise CheckpointMismatchError(
            f"{source}: the field {field} has no {missing[0]!r}{f' (nor {missing[1:]})' if len(missing) > 1 else ''}; "
            f"it holds {sorted(config)}. The file was altered or not written by unireplknet: use the file the run "
            "wrote")


def check_model_config(model_config: Mapping[str, Any], config: Mapping[str, Any], source: str) -> None:
    """Compare a run's stored ``model_config`` (``name``, ``model_kwargs``, ``num_classes``, ``in_chans``) with
    ``config``, the structure :func:`infer_config` read off the tensors; a field that names another network than
    the weights is an error naming the field and both values. Checked before any model is built."""
    require_fields(model_config, ("name", "num_classes", "in_chans"), source)
    name = str(model_config["name"])
    kwargs = model_config.get("model_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise CheckpointMismatchError(f"{source}: the field model_config.model_kwargs is a {type(kwargs).__name__}, "
                                      "not a mapping; the file was altered or not written by unireplknet")
    variant = name.split(".")[0]
    variant = variant[len("unireplknet_"):] if variant.startswith("unireplknet_") else variant
    expected: Dict[str, Any] = {}
    if variant in ARCHITECTURES:
        expected["depths"], expected["dims"] = ARCHITECTURES[variant]
    elif name != "custom":
        raise CheckpointMismatchError(f"{source}: the field model_config.name is {name!r}, which is no UniRepLKNet "
                                      f"variant (unireplknet_{', unireplknet_'.join(ARCHITECTURES)} or custom)")
    for key in ("depths", "dims"):
        if key in kwargs:
            expected[key] = kwargs[key]
    stored_norm = kwargs.get("downsample_norm", "layernorm")
    if "downsample_norm" in config and stored_norm != config["downsample_norm"]:
        raise CheckpointMismatchError(
            f"{source}: model_config.model_kwargs.downsample_norm is {stored_norm!r}, but the tensors hold "
            f"{config['downsample_norm']!r} stem/down-sampling norms; the metadata does not belong to these weights "
            "(edited or corrupt). Use the file the run wrote")
    tensors = variant_name(config) or "custom"
    for key, stored in expected.items():
        try:
            stored_value = tuple(int(v) for v in stored)
        except (TypeError, ValueError):
            stored_value = stored
        if stored_value != tuple(config[key]):
            where = (f"model_config.model_kwargs.{key} is" if key in kwargs
                     else f"model_config.name is {name!r}, with {key}")
            raise CheckpointMismatchError(
                f"{source}: {where} {stored_value}, but the tensors are a "
                f"{tensors} network with {key} {tuple(config[key])}; the metadata does not belong to these weights "
                "(edited or corrupt). Use the file the run wrote")
    for key in ("num_classes", "in_chans"):
        stored, actual = model_config[key], config.get(key)
        if key == "num_classes" and not actual:
            continue  # a headless backbone: no class count to compare
        if stored != actual:
            raise CheckpointMismatchError(
                f"{source}: model_config.{key} is {stored!r}, but the tensors hold {actual} "
                f"({'head.weight' if key == 'num_classes' else STEM_WEIGHT} {tuple(_shape_of(config, key))}); the "
                "metadata does not belong to these weights (edited or corrupt). Use the file the run wrote")


def _shape_of(config: Mapping[str, Any], key: str) -> Tuple[int, ...]:
    return (config["num_classes"], config["dims"][-1]) if key == "num_classes" else \
        (config["dims"][0] // 2, config["in_chans"], 3, 3)


def variant_name(config: Mapping[str, Any]) -> Optional[str]:
    """``unireplknet_<v>`` for the official variant with these ``depths`` and ``dims``, else None."""
    for name, (depths, dims) in ARCHITECTURES.items():
        if tuple(config["depths"]) == depths and tuple(config["dims"]) == dims:
            return f"unireplknet_{name}"
    return None


def differs_only_in_input_channels(weight: Optional[torch.Tensor], target: Optional[torch.Tensor]) -> bool:
    """True when both conv weights exist and have the same shape except their input-channel dimension."""
    return (
        weight is not None and target is not None and weight.dim() == 4 and target.dim() == 4
        and weight.shape[1] != target.shape[1]
        and weight.shape[:1] + weight.shape[2:] == target.shape[:1] + target.shape[2:]
    )


def convert_to_deploy_layout(state_dict: Mapping[str, torch.Tensor], model_class: type) -> StateDict:
    """A training-layout state dict in the deploy layout: ``model_class`` (UniRepLKNet) is built with the
    state dict's own config, loaded and re-parameterized; a deploy-layout state dict is returned as it is."""
    sd = strip_prefixes(state_dict)
    if is_deploy_layout(sd):
        return dict(sd)
    config = infer_config(sd)
    model = model_class(**config).to(sd[STEM_WEIGHT].dtype)
    model.load_state_dict(fit_to_model(sd, model, drop_mismatched_head=False, source="the state dict"), strict=True)
    model.reparameterize_unireplknet()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------- fitting
def fit_to_model(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, drop_mismatched_head: bool, source: str
) -> StateDict:
    """Adapt a UniRepLKNet state dict to ``model`` (prefixes, structure, head) and check it fits exactly."""
    sd = strip_prefixes(state_dict)
    target = model.state_dict()
    model_class = unireplknet_class(model)
    model_deploy = model_class is not None and model.deploy
    if model_deploy and not is_deploy_layout(sd) and any(k.endswith(".act.1.beta") for k in sd):
        _logger.info("converting a training-structure checkpoint to the deploy structure of the model")
        sd = convert_to_deploy_layout(sd, model_class)
    elif not model_deploy and is_deploy_layout(sd) and any(k.endswith(".act.1.beta") for k in target):
        raise CheckpointMismatchError(
            f"{source} is in the deploy (re-parameterized) layout but the model has the training structure; "
            "build the model with deploy=True (e.g. timm.create_model(name, deploy=True)), or use "
            "unireplknet.load_model(path), which builds the right structure by itself"
        )

    # Classifier of another class count / a model without classifier / features mode.
    head_keys = [k for k in ("head.weight", "head.bias") if k in sd]
    if (
        head_keys
        and "head.weight" in target
        and "head.weight" in sd
        and sd["head.weight"].shape[1:] == target["head.weight"].shape[1:]  # same width: only the classes differ
        and sd["head.weight"].shape[0] != target["head.weight"].shape[0]
    ):
        if not drop_mismatched_head:
            raise CheckpointMismatchError(
                f"{source} has a {sd['head.weight'].shape[0]}-class head, the model "
                f"{target['head.weight'].shape[0]} classes: create the model with "
                f"num_classes={sd['head.weight'].shape[0]}, or drop the head to fine-tune "
                "(load_checkpoint(..., drop_mismatched_head=True); timm.create_model(..., num_classes=N) does this)"
            )
        warnings.warn(
            f"the checkpoint's {sd['head.weight'].shape[0]}-class head does not fit the model's "
            f"{target['head.weight'].shape[0]} classes; the head is newly initialised, everything else is loaded",
            stacklevel=3,
        )
        for k in head_keys:
            sd[k] = target[k]
    if "head.weight" not in target:
        for k in head_keys:
            sd.pop(k)
        if "norm.weight" not in target:  # features mode: the classifier's final LayerNorm is not used
            sd.pop("norm.weight", None)
            sd.pop("norm.bias", None)
    for i in range(4):  # features-mode norms that a classifier checkpoint does not have
        for p in ("weight", "bias"):
            key = f"norm{i}.{p}"
            if key in target and key not in sd:
                sd[key] = target[key]
            elif key in sd and key not in target:
                sd.pop(key)

    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    mis_shaped = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
        for k in target
        if k in sd and sd[k].shape != target[k].shape
    ]
    if missing or unexpected or mis_shaped:
        raise CheckpointMismatchError(_mismatch_message(source, sd, model, missing, unexpected, mis_shaped))
    return sd


def _mismatch_message(source, sd, model, missing, unexpected, mis_shaped) -> str:
    parts = [f"{source} does not fit the model:"]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
        if items:
            shown = ", ".join(items[:6]) + (f" … (+{len(items) - 6} more)" if len(items) > 6 else "")
            parts.append(f"{len(items)} {label} ({shown})")
    try:
        ckpt_cfg = infer_config(sd)
        ckpt_name = variant_name(ckpt_cfg) or f"depths={ckpt_cfg['depths']}, dims={ckpt_cfg['dims']}"
        model_desc = ""
        if hasattr(model, "depths") and hasattr(model, "dims"):
            model_name = variant_name(dict(depths=model.depths, dims=model.dims))
            model_desc = model_name or f"depths={model.depths}, dims={model.dims}"
        if model_desc and model_desc != ckpt_name:
            parts.append(f"the checkpoint is {ckpt_name} but the model is {model_desc}: create {ckpt_name} instead")
        elif ckpt_cfg["in_chans"] != getattr(model, "in_chans", ckpt_cfg["in_chans"]):
            parts.append(f"the checkpoint takes in_chans={ckpt_cfg['in_chans']}, the model {model.in_chans}")
        elif ckpt_cfg["downsample_norm"] != getattr(model, "downsample_norm", ckpt_cfg["downsample_norm"]):
            parts.append(f"the checkpoint's stem and down-sampling layers have {ckpt_cfg['downsample_norm']} "
                         f"norms, the model {model.downsample_norm}: build it with "
                         f"downsample_norm={ckpt_cfg['downsample_norm']!r}")
    except CheckpointError:
        parts.append("it does not look like a UniRepLKNet checkpoint at all")
    return "; ".join(parts)


def load_state_dict_pre_hook(
    module: nn.Module,
    state_dict: MutableMapping[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: list,
    unexpected_keys: list,
    error_msgs: list,
) -> None:
    """Let ``model.load_state_dict`` accept DDP/compile prefixes and MMDet/MMSeg ``backbone.`` checkpoints,
    and explain a training/deploy structure mismatch."""
    keys = [k for k in state_dict if k.startswith(prefix)]
    rel = {k[len(prefix):]: state_dict[k] for k in keys}
    tensors = {k: v for k, v in rel.items() if isinstance(v, torch.Tensor)}
    if is_deploy_layout(tensors) and not getattr(module, "deploy", True):
        error_msgs.append(
            "the state dict is in the deploy (re-parameterized) layout but the model has the training structure: "
            "build it with deploy=True, call unireplknet.reparameterize(model) first, or use "
            "unireplknet.load_checkpoint(model, state_dict), which does this for you"
        )
    if not any(k.startswith(_PREFIXES + ("backbone.",)) for k in rel):
        return
    cleaned = strip_prefixes(rel)
    for k in keys:
        del state_dict[k]
    for k, v in cleaned.items():
        state_dict[prefix + k] = v
