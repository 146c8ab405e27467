"""The UniRepLKNet variants a … xl: timm registration, pretrained configs and the paper's table.

``import unireplknet`` registers ``unireplknet_a`` … ``unireplknet_xl`` with timm, so
``timm.create_model('unireplknet_t', pretrained=True)`` works, with a pretrained config for every official
checkpoint of the Hugging Face repo ``DingXiaoH/UniRepLKNet`` (the file names of the official `huggingface_file_names`; docs/checkpoints.md).
"""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import FeatureGetterNet, FeatureHookNet

from .checkpoint import PretrainedWeightsUnavailableError, atomic_write_bytes, load_checkpoint
from .model import ARCHITECTURES, UniRepLKNet, checkpoint_filter_fn, default_kernel_sizes

__all__ = [
    "VARIANTS", "HF_HUB_ID", "variant_config", "create_model", "count_macs", "variants_table", "pretrained_tags",
    "check_pretrained_reachable",
    "save_pretrained",
]

_logger = logging.getLogger(__name__)

HF_HUB_ID = "DingXiaoH/UniRepLKNet"


@dataclass(frozen=True)
class Variant:
    depths: Tuple[int, int, int, int]
    dims: Tuple[int, int, int, int]
    #: the official README's deploy-structure parameters (millions) and GMACs at 224×224 and 384×384
    #: (None where the README gives none)
    paper_params_m: float
    paper_gmacs_224: Optional[float]
    paper_gmacs_384: Optional[float] = None


# (params M, GMACs @224, GMACs @384) from the official README; depths and dims from the model's table.
_PAPER_NUMBERS = {
    "a": (4.44, 0.64), "f": (6.24, 0.91), "p": (10.74, 1.57), "n": (18.32, 2.77), "t": (31.04, 4.90),
    "s": (55.65, 9.09, 26.7), "b": (98.01, None, 47.2), "l": (218.45, None, 105.4), "xl": (386.53, None, 187.0),
}
VARIANTS: Dict[str, Variant] = {
    name: Variant(*ARCHITECTURES[name], *numbers) for name, numbers in _PAPER_NUMBERS.items()
}

# Official checkpoint files (the official repository's `huggingface_file_names`), by variant and pretrained tag.
_IN1K_FILES = {
    "a": "unireplknet_a_in1k_224_acc77.03.pth",
    "f": "unireplknet_f_in1k_224_acc78.58.pth",
    "p": "unireplknet_p_in1k_224_acc80.23.pth",
    "n": "unireplknet_n_in1k_224_acc81.64.pth",
    "t": "unireplknet_t_in1k_224_acc83.21.pth",
    "s": "unireplknet_s_in1k_224_acc83.91.pth",
}
_IN22K_FT_FILES = {
    "s": "unireplknet_s_in22k_to_in1k_384_acc86.44.pth",
    "b": "unireplknet_b_in22k_to_in1k_384_acc87.40.pth",
    "l": "unireplknet_l_in22k_to_in1k_384_acc87.88.pth",
    "xl": "unireplknet_xl_in22k_to_in1k_384_acc87.96.pth",
}
_IN22K_FILES = {v: f"unireplknet_{v}_in22k_pretrain.pth" for v in ("s", "b", "l", "xl")}
# 22K pretraining resolution (the official Image/README.md): 224 for S/B, 192 for L/XL.
_IN22K_RES = {"s": 224, "b": 224, "l": 192, "xl": 192}

#: The official constructor flags and the pretrained tag each one selects.
OFFICIAL_PRETRAINED_FLAGS = {
    "in_1k_pretrained": "in1k",
    "in_22k_pretrained": "in22k",
    "in_22k_to_1k": "in22k_ft_in1k_384",
}


def _cfg(filename: str, **kwargs: Any) -> Dict[str, Any]:
    return {
        "hf_hub_id": HF_HUB_ID,
        "hf_hub_filename": filename,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "downsample_layers.0.0",
        "classifier": "head",
        "license": "apache-2.0",
        "paper_ids": "arXiv:2311.15599",
        "paper_name": "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud, "
        "Time-Series and Image Recognition",
        "origin_url": "https://github.com/AILab-CVC/UniRepLKNet",
        **kwargs,
    }


def _default_cfgs() -> Dict[str, Dict[str, Any]]:
    cfgs: Dict[str, Dict[str, Any]] = {}
    for v in VARIANTS:
        # The first tag of a variant is its default for pretrained=True.
        tags = []
        if v in _IN1K_FILES:
            tags.append(("in1k", _cfg(_IN1K_FILES[v])))
        if v in _IN22K_FT_FILES:
            ft = _cfg(_IN22K_FT_FILES[v], input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0,
                      crop_mode="squash")
            tags.append(("in22k_ft_in1k_384", ft))
        if v in _IN22K_FILES:
            res = _IN22K_RES[v]
            tags.append(("in22k", _cfg(_IN22K_FILES[v], num_classes=21841, input_size=(3, res, res),
                                       pool_size=(res // 32, res // 32))))
        for tag, cfg in tags:
            cfgs[f"unireplknet_{v}.{tag}"] = cfg
    return cfgs


default_cfgs = generate_default_cfgs(_default_cfgs())


def variant_config(variant: str) -> Dict[str, Any]:
    """Constructor arguments (depths, dims, kernel_sizes) of a variant name such as 't' or 'unireplknet_t'."""
    key = variant.lower().removeprefix("unireplknet_").split(".")[0]
    if key not in VARIANTS:
        raise ValueError(
            f"unknown UniRepLKNet variant {variant!r}; choose one of "
            + ", ".join(f"unireplknet_{v}" for v in VARIANTS)
        )
    spec = VARIANTS[key]
    return dict(depths=spec.depths, dims=spec.dims, kernel_sizes=default_kernel_sizes(spec.depths))


def _create_unireplknet(variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    short = variant.removeprefix("unireplknet_")
    chosen = [flag for flag in OFFICIAL_PRETRAINED_FLAGS if kwargs.pop(flag, False)]
    if len(chosen) > 1:
        raise ValueError(f"choose one of the official pretrained flags, got {', '.join(chosen)}")
    if chosen:
        tag = OFFICIAL_PRETRAINED_FLAGS[chosen[0]]
        if tag not in pretrained_tags(variant):
            have = pretrained_tags(variant)
            raise ValueError(
                f"{chosen[0]}=True: there is no official {tag} checkpoint for {variant} "
                f"(available tags: {', '.join(have)})"
            )
        pretrained = True
        kwargs["pretrained_cfg"] = tag
    features_only = kwargs.get("features_only", False)
    model_kwargs = {**variant_config(short), **kwargs}
    feature_cfg: Dict[str, Any] = dict(out_indices=(0, 1, 2, 3), feature_cls="getter")
    if features_only:
        # The official features mode: a channels-first LayerNorm on every stage output, no classifier.
        model_kwargs["num_classes"] = None
        for unused in ("global_pool", "drop_rate"):  # timm's scripts pass them to every model
            model_kwargs.pop(unused, None)
        feature_cls = model_kwargs.get("feature_cls")
        if isinstance(feature_cls, str) and feature_cls.lower() in _FEATURE_CLASSES:
            model_kwargs["feature_cls"] = _FEATURE_CLASSES[feature_cls.lower()]
        chosen_cls = model_kwargs.get("feature_cls", "getter")
        if chosen_cls == "getter" or (isinstance(chosen_cls, type) and issubclass(chosen_cls, FeatureGetterNet)):
            # timm's getter passes norm=False to forward_intermediates by default; None keeps the official
            # features mode (each map through its stage LayerNorm), the same maps as the hook extractor's
            feature_cfg["norm"] = None
    try:
        return build_model_with_cfg(
            UniRepLKNet,
            variant,
            pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=feature_cfg,
            **model_kwargs,
        )
    except Exception as err:  # only download failures are rewrapped; everything else propagates unchanged
        if pretrained and _is_download_failure(err):
            tag = kwargs.get("pretrained_cfg")
            cfg = _find_cfg(variant, tag if isinstance(tag, str) else None)
            filename = getattr(cfg, "hf_hub_filename", None)
            raise PretrainedWeightsUnavailableError(variant, tag, err, filename=filename, hub_id=HF_HUB_ID) from err
        raise


#: Seconds the reachability check of the Hugging Face Hub waits for a connection.
HUB_PROBE_TIMEOUT_S = 3.0


def check_pretrained_reachable(variant: str, tag: Any = None) -> None:
    """Raise :class:`PretrainedWeightsUnavailableError` at once when the weights of ``variant`` (``tag``) are not
    in the local Hugging Face cache and the Hub cannot be reached: one connection attempt of a few seconds
    instead of the HTTP client's retries (about 40 s offline); call it before ``pretrained=True``.
    ``HF_HUB_OFFLINE=1`` is left to huggingface_hub (it fails at once itself); behind an HTTP proxy a direct
    connection says nothing, so nothing is checked there."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true"):
        return
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    cfg = _find_cfg(variant, tag if isinstance(tag, str) else None)
    filename = getattr(cfg, "hf_hub_filename", None)
    hub_id = (getattr(cfg, "hf_hub_id", None) or HF_HUB_ID).split("@")[0]
    if filename is None:
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(hub_id, filename), str):
            return  # cached: timm loads it without the network
    except ImportError:
        return
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as err:
        cause = ConnectionError(f"{host}:{port} cannot be reached ({err})")
        raise PretrainedWeightsUnavailableError(variant, tag if isinstance(tag, str) else None, cause,
                                                filename=filename, hub_id=HF_HUB_ID) from err


def _find_cfg(variant: str, tag: Optional[str]) -> Any:
    """The pretrained config of ``variant`` with ``tag`` (its default tag when None)."""
    entry = default_cfgs.get(variant)
    if entry is None:
        return None
    return entry.cfgs.get(tag or entry.tags[0])


class FeatureDictGetterNet(FeatureGetterNet):
    """``features_only=True, feature_cls='dict'``: the stage features as an ordered dict, keyed like timm's
    ``FeatureDictNet`` (``out_map`` entries, else the stage index as a string).

    timm's ``FeatureDictNet`` re-runs a model's direct children in registration order, which the official
    layout cannot offer (the down-sampling layers and the stages are two separate lists, run interleaved);
    the same features come from ``forward_intermediates`` instead.
    """

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:  # type: ignore[override]
        features = super().forward(x)
        names = self.out_map if self.out_map is not None else self.feature_info.out_indices
        return OrderedDict((str(name), feat) for name, feat in zip(names, features))


class FeatureHookListNet(FeatureHookNet):
    """``features_only=True, feature_cls='hook'``: timm's ``FeatureHookNet`` (forward hooks on each stage's
    LayerNorm ``norm{i}``), for a backbone whose own output is a list of maps rather than one tensor
    (timm's class reads the device off that output)."""

    def forward(self, x: torch.Tensor):  # type: ignore[override]
        device = x.device
        for module in self.values():  # no_rewrite: the one entry is the whole backbone
            x = module(x)
        out = self.hooks.get_output(device)
        return out if self.return_dict else list(out.values())


#: feature_cls names that need an adapter for the official layout (the others are timm's own classes).
_FEATURE_CLASSES = {"dict": FeatureDictGetterNet, "hook": FeatureHookListNet}


def _is_download_failure(err: BaseException) -> bool:
    try:
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - very old huggingface_hub
        HfHubHTTPError = LocalEntryNotFoundError = ()  # type: ignore[assignment]
    hub_errors = tuple(e for e in (HfHubHTTPError, LocalEntryNotFoundError) if isinstance(e, type))
    names = {type(e).__name__ for e in _exception_chain(err)}
    return any(isinstance(e, hub_errors + (ConnectionError, TimeoutError)) for e in _exception_chain(err)) or bool(
        names & {"ConnectError", "ConnectTimeout", "OfflineModeIsEnabled", "URLError"}
    )


def _exception_chain(err: BaseException) -> List[BaseException]:
    chain = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


@register_model
def unireplknet_a(pretrained: bool = False, **kwargs: Any) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_a", pretrained, **kwargs)


@register_model
def unireplknet_f(pretrained: bool = False, **kwargs: Any) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_f", pretrained, **kwargs)


@register_model
def unireplknet_p(pretrained: bool = False, **kwargs: Any) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_p", pretrained, **kwargs)


@register_model
def unireplknet_n(pretrained: bool = False, **kwargs: Any) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_n", pretrained, **kwargs)


@register_model
def unireplknet_t(pretrained: bool = False, **kwargs: Any) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_t", pretrained, **kwargs)


@register_model
def unireplknet_s(pretrained: bool = False, **kwargs: Any) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_s", pretrained, **kwargs)


@register_model
def unireplknet_b(pretrained: bool = False, **kwargs: Any) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_b", pretrained, **kwargs)


@register_model
def unireplknet_l(pretrained: bool = False, **kwargs: Any) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_l", pretrained, **kwargs)


@register_model
def unireplknet_xl(pretrained: bool = False, **kwargs: Any) -> UniRepLKNet:
    return _create_unireplknet("unireplknet_xl", pretrained, **kwargs)


def create_model(
    name: str,
    pretrained: bool = False,
    checkpoint_path: Optional[str] = None,
    **kwargs: Any,
) -> nn.Module:
    """Create a variant by name (``'unireplknet_t'``, ``'t'``, or ``'unireplknet_s.in22k_ft_in1k_384'``).

    Like :func:`timm.create_model`, but ``checkpoint_path`` goes through :func:`unireplknet.load_checkpoint`,
    which accepts every official layout (training or deploy structure, top level / ``model`` / ``state_dict``
    with ``backbone.`` prefix) and converts between training and deploy structure as needed.
    """
    import timm

    base, _, tag = name.partition(".")
    full = base if base.startswith("unireplknet_") else f"unireplknet_{base}"
    variant_config(full)  # validates the name with a helpful error
    model = timm.create_model(f"{full}.{tag}" if tag else full, pretrained=pretrained, **kwargs)
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path)
    return model


def count_macs(model: nn.Module, input_size: Tuple[int, int, int] = (3, 224, 224)) -> int:
    """Multiply-accumulates of convolutions and linear layers for one input (the paper's "FLOPs")."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    x = torch.zeros(1, *input_size, device=param.device, dtype=param.dtype)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def pretrained_tags(name: str) -> List[str]:
    """The pretrained tags of an architecture such as 'unireplknet_s' (the first one is the default)."""
    entry = default_cfgs.get(name)
    return list(entry.tags) if entry is not None else []


def variants_table(resolution: int = 224) -> List[Dict[str, Any]]:
    """One row per variant: deploy/train parameters, deploy GMACs, kernel layout, pretrained tags, paper numbers.

    Models are built on the meta device, so no memory is allocated and no weights are initialised for real.
    """
    rows = []
    for v, spec in VARIANTS.items():
        with torch.device("meta"):
            train = UniRepLKNet(**variant_config(v))
            deploy = UniRepLKNet(**variant_config(v), deploy=True)
        ks = variant_config(v)["kernel_sizes"]
        rows.append(
            dict(
                name=f"unireplknet_{v}",
                depths=spec.depths,
                dims=spec.dims,
                kernel_layout=" / ".join(_describe_stage(s) for s in ks),
                params_deploy=sum(p.numel() for p in deploy.parameters()),
                params_train=sum(p.numel() for p in train.parameters()),
                gmacs_deploy=count_macs(deploy, (3, resolution, resolution)) / 1e9,
                paper_params_m=spec.paper_params_m,
                paper_gmacs=spec.paper_gmacs_224 if resolution == 224 else
                (spec.paper_gmacs_384 if resolution == 384 else None),
                pretrained_tags=pretrained_tags(f"unireplknet_{v}"),
            )
        )
    return rows


def _describe_stage(kernels: Tuple[int, ...]) -> str:
    # (13, 3, 3) * 9 reads better than 27 numbers
    for period in range(1, len(kernels) + 1):
        if len(kernels) % period == 0 and kernels == kernels[:period] * (len(kernels) // period):
            unit = ",".join(str(k) for k in kernels[:period])
            reps = len(kernels) // period
            return unit if reps == 1 else (f"{unit}x{reps}" if period == 1 else f"({unit})x{reps}")
    return ",".join(str(k) for k in kernels)  # pragma: no cover


def save_pretrained(model: nn.Module, folder: "os.PathLike[str] | str", **save_for_hf_kwargs: Any) -> Path:
    """Write ``folder`` (``config.json`` + ``model.safetensors``) for both timm and Hugging Face transformers.

    timm's ``save_for_hf`` records the class count twice, as the config's ``num_classes`` and inside
    ``model_args``; transformers' ``TimmWrapperModel`` / ``TimmWrapperForImageClassification`` read the first
    as ``num_labels`` and pass it to ``timm.create_model`` next to ``model_args``, which then fails with
    "multiple values for keyword argument 'num_classes'" (for every timm model). The folder written here keeps
    the class count where both read it (the root ``num_classes`` and ``pretrained_cfg``) and records every other
    constructor argument (``deploy`` for a re-parameterized model) in ``model_args``. Load it with
    ``timm.create_model(f"local-dir:{folder}", pretrained=True)`` or ``TimmWrapperModel.from_pretrained(folder)``.
    """
    from timm.models import save_for_hf

    folder = Path(folder)
    save_for_hf_kwargs.setdefault("safe_serialization", True)
    save_for_hf(model, folder, **save_for_hf_kwargs)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config.get("model_args", {}).pop("num_classes", None)
    atomic_write_bytes(config_path, json.dumps(config, indent=4).encode("utf-8"))
    return folder

