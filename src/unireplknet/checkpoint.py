"""Reading and writing UniRepLKNet weights, safely and with errors that say what to do.

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
import logging
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, MutableMapping, Optional, Union

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "PretrainedWeightsUnavailableError",
    "read_state_dict",
    "unwrap_state_dict",
    "infer_config",
    "is_deploy_layout",
    "checkpoint_filter_fn",
    "load_checkpoint",
    "save_model",
    "load_model",
    "to_deploy_state_dict",
]

_logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
StateDict = Dict[str, torch.Tensor]

_PREFIXES = ("module.", "_orig_mod.")
_CONTAINER_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema", "module")


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read (missing, corrupt, truncated, unsafe or of an unknown type)."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the model it is loaded into."""


class PretrainedWeightsUnavailableError(CheckpointError):
    """Official pretrained weights were asked for but could not be downloaded."""

    def __init__(self, variant: str, tag: Optional[str], cause: BaseException):
        from .zoo import HF_HUB_ID

        name = f"{variant}.{tag}" if tag else variant
        cfg = _find_cfg(variant, tag)
        filename = getattr(cfg, "hf_hub_filename", None) or "the checkpoint file"
        super().__init__(
            f"could not download the pretrained weights for {name}: {filename} from the Hugging Face repo "
            f"{HF_HUB_ID} ({type(cause).__name__}: {cause}). If this machine is offline, download the file "
            f"elsewhere (https://huggingface.co/{HF_HUB_ID}/blob/main/{filename}) and pass it locally: "
            f"timm.create_model('{variant}', pretrained=True, pretrained_cfg_overlay=dict(file='/path/{filename}')) "
            f"or unireplknet.create_model('{variant}', checkpoint_path='/path/{filename}')."
        )
        self.filename = filename


def _find_cfg(variant: str, tag: Optional[str]) -> Any:
    from .zoo import default_cfgs

    for full, entry in default_cfgs.items():
        if full != variant:
            continue
        key = tag or entry.tags[0]
        return entry.cfgs.get(key)
    return None


# ----------------------------------------------------------------------------------------------- reading
def read_state_dict(path: PathLike, use_ema: bool = False) -> StateDict:
    """Read a checkpoint file (.pth/.pt/.bin or .safetensors) and return its flat tensor state dict."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; pass the checkpoint file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {path} is empty (an interrupted download or save?); get it again")
    kind = _sniff(path)
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({err}); it is probably truncated or corrupt — "
                "download or export it again"
            ) from err
    elif kind == "torch":
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            if not _holds_disallowed_objects(err):  # garbage that happens to start like a pickle
                raise _unreadable(path, err) from err
            raise CheckpointError(
                f"{path} is a PyTorch checkpoint that also holds Python objects other than tensors and plain "
                f"containers, which are not unpickled for safety ({_first_line(err)}). If you trust the file, "
                "re-save just its tensors: torch.save(torch.load(path, weights_only=False)['model'], "
                "'weights.pth'), or convert it to safetensors"
            ) from err
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, ValueError, TypeError, IndexError,
                AttributeError) as err:
            raise _unreadable(path, err) from err
    else:
        raise CheckpointError(
            f"{path} is not a readable checkpoint: it is neither a PyTorch (.pth) nor a safetensors file "
            f"({_describe_head(path)}); pass the weights file, e.g. unireplknet_t_in1k_224_acc83.21.pth or "
            "model.safetensors (a download that failed can leave an HTML error page under the file's name)"
        )
    return unwrap_state_dict(obj, use_ema=use_ema, source=str(path))


def _first_line(err: BaseException) -> str:
    """The informative line of a (possibly long, multi-line) torch.load error."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    # never the generic weights_only advice torch.load prepends: for a file that is no checkpoint it misleads
    lines = [line for line in lines if "weights_only" not in line and "file an issue" not in line] or lines
    for marker in ("Unsupported global", "GLOBAL", "Unsupported operand", "Unpickler error", "failed"):
        for line in lines:
            if marker in line:
                return line[:300]
    return lines[0][:300] if lines else type(err).__name__


def _holds_disallowed_objects(err: BaseException) -> bool:
    """A weights_only refusal of a real pickle names the global it refused; corrupt bytes fail otherwise."""
    text = str(err)
    return "Unsupported global" in text or "GLOBAL" in text


def _unreadable(path: Path, err: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a readable checkpoint ({type(err).__name__}: {_first_line(err)}; {_describe_head(path)}): "
        "it is truncated, corrupt or not a checkpoint at all — download or save it again"
    )


def _describe_head(path: Path) -> str:
    head = _head(path, 64)
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        return f"it starts like an HTML/XML page: {head[:32]!r}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"first bytes {head[:16]!r}"
    if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"it is a text file starting {text[:32]!r}"
    return f"first bytes {head[:16]!r}"


def _head(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _sniff(path: Path) -> str:
    head = _head(path, 16)
    if head.startswith(b"PK\x03\x04"):
        return "torch"  # zip-based torch.save format
    if head[:1] == b"\x80":
        return "torch"  # legacy pickle-based torch.save format
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if 0 < header_len < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if path.suffix == ".safetensors":
        return "safetensors"  # let the reader produce the precise corruption message
    # Every torch.save file starts with a zip header or a pickle protocol byte: anything else is not one,
    # whatever its name says.
    return "unknown"


def unwrap_state_dict(obj: Any, use_ema: bool = False, source: str = "checkpoint") -> StateDict:
    """The flat tensor dict inside an official or own checkpoint (``model``, ``state_dict``, EMA …)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict")
    containers = ("model_ema", "state_dict_ema") + _CONTAINER_KEYS if use_ema else _CONTAINER_KEYS
    for key in containers:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{source} is not a tensor state dict: entries {bad[:5]} are not tensors "
            f"(top-level keys: {list(obj)[:8]})"
        )
    return dict(obj)


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
    in_chans = sd["downsample_layers.0.0.weight"].shape[1]
    dims, depths, kernel_sizes = [], [], []
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


def _variant_name(config: Mapping[str, Any]) -> Optional[str]:
    from .zoo import VARIANTS

    for name, spec in VARIANTS.items():
        if tuple(config["depths"]) == spec.depths and tuple(config["dims"]) == spec.dims:
            return f"unireplknet_{name}"
    return None


def to_deploy_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Convert a training-layout state dict into the deploy layout (re-parameterizes a temporary model)."""
    from .model import UniRepLKNet, reparameterize

    sd = strip_prefixes(state_dict)
    if is_deploy_layout(sd):
        return dict(sd)
    config = infer_config(sd)
    dtype = sd["downsample_layers.0.0.weight"].dtype
    model = UniRepLKNet(**config).to(dtype)
    load_checkpoint(model, sd)
    return {k: v.detach().clone() for k, v in reparameterize(model).state_dict().items()}


# ----------------------------------------------------------------------------------------------- loading
def _fit_to_model(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, drop_mismatched_head: bool, source: str
) -> StateDict:
    """Adapt a UniRepLKNet state dict to ``model`` (prefixes, structure, head) and check it fits exactly."""
    from .model import UniRepLKNet

    sd = strip_prefixes(state_dict)
    target = model.state_dict()
    model_deploy = isinstance(model, UniRepLKNet) and model.deploy
    if model_deploy and not is_deploy_layout(sd) and any(k.endswith(".act.1.beta") for k in sd):
        _logger.info("converting a training-structure checkpoint to the deploy structure of the model")
        sd = to_deploy_state_dict(sd)
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
        ckpt_name = _variant_name(ckpt_cfg) or f"depths={ckpt_cfg['depths']}, dims={ckpt_cfg['dims']}"
        model_desc = ""
        if hasattr(model, "depths") and hasattr(model, "dims"):
            model_name = _variant_name(dict(depths=model.depths, dims=model.dims))
            model_desc = model_name or f"depths={model.depths}, dims={model.dims}"
        if model_desc and model_desc != ckpt_name:
            parts.append(f"the checkpoint is {ckpt_name} but the model is {model_desc}: create {ckpt_name} instead")
        elif ckpt_cfg["in_chans"] != getattr(model, "in_chans", ckpt_cfg["in_chans"]):
            parts.append(f"the checkpoint takes in_chans={ckpt_cfg['in_chans']}, the model {model.in_chans}")
    except CheckpointError:
        parts.append("it does not look like a UniRepLKNet checkpoint at all")
    return "; ".join(parts)


#: The first (stem) convolution's weight: the one tensor whose shape depends on the input channel count.
STEM_WEIGHT = "downsample_layers.0.0.weight"


def differs_only_in_input_channels(weight: Optional[torch.Tensor], target: Optional[torch.Tensor]) -> bool:
    """True when both conv weights exist and have the same shape except their input-channel dimension."""
    return (
        weight is not None and target is not None and weight.dim() == 4 and target.dim() == 4
        and weight.shape[1] != target.shape[1]
        and weight.shape[:1] + weight.shape[2:] == target.shape[:1] + target.shape[2:]
    )


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> StateDict:
    """timm pretrained filter: official layouts in, exactly the model's keys out (head dropped on class mismatch)."""
    from .model import UniRepLKNet, reparameterize

    sd = strip_prefixes(unwrap_state_dict(state_dict, source="pretrained checkpoint"))
    if isinstance(model, UniRepLKNet) and not model.deploy and is_deploy_layout(sd):
        # A re-parameterized file (e.g. timm's save_for_hf of a deploy model): the model takes its structure.
        _logger.info("the pretrained checkpoint is in the deploy layout: re-parameterizing the model to load it")
        reparameterize(model)
    # A model with another input channel count (e.g. in_chans=1 for grey images): timm adapts the stem conv
    # (the pretrained cfg's first_conv) after this filter, so let the RGB stem through unchanged here.
    stem = STEM_WEIGHT
    target = model.state_dict().get(stem)
    rgb_stem = sd.get(stem)
    other_chans = differs_only_in_input_channels(rgb_stem, target)
    if other_chans:
        sd[stem] = target
    sd = _fit_to_model(sd, model, drop_mismatched_head=True, source="the pretrained checkpoint")
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
    from .model import UniRepLKNet, reparameterize

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
    if isinstance(model, UniRepLKNet) and not model.deploy and is_deploy_layout(sd):
        _logger.info("%s is in the deploy layout: re-parameterizing the model before loading", source)
        reparameterize(model)
    sd = _fit_to_model(sd, model, drop_mismatched_head=drop_mismatched_head, source=source)
    model.load_state_dict(sd, strict=True)
    return model


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


# ----------------------------------------------------------------------------------------------- saving
def save_model(model: nn.Module, path: PathLike, metadata: Optional[Mapping[str, str]] = None) -> Path:
    """Write a model's weights and constructor config to ``path`` as safetensors, atomically.

    The file is written next to its destination and renamed into place, so an interrupted save never
    destroys an earlier file. :func:`load_model` rebuilds the model from it without being told the variant.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    config = infer_config(tensors)
    config["kernel_sizes"] = [list(k) for k in config["kernel_sizes"]]
    meta = {"format": "pt", "unireplknet_config": json.dumps(config)}
    meta.update(metadata or {})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu", **overrides: Any) -> nn.Module:
    """Build the UniRepLKNet a checkpoint was saved from and load it (any official or own file).

    The structure (variant, training or deploy, class count, input channels) is inferred from the keys and
    shapes of its tensors, so official files need no metadata either.
    """
    from .model import UniRepLKNet

    sd = read_state_dict(path)
    config = infer_config(sd)
    config.update(overrides)
    model = UniRepLKNet(**config)
    load_checkpoint(model, sd)
    return model.to(device).eval()
