"""Audio classification: UniRepLKNet on 1-channel log-mel images, single-label (accuracy) or multi-label (mAP).

The model is the official audio model (official `Audio/` code, described in docs/audio.md) with its published bug fixed: the backbone
(``in_chans=1``) returns pooled features — global average pool and the backbone's own LayerNorm — and AST's
``mlp_head`` (LayerNorm → Linear) maps them to class scores. Training follows the official recipe
(``run_sc.sh``/``traintest.py``): BCE-with-logits on (mixed) one-hot targets, Adam (lr 2.5e-4, betas
0.95/0.999, weight decay 5e-7), learning rate ×0.85 every epoch from epoch 5, best-on-validation
checkpoint evaluated on the test split.

:func:`train_audio` is a thin loop over the engine's building blocks (atomic checkpoints with RNG states and
resume, per-epoch metrics CSV/TensorBoard): the image engine's ``train`` is tied to image folders, top-k
accuracy and timm's mixup, which do not fit waveform mixup and mAP.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ...engine.checkpointing import load_training_checkpoint
from ...engine.config import EngineConfig, plain
from ...engine.distributed import all_gather_object
from ...engine.loop import TrainResult
from ...engine.task import Batch, StepContext, StepOutput, Task, TaskData, collate_samples
from ...data.audio import (AudioClipDataset, audio_folder_dataset, audio_manifest_datasets, seed_audio_worker,
                           compute_norm_stats, speech_commands_datasets, spoken_digits_datasets)
from ...modalities.audio import AudioAugment, AudioConfig, AudioError

__all__ = [
    "AudioClassifier",
    "AudioTrainConfig",
    "TINY_AUDIO_MODEL_KWARGS",
    "average_precision",
    "mean_average_precision",
    "audio_metrics",
    "build_audio_datasets",
    "evaluate_audio",
    "AudioClassification",
    "train_audio",
    "load_audio_classifier",
]

_logger = logging.getLogger(__name__)

#: The network of the embedded spoken-digits default: small enough to train in about two minutes on two CPU
#: cores. On a 128 × 64 log-mel image the stage maps are 32×16, 16×8, 8×4 and 4×2, so the large kernels
#: (13 in stage 2, 7 later) cover the whole map as in the official layout.
TINY_AUDIO_MODEL_KWARGS: Dict[str, Any] = dict(
    depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), kernel_sizes=((3,), (13,), (7, 3), (3,)))


class AudioClassifier(nn.Module):
    """UniRepLKNet (``in_chans=1``) → pooled, normalised features → LayerNorm → Linear.

    Args:
        num_classes: output scores.
        model: a variant name (``unireplknet_s`` is the paper's audio model) or ``'custom'``.
        model_kwargs: :class:`~unireplknet.UniRepLKNet` arguments for ``'custom'`` (depths, dims, kernel_sizes).
        drop_path_rate: stochastic depth (official: 0.4 for UniRepLKNet-S).
    """

    def __init__(self, num_classes: int, model: str = "unireplknet_s", model_kwargs: Optional[Dict[str, Any]] = None,
                 drop_path_rate: float = 0.0, pretrained: bool = False):
        super().__init__()
        from ...factory import build_model

        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.config = dict(num_classes=int(num_classes), model=model, model_kwargs=dict(model_kwargs or {}),
                           drop_path_rate=float(drop_path_rate))
        self.backbone = build_model(model, num_classes=0, in_chans=1, model_kwargs=model_kwargs,
                                    pretrained=pretrained, drop_path_rate=drop_path_rate)
        width = self.backbone.num_features
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, num_classes))
        nn.init.trunc_normal_(self.head[1].weight, std=0.02)
        nn.init.zeros_(self.head[1].bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, mel, frames)`` → pooled ``(N, C)`` features."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"AudioClassifier expects (N, 1, mel, frames) log-mel images, got {tuple(x.shape)}")
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


# ----------------------------------------------------------------------------------------------- metrics
def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Average precision of one class: the mean, over positive examples, of the precision at their rank.

    Ties are broken by the order of a stable descending sort (like scikit-learn's step-wise AP only when there
    are no ties). NaN when there is no positive.
    """
    positives = positives.bool()
    n_pos = int(positives.sum())
    if n_pos == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    hits = positives[order].double()
    precision_at_k = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    return float((precision_at_k * hits).sum() / n_pos)


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP over the classes that have at least one positive (AudioSet's metric); targets ≥ 0.5 are positive."""
    aps = [average_precision(scores[:, c], targets[:, c] >= 0.5) for c in range(scores.shape[1])]
    aps = [a for a in aps if not math.isnan(a)]
    if not aps:
        raise ValueError("mAP is undefined: no class has a positive example")
    return float(np.mean(aps))


def audio_metrics(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool, loss: str = "bce") -> Dict[str, float]:
    """``loss`` (the training loss, see :class:`AudioTrainConfig`), ``acc`` (% top-1, single-label) or ``mAP``
    (%, multi-label)."""
    out = {"loss": float(_loss(logits.float(), targets.float(), loss))}
    if multilabel:
        out["mAP"] = 100.0 * mean_average_precision(logits.float(), targets)
    else:
        out["acc"] = 100.0 * float((logits.argmax(1) == targets.argmax(1)).double().mean())
    return out


@torch.no_grad()
def evaluate_audio(model: nn.Module, loader: DataLoader, device: Union[str, torch.device] = "cpu",
                   multilabel: bool = False, loss: str = "bce") -> Dict[str, float]:
    """Metrics of ``model`` on every clip of ``loader`` (see :func:`audio_metrics`)."""
    was_training = model.training
    model.eval()
    all_logits, all_targets = [], []
    for batch in loader:
        images, targets = batch.inputs, batch.targets
        if len(images) == 0:
            continue
        all_logits.append(model(images.to(device)).float().cpu())
        all_targets.append(targets.cpu())
    model.train(was_training)
    gathered = all_gather_object((all_logits, all_targets))  # mAP needs every clip's scores: gather, not sum
    all_logits = [t for logits, _ in gathered for t in logits]
    all_targets = [t for _, targets in gathered for t in targets]
    if not all_logits:
        raise AudioError("no clip to evaluate on")
    metrics = audio_metrics(torch.cat(all_logits), torch.cat(all_targets), multilabel, loss)
    metrics["clips"] = int(sum(len(t) for t in all_targets))
    return metrics


# ----------------------------------------------------------------------------------------------- config
@dataclass
class AudioTrainConfig(EngineConfig):
    """Options of :func:`train_audio`: the engine options (defaults: the official Speech Commands V2 recipe,
    paper section 3.2 — Adam, betas 0.95/0.999, lr 2.5e-4 times 0.85 every epoch from epoch 5) and the audio ones.

    ``data``: ``None`` = the embedded spoken digits (then :meth:`with_recipe` applies the lighter
    ``"spoken-digits"`` recipe, :data:`SPOKEN_DIGITS_DEFAULTS`), a Speech
    Commands v2 folder (has ``validation_list.txt``), a folder of ``<class>/<clip>`` audio files
    (``root/train``, ``root/val`` [, ``root/test``] when present, else split by ``val_split``), or a ``.csv``
    manifest ``file,labels[,split]`` with ``;``-separated labels (multi-label data such as AudioSet).

    ``loss``: ``'bce'`` (official: binary cross-entropy with logits on the (mixed) targets; required for
    multi-label data) or ``'ce'`` (soft-target cross-entropy, single-label only).

    ``norm_stats``: ``'auto'`` computes the mean/std of the training log-mels; ``'official'`` uses the
    Speech Commands values; or ``(mean, std)``; ``None`` = official for Speech Commands, auto otherwise.
    """

    data: Optional[str] = None
    val_split: float = 0.1
    multilabel: bool = False
    loss: str = "bce"
    audio: Dict[str, Any] = field(default_factory=lambda: AudioConfig().to_dict())
    norm_stats: Optional[Union[str, Tuple[float, float]]] = None
    mixup: float = 0.6
    freq_mask: int = 48
    time_mask: int = 48
    noise: float = 0.1
    roll: int = 10
    skip_unreadable: bool = False
    # engine options with the official audio recipe's values
    model: str = "unireplknet_s"
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    drop_path: float = 0.4
    epochs: int = 100
    batch_size: int = 128
    lr: float = 2.5e-4
    warmup_epochs: float = 0.0
    opt: str = "adam"
    opt_betas: Optional[Tuple[float, float]] = (0.95, 0.999)
    weight_decay: float = 5e-7
    sched: str = "step"
    decay_start: int = 5
    decay_rate: float = 0.85
    workers: int = 0
    output: Optional[str] = "runs/audio"

    def __post_init__(self) -> None:
        self.audio = AudioConfig.from_dict(self.audio).to_dict()  # every preprocessing field, checked

    @classmethod
    def default_recipe(cls, options: Dict[str, Any]) -> Optional[str]:
        """The lighter ``"spoken-digits"`` recipe for the embedded clips; the official recipe for real data."""
        return "spoken-digits" if options.get("data") is None else None

    def augment(self) -> AudioAugment:
        return AudioAugment(mixup=self.mixup, freq_mask=self.freq_mask, time_mask=self.time_mask, noise=self.noise,
                            roll=self.roll)


#: Embedded spoken digits: 80 training clips of about 0.4 s, so 64 frames, a tiny net, a higher learning rate
#: and milder masks (48 of 64 frames would hide most of a word). Soft-target cross-entropy instead of the
#: official BCE: on 80 clips BCE's ten independent sigmoids need about five times more steps to leave chance
#: (measured: 55 % vs 95 % validation accuracy after 100 steps), which a three-minute CPU run cannot afford.
SPOKEN_DIGITS_DEFAULTS: Dict[str, Any] = dict(
    audio=dict(AudioConfig(target_frames=64).to_dict()),
    norm_stats="auto",
    loss="ce",
    model="custom",
    model_kwargs=TINY_AUDIO_MODEL_KWARGS,
    drop_path=0.0,
    epochs=60,
    batch_size=16,
    lr=2e-3,
    decay_start=40,
    decay_rate=0.85,
    mixup=0.0,
    freq_mask=8,
    time_mask=8,
    noise=0.1,
    roll=4,
    output="runs/audio-digits",
)
AudioTrainConfig.RECIPES = {"spoken-digits": SPOKEN_DIGITS_DEFAULTS}


# ----------------------------------------------------------------------------------------------- data
def _split_dataset(ds: AudioClipDataset, val_split: float, seed: int) -> Tuple[AudioClipDataset, AudioClipDataset]:
    if not 0.0 < val_split < 1.0:
        raise ValueError(f"val_split must be between 0 and 1, got {val_split}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds))
    n_val = max(1, int(round(val_split * len(ds))))
    if n_val >= len(ds):
        raise AudioError(f"{len(ds)} clips are too few to hold out {val_split:.0%} for validation")

    def subset(idx: np.ndarray, augment: Optional[AudioAugment]) -> AudioClipDataset:
        return AudioClipDataset([ds.items[i] for i in idx], [ds.labels[i] for i in idx], ds.num_classes, ds.cfg,
                                augment, class_names=ds.class_names)

    return subset(order[n_val:], ds.augment), subset(order[:n_val], None)


def build_audio_datasets(cfg: AudioTrainConfig, audio_cfg: AudioConfig) -> Dict[str, AudioClipDataset]:
    """``{'train', 'val'[, 'test']}`` for the config's data source (see :class:`AudioTrainConfig`)."""
    augment = cfg.augment()
    if cfg.data is None:
        return spoken_digits_datasets(audio_cfg, augment)
    root = Path(cfg.data)
    if root.suffix.lower() == ".csv":
        out = audio_manifest_datasets(root, audio_cfg, augment)
        if "val" not in out:
            out["train"], out["val"] = _split_dataset(out["train"], cfg.val_split, cfg.seed)
        return out
    if not root.is_dir():
        raise AudioError(f"--data {root} is neither a folder nor a .csv manifest")
    if (root / "validation_list.txt").is_file():
        return speech_commands_datasets(root, audio_cfg, augment)
    if (root / "train").is_dir():
        out = {"train": audio_folder_dataset(root / "train", audio_cfg, augment)}
        names = out["train"].class_names
        for split, folder in (("val", "val"), ("test", "test")):
            if (root / folder).is_dir():
                out[split] = audio_folder_dataset(root / folder, audio_cfg, None, class_names=names)
        if "val" not in out:
            out["train"], out["val"] = _split_dataset(out["train"], cfg.val_split, cfg.seed)
        return out
    train_ds, val_ds = _split_dataset(audio_folder_dataset(root, audio_cfg, augment), cfg.val_split, cfg.seed)
    return {"train": train_ds, "val": val_ds}


def _collate(batch: Sequence[Tuple[torch.Tensor, torch.Tensor]]) -> Batch:
    return Batch(torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch]))


def _loader(ds: AudioClipDataset, batch_size: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    # Training drops the incomplete last batch: a batch of one clip breaks BatchNorm on small feature maps.
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=_collate,
                      generator=g, drop_last=shuffle and len(ds) > batch_size,
                      worker_init_fn=seed_audio_worker if workers > 0 else None)


def _loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)
    # Soft-target cross-entropy: equals F.cross_entropy for one-hot targets and handles mixup's mixed targets.
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


# ----------------------------------------------------------------------------------------------- training
class AudioClassification(Task):
    """The engine task of :func:`train_audio`: log-mel images, waveform mixup in the dataset, BCE (or soft
    cross-entropy), accuracy or mAP as the key metric."""

    name = "audio"
    higher_is_better = True

    def __init__(self, cfg: AudioTrainConfig):
        if cfg.loss not in ("bce", "ce"):
            raise ValueError(f"loss must be 'bce' or 'ce', got {cfg.loss!r}")
        if cfg.loss == "ce" and cfg.multilabel:
            raise ValueError("multi-label training needs loss='bce' (cross-entropy assumes one label per clip)")
        self.cfg = cfg
        self.metric = "mAP" if cfg.multilabel else "acc"
        self.audio_cfg = AudioConfig.from_dict(cfg.audio)
        self.restored = False
        self.datasets: Dict[str, Any] = {}

    def restore(self, ckpt: Dict[str, Any]) -> None:
        """Keep the normalisation statistics of the first run (they were computed on its training set)."""
        self.audio_cfg = AudioConfig.from_dict(ckpt["data_config"])
        self.restored = True

    def build_data(self, cfg: AudioTrainConfig, seed: int) -> TaskData:
        from ...data.build import SkipUnreadable

        datasets = build_audio_datasets(cfg, self.audio_cfg)
        audio_cfg = self.audio_cfg
        if not self.restored:
            stats = cfg.norm_stats
            if stats is None:
                official = cfg.data is not None and (Path(cfg.data) / "validation_list.txt").is_file()
                stats = "official" if official else "auto"
            if stats == "auto":
                audio_cfg.norm_mean, audio_cfg.norm_std = compute_norm_stats(datasets["train"])
            elif stats != "official":
                audio_cfg.norm_mean, audio_cfg.norm_std = (float(v) for v in stats)
        for ds in datasets.values():
            ds.cfg = audio_cfg
        class_names = datasets["train"].class_names
        if not cfg.multilabel and any(not isinstance(l, (int, np.integer)) and len(l) != 1
                                      for l in datasets["train"].labels):
            raise AudioError("the training data has clips with several (or no) labels: pass --multilabel "
                             "(multilabel=True), which trains with BCE and reports mAP")
        self.datasets = datasets
        train, val = datasets["train"], datasets["val"]
        if cfg.skip_unreadable:
            train, val = SkipUnreadable(train, (AudioError, OSError)), SkipUnreadable(val, (AudioError, OSError))
        what = "the embedded spoken digits" if cfg.data is None else cfg.data
        return TaskData(train, val, collate_samples, collate_samples,
                        f"{what}: {len(train)} training / {len(val)} held-out clips, {len(class_names)} classes",
                        list(class_names), audio_cfg.to_dict(), eval_batch_size=cfg.batch_size,
                        worker_init_fn=seed_audio_worker)

    def start_epoch(self, epoch: int) -> None:
        # Re-seed the augmentation stream per epoch so that a resumed run draws what an uninterrupted one would.
        self.datasets["train"].rng.seed(self.cfg.seed * 100003 + epoch)

    def build_model(self, cfg: AudioTrainConfig, data: TaskData, pretrained: bool) -> nn.Module:
        return AudioClassifier(len(data.class_names), cfg.model, cfg.model_kwargs, cfg.drop_path, pretrained)

    def load_initial_weights(self, model: nn.Module, path: str) -> None:
        from ...checkpoint import load_checkpoint

        load_checkpoint(model.backbone, path, drop_mismatched_head=True)

    def model_config(self, cfg: AudioTrainConfig, data: TaskData, model: nn.Module) -> Dict[str, Any]:
        return dict(plain(model.config), task="audio", multilabel=bool(cfg.multilabel), loss=cfg.loss)

    def training_loss(self, model: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        images, targets = ctx.to_device(batch.inputs, image=True), ctx.to_device(batch.targets)
        return StepOutput(_loss(model(images), targets, self.cfg.loss), len(images), batch.unreadable)

    def evaluate(self, model: nn.Module, loader: Any, ctx: StepContext) -> Dict[str, float]:
        return evaluate_audio(model, loader, ctx.device, self.cfg.multilabel, self.cfg.loss)

    def deploy_example(self, data: TaskData) -> torch.Tensor:
        a = self.audio_cfg
        return torch.randn(2, 1, a.num_mel_bins, a.target_frames)


def train_audio(cfg: AudioTrainConfig, callbacks: Sequence[Callable[[Any], None]] = ()) -> TrainResult:
    """Train an :class:`AudioClassifier` on the engine (``last.pth``, ``best.pth``, deploy file, ONNX); then
    evaluate the best checkpoint on the held-out (and test) split. ``callbacks`` get the engine's
    :class:`~unireplknet.engine.EpochEnd` after each epoch.

    Returns the engine's :class:`~unireplknet.engine.TrainResult` with ``model`` holding the best weights and
    ``extras``: ``val`` and ``test`` (None without a test split), the metrics of ``best.pth``."""
    from ...engine import fit

    task = AudioClassification(cfg)
    r = fit(task, cfg, callbacks)
    model = r.best_model()
    device = next(model.parameters()).device
    loader = lambda ds: _loader(ds, cfg.batch_size, False, cfg.workers, 0)  # noqa: E731
    val = evaluate_audio(model, loader(task.datasets["val"]), device, cfg.multilabel, cfg.loss)
    test = (evaluate_audio(model, loader(task.datasets["test"]), device, cfg.multilabel, cfg.loss)
            if "test" in task.datasets else None)
    r.extras.update(val=val, test=test)
    return r




def load_audio_classifier(path: Union[str, Path]) -> Tuple[AudioClassifier, AudioConfig, List[str], bool]:
    """Model (eval mode), preprocessing config, class names and multilabel flag from an audio checkpoint."""
    ckpt = load_training_checkpoint(path, task="audio", command="audio-train")
    mc = ckpt["model_config"]
    from ...limits import build_checked

    model = build_checked(lambda: AudioClassifier(mc["num_classes"], mc["model"], mc["model_kwargs"], 0.0),
                          ckpt["model"], str(path))
    model.load_state_dict(ckpt["model"])
    return model.eval(), AudioConfig.from_dict(ckpt["data_config"]), list(ckpt["class_names"]), bool(mc["multilabel"])
