"""The engine's options (the official ImageNet recipe as defaults), shared by every task's config."""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Union

__all__ = ["EngineConfig", "plain", "check_input_paths", "adapt_to_machine_and_run", "usable_cores",
           "SHORT_RUN_WARMUP_SHARE"]

_logger = logging.getLogger(__name__)


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
    #: The options the caller chose (the command line fills in the flags it was given): when the run has to adapt
    #: one of them (see :func:`adapt_to_machine_and_run`) that is a warning; adapting a recipe default is logged.
    set_by_user: Tuple[str, ...] = ()

    #: Values of ``data`` that name a data set built into the task rather than a path (e.g. ``"scenes"``).
    BUILTIN_DATA: ClassVar[Tuple[str, ...]] = ()

    #: The named recipes of this config: option values that differ from the class defaults (which are a recipe
    #: too, usually the paper's). :meth:`with_recipe` is the one way every task and command line applies them.
    RECIPES: ClassVar[Dict[str, Dict[str, Any]]] = {}

    @classmethod
    def default_recipe(cls, options: Dict[str, Any]) -> Optional[str]:
        """The recipe of a run given these options when none is named (e.g. the demo recipe when no ``data`` is
        given); None: the class defaults alone."""
        return None

    @classmethod
    def recipe(cls, name: str, options: Dict[str, Any]) -> Dict[str, Any]:
        """The option values of the recipe ``name`` (a copy). Configs whose recipes depend on the options given
        (a detector's per-variant recipe) compose them here."""
        if name not in cls.RECIPES:
            raise ValueError(f"unknown recipe {name!r} for {cls.__name__}; choose one of {', '.join(cls.RECIPES)}")
        return copy.deepcopy(cls.RECIPES[name])

    @classmethod
    def merge_recipe(cls, recipe: Dict[str, Any], options: Dict[str, Any]) -> Dict[str, Any]:
        """The recipe's values overridden by the options given (every given option wins)."""
        return {**recipe, **options}

    @classmethod
    def with_recipe(cls, recipe: Union[str, Dict[str, Any], None] = None, **options: Any):
        """A config of the recipe ``recipe`` (a name of :attr:`RECIPES`, a dict of values, or None: the
        :meth:`default_recipe` for these options) where every option given wins over the recipe (``None`` too,
        e.g. ``output=None``: a temporary folder; the command lines pass only the flags that were set)."""
        given = dict(options)
        if recipe is None:
            recipe = cls.default_recipe(given)
        values = {} if recipe is None else (copy.deepcopy(dict(recipe)) if isinstance(recipe, dict)
                                            else cls.recipe(recipe, given))
        merged = cls.merge_recipe(values, given)
        unknown = sorted(set(merged) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown {cls.__name__} options: {', '.join(unknown)}")
        return cls(**merged)


# ----------------------------------------------------------------------------------------------- resolution
#: Options that name files or folders the run reads, by config field, with the flag that sets each.
INPUT_PATH_OPTIONS = (("data", "--data"), ("val_data", "--val-data"), ("data_root", "--data-root"),
                      ("checkpoint", "--checkpoint"), ("resume", "--resume"))


def check_input_paths(cfg: Any) -> None:
    """Refuse a run whose inputs are missing — ``data`` (unless it names a built-in set, ``BUILTIN_DATA``),
    ``val_data``, ``data_root``, ``checkpoint`` and a ``resume`` path — before anything looks at the output folder:
    a wrong ``--data`` must be named as that, not as a clash with an earlier run in ``--output``."""
    builtin = tuple(getattr(cfg, "BUILTIN_DATA", ()))
    for name, flag in INPUT_PATH_OPTIONS:
        value = getattr(cfg, name, None)
        if value in (None, "", True, "auto") or not isinstance(value, (str, os.PathLike)):
            continue  # unset, the task's built-in data, or --resume's OUTPUT/last.pth (checked with the folder)
        if name == "data" and str(value) in builtin:
            continue
        if not Path(value).exists():
            hint = {"checkpoint": "; pass an existing .pth or .safetensors file",
                    "resume": "; pass the last.pth of the run to continue, or --resume alone for OUTPUT/last.pth"}.get(
                name, "; pass an existing file or folder"
                + (f", or one of the built-in data sets: {', '.join(builtin)}" if name == "data" and builtin else ""))
            raise FileNotFoundError(f"{flag} {value} does not exist{hint}")


#: A warm-up at least as long as the run never reaches the peak rate, and the cosine decay after it never runs
#: (timm: "Cosine annealing scheduler will have no effect"); such a warm-up becomes this share of the run.
SHORT_RUN_WARMUP_SHARE = 0.2


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's limit)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def adapt_to_machine_and_run(cfg: Any, steps_per_epoch: int, cores: Optional[int] = None, log: bool = True) -> Any:
    """``cfg`` with the options that cannot work as given on this run and machine adapted (a copy when any is):

    * a warm-up as long as the whole run or longer (``warmup_steps``, else ``warmup_epochs``) shrinks to
      :data:`SHORT_RUN_WARMUP_SHARE` of the run, so the rate peaks and decays as the schedule intends;
    * ``workers`` is capped by the cores this process may use (shared by the ranks of this machine under
      torchrun), so data loading does not oversubscribe a small machine (torch's DataLoader warns of it).

    Each change is logged once (``log``): as a warning when the caller chose the value (``cfg.set_by_user``),
    else at INFO (a recipe default meeting a short run or a small machine). The engine calls this before it
    builds the loaders and the schedule; every ``*-train`` command goes through it.
    """
    chosen = set(getattr(cfg, "set_by_user", ()) or ())
    changes: Dict[str, Any] = {}
    notes: List[Tuple[bool, str]] = []

    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = getattr(cfg, "warmup_steps", None)
    warmup = warmup_steps if warmup_steps is not None else int(round(cfg.warmup_epochs * steps_per_epoch))
    if 0 < total_steps <= warmup:
        if warmup_steps is not None:
            changes["warmup_steps"] = int(SHORT_RUN_WARMUP_SHARE * total_steps)
            was, now, flag = f"{warmup_steps} steps", f"{changes['warmup_steps']} steps", "warmup_steps"
        else:
            changes["warmup_epochs"] = SHORT_RUN_WARMUP_SHARE * cfg.epochs
            was, now, flag = f"{cfg.warmup_epochs:g} epochs", f"{changes['warmup_epochs']:g} epochs", "warmup_epochs"
        notes.append((flag in chosen, f"the warm-up of {was} is as long as the whole run ({cfg.epochs} epochs of "
                                      f"{steps_per_epoch} steps) or longer, so the learning rate would never reach its "
                                      f"peak nor decay: warming up over {now} ({SHORT_RUN_WARMUP_SHARE:.0%} of the run) "
                                      "instead; give a shorter warm-up to choose"))

    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cores = usable_cores() if cores is None else cores
    limit = max(1, cores // local_ranks)
    if cfg.workers > limit:
        changes["workers"] = limit
        per = f" ({local_ranks} processes share them)" if local_ranks > 1 else ""
        notes.append(("workers" in chosen, f"{cfg.workers} data-loading workers per process but {cores} usable CPU "
                                           f"cores{per}: using {limit}; give --workers to choose"))
    if log:
        for explicit, message in notes:
            if explicit:
                _logger.warning(message)
            else:
                _logger.info(message)
    if not changes:
        return cfg
    if dataclasses.is_dataclass(cfg):
        return dataclasses.replace(cfg, **changes)
    import copy

    adapted = copy.copy(cfg)
    for key, value in changes.items():
        setattr(adapted, key, value)
    return adapted


def plain(obj: Any) -> Any:
    """Dicts, lists and tuples as plain dicts (string keys) and lists, so ``weights_only`` loading and JSON take them."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
