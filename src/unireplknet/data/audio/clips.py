"""Audio datasets: labelled clips -> ``(log-mel image, target)``; folders, CSV manifests, Speech Commands v2 and
the embedded spoken digits; dataset statistics for the normalisation.

The clip -> image pipeline they apply is :mod:`unireplknet.modalities.audio`.
"""
from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...modalities.audio import (SPEECH_COMMANDS_CONFIG, AudioAugment, AudioConfig, AudioError, fbank_to_image,
                                 resample, spec_augment, waveform_fbank)
from .files import AUDIO_EXTENSIONS, load_audio, mulaw_decode

__all__ = ["DATA_DIR", "seed_audio_worker", "AudioClipDataset", "audio_folder_dataset", "audio_manifest_datasets",
           "speech_commands_datasets", "spoken_digits_datasets", "compute_norm_stats"]

_logger = logging.getLogger(__name__)

#: The embedded audio files (spoken digits, the fbank reference numbers): this package's own folder.
DATA_DIR = Path(__file__).resolve().parent


def seed_audio_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: give each worker's copy of the dataset its own augmentation stream."""
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "rng"):
        info.dataset.rng.seed(info.seed)


def _fit_length(x: torch.Tensor, n: int) -> torch.Tensor:
    return F.pad(x, (0, n - x.shape[-1])) if x.shape[-1] < n else x[..., :n]


# ----------------------------------------------------------------------------------------------- datasets
class AudioClipDataset(Dataset):
    """Clips (file paths or in-memory waveforms) with labels → ``(image, target)`` pairs.

    ``target`` is a float vector of length ``num_classes``: one-hot for single-label data (label = int), multi-hot
    for multi-label data (label = list of ints), mixed when waveform mixup is on. Augmentation runs only when
    ``augment`` is given. Unreadable files raise :class:`AudioError` naming the file. ``cache=True`` keeps
    decoded files in memory (per data-loading process; off by default: Speech Commands alone is 6.8 GB as
    float32). The augmentation stream comes from ``self.rng``; data-loader workers re-seed it (see
    :func:`seed_audio_worker`) so that they do not repeat each other.
    """

    def __init__(self, items: Sequence[Union[str, Path, torch.Tensor]], labels: Sequence[Union[int, Sequence[int]]],
                 num_classes: int, cfg: AudioConfig, augment: Optional[AudioAugment] = None,
                 class_names: Optional[Sequence[str]] = None, seed: int = 0, cache: bool = False):
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} clips but {len(labels)} labels")
        if len(items) == 0:
            raise AudioError("no audio clips: the dataset is empty (check the folder and the file extensions)")
        self.items, self.labels, self.num_classes, self.cfg = list(items), list(labels), int(num_classes), cfg
        self.augment = augment
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.rng = random.Random(seed)
        self._cache: Optional[Dict[int, torch.Tensor]] = {} if cache else None

    def __len__(self) -> int:
        return len(self.items)

    def waveform(self, i: int) -> torch.Tensor:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        item = self.items[i]
        if torch.is_tensor(item):
            x = item.reshape(-1).float()
        else:
            x, _ = load_audio(item, self.cfg.sample_rate, self.cfg.on_rate_mismatch)
            x = x[0]
        if self._cache is not None and not torch.is_tensor(item):
            self._cache[i] = x
        return x

    def target(self, i: int) -> torch.Tensor:
        t = torch.zeros(self.num_classes)
        label = self.labels[i]
        idx = [label] if isinstance(label, (int, np.integer)) else list(label)
        for k in idx:
            if not 0 <= int(k) < self.num_classes:
                raise ValueError(f"label {k} of clip {i} is outside 0..{self.num_classes - 1}")
            t[int(k)] = 1.0
        return t

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        x, y = self.waveform(i), self.target(i)
        aug = self.augment
        if aug is not None and aug.mixup > 0 and self.rng.random() < aug.mixup:
            j = self.rng.randrange(len(self))
            other = self.waveform(j)
            lam = float(np.random.default_rng(self.rng.getrandbits(32)).beta(aug.mixup_alpha, aug.mixup_alpha))
            n = x.shape[-1]
            # AST: both clips mean-subtracted, the partner padded/cut to this clip's length.
            x = lam * (x - x.mean()) + (1.0 - lam) * _fit_length(other - other.mean(), n)
            y = lam * y + (1.0 - lam) * self.target(j)
        fb = waveform_fbank(x, self.cfg)
        if aug is None:
            return fbank_to_image(fb, self.cfg), y
        img = fbank_to_image(fb, self.cfg, normalize=False)
        g = torch.Generator().manual_seed(self.rng.getrandbits(62))
        img = spec_augment(img, aug.freq_mask, aug.time_mask, generator=g)
        img = (img - self.cfg.norm_mean) / (2.0 * self.cfg.norm_std)
        if aug.noise > 0:
            img = img + torch.rand(img.shape, generator=g) * (float(torch.rand((), generator=g)) * aug.noise)
        if aug.roll > 0:
            img = torch.roll(img, self.rng.randrange(-aug.roll, aug.roll), dims=-1)
        return img, y


def audio_folder_dataset(root: Union[str, Path], cfg: AudioConfig, augment: Optional[AudioAugment] = None,
                         class_names: Optional[Sequence[str]] = None) -> AudioClipDataset:
    """``root/<class>/**/<clip>.wav|.flac|…``: labels by sub-folder (sorted names unless ``class_names`` given)."""
    root = Path(root)
    if not root.is_dir():
        raise AudioError(f"audio folder {root} does not exist")
    names = list(class_names) if class_names is not None else sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not names:
        raise AudioError(f"{root} has no class sub-folders; expected root/<class>/<clip>.wav")
    items, labels = [], []
    for k, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            raise AudioError(f"class {name!r} has no folder {folder}")
        for p in sorted(folder.rglob("*")):
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                items.append(p)
                labels.append(k)
    if not items:
        raise AudioError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}/<class>/")
    return AudioClipDataset(items, labels, len(names), cfg, augment, class_names=names)


def audio_manifest_datasets(manifest: Union[str, Path], cfg: AudioConfig, augment: Optional[AudioAugment] = None,
                            class_names: Optional[Sequence[str]] = None) -> Dict[str, AudioClipDataset]:
    """A CSV manifest for multi-label data (e.g. AudioSet clips downloaded to disk).

    Columns: ``file`` (path, relative to the manifest's folder or absolute), ``labels`` (class names separated
    by ``;``), and optionally ``split`` (train / val / test; default train). Classes are the sorted union of all
    labels unless ``class_names`` is given. Returns a dataset per split present; only ``train`` gets ``augment``.
    """
    import csv

    manifest = Path(manifest)
    if not manifest.is_file():
        raise AudioError(f"manifest {manifest} does not exist")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "file" not in rows[0] or "labels" not in rows[0]:
        raise AudioError(f"{manifest} needs a header with the columns file,labels[,split] and at least one row")
    parsed = []
    for i, row in enumerate(rows):
        labels = [t.strip() for t in (row["labels"] or "").split(";") if t.strip()]
        split = (row.get("split") or "train").strip()
        if split not in ("train", "val", "test"):
            raise AudioError(f"{manifest}, row {i + 2}: split {split!r} is not train, val or test")
        path = Path(row["file"])
        parsed.append((path if path.is_absolute() else manifest.parent / path, labels, split))
    names = list(class_names) if class_names is not None else sorted({n for _, ls, _ in parsed for n in ls})
    index = {n: k for k, n in enumerate(names)}
    unknown = sorted({n for _, ls, _ in parsed for n in ls if n not in index})
    if unknown:
        raise AudioError(f"{manifest}: labels not among the class names: {', '.join(unknown[:10])}")
    out: Dict[str, AudioClipDataset] = {}
    for split in ("train", "val", "test"):
        part = [(p, [index[n] for n in ls]) for p, ls, sp in parsed if sp == split]
        if part:
            out[split] = AudioClipDataset([p for p, _ in part], [ls for _, ls in part], len(names), cfg,
                                          augment if split == "train" else None, class_names=names)
    if "train" not in out:
        raise AudioError(f"{manifest} has no training rows (split column)")
    return out


#: Speech Commands folders that are not classes.
_SC_NON_CLASSES = {"_background_noise_"}


def speech_commands_datasets(root: Union[str, Path], cfg: AudioConfig = SPEECH_COMMANDS_CONFIG,
                             augment: Optional[AudioAugment] = None) -> Dict[str, AudioClipDataset]:
    """The Speech Commands v2 protocol: 35 word folders; ``validation_list.txt`` and ``testing_list.txt``
    select the held-out clips and every other clip trains (the official ``prep_sc.py`` split).

    Returns ``{'train', 'val', 'test'}`` datasets; only ``train`` gets ``augment``.
    """
    root = Path(root)
    lists = {name: root / f"{name}_list.txt" for name in ("validation", "testing")}
    missing = [str(p) for p in lists.values() if not p.is_file()]
    if missing:
        raise AudioError(f"{root} is not a Speech Commands v2 folder: missing {', '.join(missing)} "
                         "(download speech_commands_v0.02.tar.gz and unpack it there)")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in _SC_NON_CLASSES
                   and not p.name.startswith("."))
    index = {n: k for k, n in enumerate(names)}
    held = {}
    for split, p in lists.items():
        held[split] = {line.strip() for line in p.read_text().splitlines() if line.strip()}
    parts: Dict[str, Tuple[List[Path], List[int]]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for name in names:
        for f in sorted((root / name).glob("*.wav")):
            rel = f"{name}/{f.name}"
            split = "val" if rel in held["validation"] else "test" if rel in held["testing"] else "train"
            parts[split][0].append(f)
            parts[split][1].append(index[name])
    return {split: AudioClipDataset(items, labels, len(names), cfg, augment if split == "train" else None,
                                    class_names=names)
            for split, (items, labels) in parts.items()}


def spoken_digits_datasets(cfg: AudioConfig, augment: Optional[AudioAugment] = None,
                           path: Optional[Union[str, Path]] = None) -> Dict[str, AudioClipDataset]:
    """The embedded espeak-ng spoken digits (``data/audio/spoken_digits.npz``), split by voice.

    Clips are stored at 8 kHz as mu-law codes and resampled to ``cfg.sample_rate`` on load (see
    ``scripts/make_spoken_digits.py``). Returns ``{'train', 'val', 'test'}``.
    """
    path = Path(path) if path is not None else DATA_DIR / "spoken_digits.npz"
    if not path.is_file():
        raise AudioError(f"embedded spoken digits {path} are missing; run scripts/make_spoken_digits.py")
    with np.load(path) as z:
        codes, offsets, labels = z["mulaw"], z["offsets"], z["labels"]
        splits, names, rate, mu = z["splits"], [str(s) for s in z["class_names"]], int(z["sample_rate"]), int(z["mu"])
    wave_all = torch.from_numpy(mulaw_decode(codes, mu))
    if rate != cfg.sample_rate:
        if cfg.on_rate_mismatch == "error":
            raise AudioError(f"the embedded digits are sampled at {rate} Hz and on_rate_mismatch='error'")
    out = {}
    for split in ("train", "val", "test"):
        idx = np.flatnonzero(splits == split)
        clips = [resample(wave_all[offsets[i]:offsets[i + 1]], rate, cfg.sample_rate) for i in idx]
        out[split] = AudioClipDataset(clips, [int(labels[i]) for i in idx], len(names), cfg,
                                      augment if split == "train" else None, class_names=names)
    return out


def compute_norm_stats(dataset: AudioClipDataset, max_clips: Optional[int] = None) -> Tuple[float, float]:
    """Mean and standard deviation of every log-mel value (after padding) over the dataset's clips.

    The official code averages per-batch means and standard deviations; the exact pooled values computed here
    differ from that only by the batch-wise approximation. No augmentation is applied.
    """
    n = len(dataset) if max_clips is None else min(len(dataset), max_clips)
    total = total_sq = count = 0.0
    for i in range(n):
        fb = fbank_to_image(waveform_fbank(dataset.waveform(i), dataset.cfg), dataset.cfg, normalize=False).double()
        total += float(fb.sum())
        total_sq += float((fb * fb).sum())
        count += fb.numel()
    if count == 0:
        raise AudioError("cannot compute statistics of an empty dataset")
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    return float(mean), float(math.sqrt(var))
