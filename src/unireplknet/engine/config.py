"""The engine's options (the official ImageNet recipe as defaults), shared by every task's config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

__all__ = ["EngineConfig", "plain"]

@dataclass
class EngineConfig:
    """The options the engine owns, shared by every task (the ``*-train`` engine flags, docs/cli/engine.md).

    Task configs subclass it and add their own options (and their own defaults for these). The defaults here
    are the official ImageNet recipe (paper, section 4: AdamW, lr 4e-3 at batch 4096, wd 0.05, cosine to 1e-6).
    """

    # model
    model: str = "unireplknet_a"
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    checkpoint: Optional[str] = None
    drop_path: float = 0.1
    grad_checkpointing: bool = False
    sync_bn: bool = False
    # optimisation
    epochs: int = 300
    batch_size: int = 64
    accum_steps: int = 1
    lr: float = 4e-3
    min_lr: float = 1e-6
    warmup_epochs: float = 5.0
    weight_decay: float = 0.05
    opt: str = "adamw"  # any optimizer name of timm's factory (audio and forecasting: "adam")
    opt_eps: float = 1e-8
    opt_betas: Optional[Tuple[float, float]] = None  # None: the optimizer's default
    layer_decay: Optional[float] = None
    clip_grad: Optional[float] = None
    #: "cosine": warmup then cosine to min_lr; "step": the rate times decay_rate after every epoch from
    #: decay_start on (the official audio recipe; forecasting's halving is decay_start 1, decay_rate 0.5)
    sched: str = "cosine"
    decay_start: int = 1
    decay_epochs: Optional[Tuple[int, ...]] = None  # "step": decay after these epochs instead
    decay_rate: float = 1.0
    warmup_steps: Optional[int] = None  # instead of warmup_epochs ("step"/"poly" warm up from warmup_ratio × lr)
    warmup_ratio: float = 0.0
    #: stop after this many evaluations without a better held-out metric (None: never)
    patience: Optional[int] = None
    model_ema: bool = False
    model_ema_decay: float = 0.9999
    # execution
    device: str = "auto"
    amp: str = "none"  # none | bf16 | fp16
    channels_last: Optional[bool] = None  # None: on for CUDA, off for CPU
    seed: int = 0
    workers: int = 4
    output: Optional[str] = "runs/train"  # None: a temporary folder, removed at the end
    resume: Optional[str] = None  # None: a fresh run; "auto": OUTPUT/last.pth; else a checkpoint path
    overwrite: bool = False
    eval_every: int = 1
    eval_at_start: bool = False  # also score the untrained model (a baseline in the summary)
    tensorboard: Optional[bool] = None  # None: when installed
    progress: bool = False
    # the end of training
    export_deploy: bool = True
    export_onnx: bool = True
    deploy_from_ema: bool = False


def plain(obj: Any) -> Any:
    """Dicts, lists and tuples as plain dicts (string keys) and lists, so ``weights_only`` loading and JSON take them."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
