"""Effective receptive field (ERF): how much each input pixel contributes to the central output of a stage.

The large-kernel papers argue with this measurement (RepLKNet, CVPR 2022, Sec. 5.1 and Fig. 1, with its
released ``erf/`` scripts; UniRepLKNet, CVPR 2024, its ERF figure and area-ratio table). For each image,
the contribution score of an input pixel is the gradient of the sum of the central point of the chosen
stage's output feature map with respect to that pixel, made non-negative and summed over the input
channels; the scores are averaged over images. For the picture the average is log-scaled, ``log10(x + 1)``, and rescaled to [0, 1] so that
models share one colour scale; the *high-contribution area ratio* at threshold ``t`` is the area of the
smallest centred square holding ``t`` of the total score, as a share of the input area (thresholds 20 %,
30 %, 50 %, 75 %, 99 %). As in RepLKNet's analysis script, the ratio is taken on the log-scaled map by
default (``ratio_on="log"``); ``ratio_on="linear"`` takes it on the raw average.

Any timm model works: the stage is found through the model's ``feature_info`` (the same module names timm's
``features_only`` hooks read), so ``stage=4`` is UniRepLKNet's and ConvNeXt's ``stages.3`` and ResNet's
``layer4`` alike. A module whose own output is the feature map (a plain stack of convolutions) is measured
with ``stage=None``.

Example::

    import timm, unireplknet
    from unireplknet.analysis import erf

    model = timm.create_model("unireplknet_t")
    result = erf(model, images, stage=4)          # images: (N, 3, H, W), normalised
    result.area_ratios                              # {0.2: ..., 0.3: ..., 0.5: ..., 0.75: ..., 0.99: ...}
    result.log_scaled()                             # the (H, W) map of the figure, in [0, 1]
"""
from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

__all__ = [
    "ERF_THRESHOLDS",
    "ERFResult",
    "erf",
    "input_contribution",
    "high_contribution_area",
    "log_scale",
    "stage_feature_fn",
]

_logger = logging.getLogger(__name__)

#: The thresholds of the papers' high-contribution area-ratio table.
ERF_THRESHOLDS: Tuple[float, ...] = (0.2, 0.3, 0.5, 0.75, 0.99)

Stage = Union[int, str, None]


# ----------------------------------------------------------------------------------------------- the map
def log_scale(scores: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    """``log10(x + 1)`` rescaled to [0, 1] by its maximum (RepLKNet's display scale; all zeros stay zeros).

    The scores of different models differ by orders of magnitude; the logarithm keeps the tails visible and
    the rescaling lets several models share one colour bar.
    """
    x = np.log10(np.asarray(scores, dtype=np.float64) + 1.0)
    peak = float(x.max()) if x.size else 0.0
    return x / peak if peak > 0 else x


def high_contribution_area(
    scores: Union[np.ndarray, torch.Tensor], thresholds: Sequence[float] = ERF_THRESHOLDS
) -> Dict[float, Tuple[int, float]]:
    """For each threshold ``t``: ``(side, ratio)`` of the smallest centred square holding ``t`` of the total.

    The squares are centred on pixel ``(H // 2, W // 2)`` (where the central output point looks) and have odd
    sides 1, 3, 5, …; a square reaching past the border is clipped to the image and its ``ratio`` is the
    clipped area over ``H × W``, so the ratio of the whole image is exactly 1.
    """
    m = np.asarray(scores, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"the score map must be a non-empty 2-D (H, W) array, got shape {m.shape}")
    if (m < 0).any() or not np.isfinite(m).all():
        raise ValueError("the score map must be finite and non-negative (contributions are |gradients|)")
    total = float(m.sum())
    if total <= 0:
        raise ValueError("the score map is all zeros: the chosen output does not depend on the input at all")
    for t in thresholds:
        if not 0.0 < float(t) <= 1.0:
            raise ValueError(f"thresholds are shares of the total score in (0, 1], got {t}")
    h, w = m.shape
    cy, cx = h // 2, w // 2
    # A summed-area table gives every centred square's sum in O(1): all radii at once.
    table = np.zeros((h + 1, w + 1))
    table[1:, 1:] = m.cumsum(0).cumsum(1)
    r = np.arange(max(cy, cx, h - 1 - cy, w - 1 - cx) + 1)
    y0, y1 = np.clip(cy - r, 0, h), np.clip(cy + r + 1, 0, h)
    x0, x1 = np.clip(cx - r, 0, w), np.clip(cx + r + 1, 0, w)
    inside = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    share = inside / total
    share[-1] = 1.0  # the largest square is the whole image; no rounding may leave it short of t = 1
    area = (y1 - y0) * (x1 - x0) / float(h * w)
    out: Dict[float, Tuple[int, float]] = {}
    for t in thresholds:
        # The tiny tolerance keeps a share that equals t mathematically (uniform maps) from missing by rounding.
        i = int(np.argmax(share >= float(t) - 1e-12))
        out[float(t)] = (int(2 * r[i] + 1), float(area[i]))
    return out


@dataclass
class ERFResult:
    """The averaged contribution map of one model and its high-contribution area ratios.

    Attributes:
        scores: (H, W) float64 mean over images of the per-image contribution map (linear scale).
        images: images that went into the mean (non-finite gradients are skipped and counted in ``skipped``).
        skipped: images left out because their gradient was not finite.
        stage: the stage asked for (``None``: the model's own output).
        module: the module whose output was measured (``""`` for the model's own output).
        feature_size: (h, w) of that output; the central point is ``(h // 2, w // 2)``.
        contribution: ``"abs"`` or ``"relu"`` (see :func:`input_contribution`).
        ratio_on: ``"log"`` or ``"linear"``: the map the area ratios were taken on.
        area: threshold → (square side in pixels, share of the input area).
    """

    scores: np.ndarray
    images: int
    skipped: int
    stage: Stage
    module: str
    feature_size: Tuple[int, int]
    contribution: str
    ratio_on: str
    area: Dict[float, Tuple[int, float]] = field(default_factory=dict)

    @property
    def area_ratios(self) -> Dict[float, float]:
        """threshold → share of the input area of the smallest centred square holding that share of the score."""
        return {t: ratio for t, (_, ratio) in self.area.items()}

    def log_scaled(self) -> np.ndarray:
        """The map of the figure: ``log10(scores + 1)`` rescaled to [0, 1]."""
        return log_scale(self.scores)

    def to_dict(self) -> Dict[str, Any]:
        """Everything but the map, as plain JSON-able types."""
        return dict(
            images=self.images, skipped=self.skipped, stage=self.stage, module=self.module,
            input_size=list(self.scores.shape), feature_size=list(self.feature_size),
            contribution=self.contribution, ratio_on=self.ratio_on,
            area_ratio={f"{t:g}": (None if math.isnan(ratio) else ratio) for t, (_, ratio) in self.area.items()},
            square_side={f"{t:g}": side for t, (side, _) in self.area.items()},
        )


# ----------------------------------------------------------------------------------------------- stages
class _StopForward(Exception):
    """Raised by the stage hook once the stage output is captured: the rest of the network is not needed."""


def _feature_info(model: nn.Module) -> List[Dict[str, Any]]:
    info = getattr(model, "feature_info", None)
    info = getattr(info, "info", info)  # timm's FeatureInfo (features_only models) wraps the list
    return list(info) if isinstance(info, (list, tuple)) else []


def _resolve_stage_module(model: nn.Module, stage: Union[int, str]) -> str:
    """The name of the module whose output is ``stage``: an int s is the last feature level at stride 2^(s+1)."""
    info = _feature_info(model)
    names = dict(model.named_modules())
    if isinstance(stage, str):
        if stage not in names:
            listed = ", ".join(d["module"] for d in info) or "see model.named_modules()"
            raise ValueError(f"{type(model).__name__} has no module named {stage!r}; stage names: {listed}")
        return stage
    if not info:
        raise ValueError(
            f"{type(model).__name__} has no timm feature_info, so stage {stage} cannot be located; pass the "
            "module name as stage (e.g. stage='layer4') or stage=None to measure the model's own output"
        )
    if not 1 <= int(stage) <= 4:
        raise ValueError(f"stage must be 1, 2, 3 or 4 (the outputs at stride 4, 8, 16, 32), got {stage}")
    stride = 2 ** (int(stage) + 1)
    matches = [d["module"] for d in info if int(d.get("reduction", 0)) == stride]
    if not matches:
        have = ", ".join(f"{d['module']} (stride {d.get('reduction')})" for d in info)
        raise ValueError(
            f"{type(model).__name__} has no feature level at stride {stride} (stage {stage}); its levels are "
            f"{have}; pass one of those module names as the stage"
        )
    return matches[-1]  # the end of the stage: the deepest module at that stride


def stage_feature_fn(model: nn.Module, stage: Stage = 4) -> Tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """``(fn, module name)``: ``fn(x)`` runs ``model`` on ``x`` up to ``stage`` and returns that (N, C, h, w) map.

    ``stage=None`` returns the model's own output. Otherwise a forward hook on the stage's module captures its
    output and stops the forward there (later stages and the head are never run).
    """
    if stage is None:
        def own_output(x: torch.Tensor) -> torch.Tensor:
            return model(x)

        return own_output, ""
    name = _resolve_stage_module(model, stage)
    module = model.get_submodule(name)
    run = getattr(model, "forward_features", None) or model

    def features(x: torch.Tensor) -> torch.Tensor:
        captured: List[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            # Only the first call stops the forward: activation checkpointing re-runs the module during the
            # backward pass, and that recomputation must go through.
            if captured:
                return
            captured.append(output)
            raise _StopForward

        handle = module.register_forward_hook(hook)
        try:
            run(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"{type(model).__name__}.forward never ran module {name!r}; choose another stage")
        return captured[0]

    return features, name


# ----------------------------------------------------------------------------------------------- gradients
def input_contribution(
    features: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, contribution: str = "abs"
) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Per-image contribution maps (N, H, W) of ``x`` to the central point of ``features(x)``, and (h, w).

    ``contribution="abs"``: |d(sum of the central point's channels)/dx| summed over input channels.
    ``contribution="relu"``: RepLKNet's script: the central point's channels go through ReLU before the sum,
    and the gradient through ReLU instead of ``abs``.

    In eval mode every image's gradient depends on that image alone, so the maps do not depend on the batch.
    """
    if contribution not in ("abs", "relu"):
        raise ValueError(f"contribution must be 'abs' or 'relu', got {contribution!r}")
    x = x.detach().requires_grad_(True)
    out = features(x)
    if isinstance(out, (list, tuple)):
        raise ValueError("the measured output is a list; pick one feature map with stage=1..4 or a module name")
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the measured output must be an (N, C, h, w) feature map, got {shape}; pick a stage")
    if not out.requires_grad:
        raise RuntimeError(
            "the stage output does not depend on the input through autograd (reentrant activation checkpointing "
            "around this stage?); turn grad checkpointing off or pick another stage"
        )
    h, w = out.shape[-2:]
    centre = out[:, :, h // 2, w // 2]
    if contribution == "relu":
        centre = torch.relu(centre)
    (grad,) = torch.autograd.grad(centre.sum(), x)
    grad = grad.abs() if contribution == "abs" else torch.relu(grad)
    return grad.sum(1), (int(h), int(w))


@contextlib.contextmanager
def _measuring(model: nn.Module, grad_checkpointing: Optional[bool]) -> Iterator[None]:
    """Eval mode, frozen parameters (no weight gradients are computed or stored) and the asked checkpointing,
    all restored afterwards."""
    was_training = model.training
    frozen = [p for p in model.parameters() if p.requires_grad]
    previous_cp = getattr(model, "grad_checkpointing", None)
    set_cp = getattr(model, "set_grad_checkpointing", None)
    if grad_checkpointing is not None and set_cp is None and grad_checkpointing:
        raise ValueError(f"{type(model).__name__} has no set_grad_checkpointing(); run without grad checkpointing")
    try:
        model.eval()
        for p in frozen:
            p.requires_grad_(False)
        if grad_checkpointing is not None and set_cp is not None:
            set_cp(bool(grad_checkpointing))
        yield
    finally:
        model.train(was_training)
        for p in frozen:
            p.requires_grad_(True)
        if grad_checkpointing is not None and set_cp is not None:
            set_cp(bool(previous_cp))  # timm models without the attribute start with checkpointing off


def _batches(images: Union[torch.Tensor, Iterable[Any]], batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            images = images.unsqueeze(0)
        for i in range(0, len(images), batch_size):
            yield images[i:i + batch_size]
        return
    for item in images:
        x = item[0] if isinstance(item, (list, tuple)) else item
        x = x.unsqueeze(0) if x.dim() == 3 else x
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size]


def erf(
    model: nn.Module,
    images: Union[torch.Tensor, Iterable[Any]],
    stage: Stage = 4,
    *,
    batch_size: int = 1,
    contribution: str = "abs",
    ratio_on: str = "log",
    thresholds: Sequence[float] = ERF_THRESHOLDS,
    grad_checkpointing: Optional[bool] = None,
    progress: bool = False,
    total: Optional[int] = None,
    description: str = "ERF",
) -> ERFResult:
    """The effective receptive field of ``model`` at ``stage``, averaged over ``images``.

    Args:
        model: any module; a timm model (UniRepLKNet, ConvNeXt, ResNet …) for ``stage=1..4``. It is measured
            in eval mode with frozen parameters, and left as it was found. Training and deploy structure of a
            UniRepLKNet compute the same function, hence the same map.
        images: an (N, C, H, W) tensor (already normalised), or an iterable of tensors / ``(images, labels)``
            batches such as a DataLoader.
        stage: 1…4 (the output at stride 4, 8, 16, 32 found through ``feature_info``), a module name, or
            ``None`` for the model's own output.
        batch_size: images per backward pass (the result does not depend on it; memory does).
        contribution: ``"abs"`` (|gradient|, the definition of the papers' text) or ``"relu"`` (RepLKNet's
            script: ReLU on the central point and on the gradient).
        ratio_on: ``"log"`` (area ratios on the log-scaled map, as RepLKNet's analysis script) or ``"linear"``.
        thresholds: shares of the total score for the area ratios.
        grad_checkpointing: turn the model's activation checkpointing on/off while measuring (``None``: as is);
            it trades a second forward for memory, e.g. UniRepLKNet-T at 1024×1024.
        progress: show a progress bar over images (tqdm); ``total`` sizes it for iterables without ``len``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if ratio_on not in ("log", "linear"):
        raise ValueError(f"ratio_on must be 'log' or 'linear', got {ratio_on!r}")
    if contribution not in ("abs", "relu"):
        raise ValueError(f"contribution must be 'abs' or 'relu', got {contribution!r}")
    features, module_name = stage_feature_fn(model, stage)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    if total is None and isinstance(images, torch.Tensor):
        total = 1 if images.dim() == 3 else len(images)
    elif total is None and hasattr(images, "__len__") and hasattr(images, "dataset"):
        total = len(images.dataset)  # a DataLoader: count images, not batches

    from tqdm.auto import tqdm

    acc: Optional[torch.Tensor] = None
    used = skipped = 0
    feature_size = (0, 0)
    with _measuring(model, grad_checkpointing), tqdm(total=total, desc=description, unit="img",
                                                       disable=not progress, leave=False) as bar:
        for x in _batches(images, batch_size):
            maps, feature_size = input_contribution(features, x.to(device=device, dtype=dtype), contribution)
            maps = maps.detach().to("cpu", torch.float64)
            finite = torch.isfinite(maps).flatten(1).all(1)
            if not bool(finite.all()):
                skipped += int((~finite).sum())
            if bool(finite.any()):
                part = maps[finite].sum(0)
                acc = part if acc is None else acc + part
                used += int(finite.sum())
            bar.update(len(x))
    if skipped:
        warnings.warn(f"{skipped} image(s) gave non-finite gradients and were left out of the ERF mean", stacklevel=2)
    if acc is None:
        raise ValueError("no image gave a finite gradient map (no images given, or every gradient overflowed)")
    scores = (acc / used).numpy()
    ratio_map = log_scale(scores) if ratio_on == "log" else scores
    if float(ratio_map.sum()) > 0:
        area = high_contribution_area(ratio_map, thresholds)
    else:
        # Not an error: in a side-by-side comparison one degenerate model should not stop the others.
        warnings.warn(
            f"the ERF of {type(model).__name__} at stage {stage} is all zeros: the sum of the central point's "
            "channels does not depend on the input (channels that cancel, e.g. a LayerNorm output with unit weight "
            "and zero bias); measure with contribution='relu' (RepLKNet's script) instead", stacklevel=2)
        area = {float(t): (0, math.nan) for t in thresholds}
    return ERFResult(scores=scores, images=used, skipped=skipped, stage=stage, module=module_name,
                     feature_size=feature_size, contribution=contribution, ratio_on=ratio_on, area=area)
