"""Time-series classification on the UCR/UEA archive: an unchanged image backbone on series drawn as images.

The paper's point (UniRepLKNet, section 3.2) is that only the preprocessing changes between modalities: here a
series becomes an image (:mod:`unireplknet.modalities.series_image`) and the network is the model factory's
UniRepLKNet (or any timm model through ``--model``, the peer backbone), trained by the one engine.

Protocol: the archive's fixed TRAIN/TEST split. Every choice (the best epoch, the mapping, the recipe) is made on a
validation split held out of TRAIN — stratified by class and drawn with the run's seed. TEST is read at the start
only to check that it fits TRAIN (same channels, no class TRAIN lacks), and scored once, with the best weights,
after training (and by ``tsc-eval``).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset
from torch import nn

from ...data.timeseries.archive import ArchiveProblem, ArchiveSplit, load_problem
from ...engine import EngineConfig, StepContext, StepOutput, Task, TaskData, TrainResult
from ...engine.config import plain
from ...engine.distributed import all_reduce_sum
from ...modalities.series_image import SeriesImageConfig, image_shape, series_to_image

__all__ = ["TSC_MODEL_KWARGS", "TscConfig", "TscClassification", "stratified_split", "series_images",
           "score", "train_tsc", "load_tsc_model"]

_logger = logging.getLogger(__name__)

#: The default network: a four-stage UniRepLKNet at the scale of the embedded-digits model (dims 16-32-64-128),
#: with large kernels along the time axis. On a 32 × 256 ``rows`` image the stage maps are 8×64, 4×32, 2×16 and
#: 1×8, so the 13-wide kernels of the first three stages see a fifth to the whole of the series.
TSC_MODEL_KWARGS: Dict[str, Any] = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128),
                                        kernel_sizes=((13,), (13,), (13, 3), (3,)))


#: The most epochs the step budget (``TscConfig.train_steps``) gives a small problem.
MAX_AUTO_EPOCHS = 100


@dataclass
class TscConfig(EngineConfig):
    """Options of :func:`train_tsc`: the engine's (with a recipe for the archive's small training sets as
    defaults) and the task's.

    ``data``: a problem folder (``<Name>_TRAIN.ts`` + ``<Name>_TEST.ts``, or ``.tsv``), or an archive root with
    ``problem``. ``val_split``: the share of each class of TRAIN held out for validation. ``mapping``, ``length``,
    ``height``, ``gaf_size``, ``level_plane``: see :class:`~unireplknet.modalities.series_image.SeriesImageConfig`.
    ``evaluate_test``: score TEST once after training. ``epochs`` None (the default): as many as make about
    ``train_steps`` optimizer steps, at most 100 — the same training budget for 40 series as for 300, so the
    archive's larger problems do not cost ten times more. ``downsample_norm``: the norm of the stem and down-sampling
    layers of a UniRepLKNet (``'batchnorm'`` or the official ``'layernorm'``: docs/tsc.md); an explicit
    ``model_kwargs['downsample_norm']`` wins; a timm peer keeps its own norms.
    """

    data: Optional[str] = None
    problem: Optional[str] = None
    val_split: float = 0.2
    mapping: str = "rows"
    length: int = 256
    height: int = 32
    gaf_size: int = 64
    level_plane: bool = True
    downsample_norm: str = "batchnorm"
    evaluate_test: bool = True
    train_steps: int = 300
    # engine options: a small UniRepLKNet and a recipe for a few dozen to a few hundred training series
    model: str = "custom"
    model_kwargs: Dict[str, Any] = field(default_factory=lambda: dict(TSC_MODEL_KWARGS))
    drop_path: float = 0.0
    epochs: Optional[int] = None
    batch_size: int = 16
    lr: float = 2e-3
    warmup_epochs: float = 5.0
    weight_decay: float = 0.05
    workers: int = 0
    output: Optional[str] = "runs/tsc"

    def resolved_epochs(self, training_series: int) -> int:
        """``epochs``, or (None) the epochs of about ``train_steps`` steps of ``batch_size`` on ``training_series``
        (TRAIN less its validation split), between 1 and :data:`MAX_AUTO_EPOCHS`."""
        if self.epochs is not None:
            return int(self.epochs)
        steps_per_epoch = max(1, math.ceil(training_series / max(1, self.batch_size)))
        return max(1, min(MAX_AUTO_EPOCHS, math.ceil(self.train_steps / steps_per_epoch)))

    def series_config(self, channels: int) -> SeriesImageConfig:
        return SeriesImageConfig(self.mapping, channels, self.length, self.height, self.gaf_size, self.level_plane)

    def network_kwargs(self) -> Dict[str, Any]:
        """``model_kwargs`` with the task's ``downsample_norm`` for a UniRepLKNet (``custom`` or a variant); a timm
        peer's unchanged."""
        kwargs = dict(self.model_kwargs or {})
        if self.model == "custom" or self.model.startswith("unireplknet"):
            kwargs.setdefault("downsample_norm", self.downsample_norm)
        return kwargs


# ----------------------------------------------------------------------------------------------- data
def stratified_split(targets: np.ndarray, share: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)``: from each class, ``round(share × n)`` series (at least 1 when the class has two or
    more, and always at least one left for training) drawn with ``seed``; classes of one series stay in training."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"val_split must be between 0 and 1, got {share}")
    rng = np.random.default_rng(seed)
    train_idx: List[int] = []
    val_idx: List[int] = []
    for cls in np.unique(targets):
        members = np.flatnonzero(targets == cls)
        members = members[rng.permutation(len(members))]
        n_val = 0 if len(members) < 2 else min(len(members) - 1, max(1, int(round(share * len(members)))))
        val_idx.extend(members[:n_val].tolist())
        train_idx.extend(members[n_val:].tolist())
    return np.sort(np.array(train_idx, dtype=np.int64)), np.sort(np.array(val_idx, dtype=np.int64))


def series_images(split: ArchiveSplit, cfg: SeriesImageConfig) -> torch.Tensor:
    """Every series of ``split`` as an image: ``(N, *image_shape(cfg))`` float32."""
    return torch.from_numpy(np.stack([series_to_image(s, cfg) for s in split.series]))


@torch.no_grad()
def score(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor], device: torch.device,
          batch_size: int = 64) -> Tuple[torch.Tensor, Optional[Dict[str, float]]]:
    """Class scores of every image (CPU, float32), and accuracy (%), loss and count when ``targets`` are given."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(images[i:i + batch_size].to(device)).float().cpu()
                        for i in range(0, len(images), batch_size)])
    model.train(was_training)
    if targets is None:
        return logits, None
    acc = 100.0 * float((logits.argmax(1) == targets).double().mean())
    return logits, dict(acc=acc, loss=float(F.cross_entropy(logits, targets)), series=int(len(targets)))


# ----------------------------------------------------------------------------------------------- task
class TscClassification(Task):
    """The engine task: cross-entropy on series images, accuracy on the validation split of TRAIN."""

    name = "tsc"
    metric = "acc"
    higher_is_better = True

    def __init__(self, cfg: TscConfig):
        self.cfg = cfg
        self.problem: Optional[ArchiveProblem] = None
        self.series_cfg: Optional[SeriesImageConfig] = None

    def build_data(self, cfg: TscConfig, seed: int) -> TaskData:
        if cfg.data is None:
            raise ValueError("tsc-train needs --data: a problem folder with <Name>_TRAIN.ts and <Name>_TEST.ts "
                             "(or .tsv), or an archive root with --problem <Name>")
        problem = load_problem(cfg.data, cfg.problem)
        self.problem = problem
        self.series_cfg = cfg.series_config(problem.channels)
        targets = problem.targets(problem.train)
        train_idx, val_idx = stratified_split(targets, cfg.val_split, seed)
        if len(val_idx) == 0:
            raise ValueError(f"{problem.name}: no class of TRAIN has two series, so none can be held out for "
                             "validation")
        images = series_images(problem.train, self.series_cfg)
        labels = torch.from_numpy(targets)
        # (image, label) pairs of tensors already in memory: torch's own TensorDataset
        train = TensorDataset(images[train_idx], labels[train_idx])
        val = TensorDataset(images[val_idx], labels[val_idx])
        shape = image_shape(self.series_cfg)
        lengths = problem.train.lengths
        description = (f"{problem.name}: {len(train)} training / {len(val)} validation series of TRAIN "
                       f"({problem.channels} channel(s), length {min(lengths)}-{max(lengths)}), "
                       f"{len(problem.class_names)} classes, images {shape[0]}x{shape[1]}x{shape[2]} "
                       f"({self.series_cfg.mapping})")
        data_config = dict(self.series_cfg.to_dict(), problem=problem.name)
        return TaskData(train, val, description=description, class_names=list(problem.class_names),
                        data_config=data_config, eval_batch_size=max(cfg.batch_size, 64))

    def build_model(self, cfg: TscConfig, data: TaskData, pretrained: bool) -> nn.Module:
        from ...factory import build_model

        return build_model(cfg.model, len(data.class_names), self.series_cfg.in_chans, cfg.network_kwargs(),
                           pretrained, drop_path_rate=cfg.drop_path)

    def model_config(self, cfg: TscConfig, data: TaskData, model: nn.Module) -> Dict[str, Any]:
        return dict(task=self.name, model=cfg.model, model_kwargs=plain(cfg.network_kwargs()),
                    num_classes=len(data.class_names), in_chans=self.series_cfg.in_chans,
                    series=self.series_cfg.to_dict())

    def training_loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        images, targets = ctx.to_device(batch.inputs, image=True), ctx.to_device(batch.targets)
        return StepOutput(F.cross_entropy(model(images), targets), len(images))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, ctx: StepContext) -> Dict[str, float]:
        model.eval()
        correct, loss_sum, n = 0.0, 0.0, 0.0
        for batch in loader:
            with ctx.autocast():
                logits = model(ctx.to_device(batch.inputs, image=True)).float()
            targets = batch.targets.to(ctx.device)
            correct += float((logits.argmax(1) == targets).sum())
            loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
            n += len(targets)
        correct, loss_sum, n = all_reduce_sum([correct, loss_sum, n], ctx.device)
        return dict(acc=100.0 * correct / max(n, 1.0), loss=loss_sum / max(n, 1.0))

    def deploy_example(self, data: TaskData) -> torch.Tensor:
        return torch.randn(2, *image_shape(self.series_cfg))


def train_tsc(cfg: TscConfig, callbacks: Sequence[Callable[[Any], None]] = ()) -> TrainResult:
    """Train on TRAIN (less its validation split) through the engine, keep the best epoch on validation, then score
    TEST once with those weights (``cfg.evaluate_test``). The engine's :class:`TrainResult`, with
    ``extras``: ``problem``, ``val`` and ``test`` (``acc``, ``loss``, ``series``; test None without labels) and
    ``series`` (the mapping's config)."""
    from ...engine import fit

    if cfg.epochs is None:  # the step budget needs the size of TRAIN less its validation split
        if cfg.data is None:
            raise ValueError("tsc-train needs --data: a problem folder with <Name>_TRAIN.ts and <Name>_TEST.ts "
                             "(or .tsv), or an archive root with --problem <Name>")
        train_only = load_problem(cfg.data, cfg.problem, test=False)
        targets = train_only.targets(train_only.train)
        cfg = dataclasses.replace(cfg, epochs=cfg.resolved_epochs(len(stratified_split(targets, cfg.val_split,
                                                                                        cfg.seed)[0])))
    task = TscClassification(cfg)
    r = fit(task, cfg, callbacks)
    model = r.best_model()
    device = next(model.parameters()).device
    problem, series_cfg = task.problem, task.series_cfg
    targets = problem.targets(problem.train)
    _, val_idx = stratified_split(targets, cfg.val_split, cfg.seed)
    train_images = series_images(problem.train, series_cfg)
    _, val = score(model, train_images[val_idx], torch.from_numpy(targets[val_idx]), device)
    test = None
    if cfg.evaluate_test and problem.test.has_labels:
        _, test = score(model, series_images(problem.test, series_cfg),
                        torch.from_numpy(problem.targets(problem.test)), device)
    r.extras.update(problem=problem.name, val=val, test=test, series=series_cfg.to_dict(), epochs=cfg.epochs)
    return r


def load_tsc_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu"
                   ) -> Tuple[nn.Module, SeriesImageConfig, List[str]]:
    """Model (eval mode), series mapping and class names from a ``tsc-train`` checkpoint (last.pth or best.pth)."""
    from ...factory import build_model
    from ...engine.checkpointing import load_training_checkpoint

    ckpt = load_training_checkpoint(path, task="tsc", command="tsc-train")
    mc = ckpt["model_config"]
    model = build_model(mc["model"], mc["num_classes"], mc["in_chans"], mc["model_kwargs"], False)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), SeriesImageConfig.from_dict(mc["series"]), list(ckpt["class_names"])
