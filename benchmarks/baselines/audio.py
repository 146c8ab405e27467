"""Audio baselines: DTW 1-NN on log-mels (``audio``) and the noisy spoken-digits rows (``noisy-audio``)."""
from __future__ import annotations

import logging
from typing import Dict, List, Tuple

import numpy as np

from ._common import dtw_distances, logistic_regression_accuracy, standardise

log = logging.getLogger("classical_baselines")


def audio_baseline() -> Dict[str, float]:
    """DTW 1-NN on the embedded spoken digits (train 80 clips, test 20 clips of held-out voices)."""
    from unireplknet.data.audio import spoken_digits_datasets
    from unireplknet.modalities.audio import AudioConfig, waveform_fbank

    cfg = AudioConfig(target_frames=64)  # the audio demo's input (docs/audio.md)
    splits = spoken_digits_datasets(cfg)

    def frames(ds) -> Tuple[List[np.ndarray], np.ndarray]:
        seqs, labels = [], []
        for i in range(len(ds)):
            fb = waveform_fbank(ds.waveform(i), cfg).numpy()  # (frames, mel), the clip's real frames only
            seqs.append((fb - cfg.norm_mean) / (2 * cfg.norm_std))
            labels.append(int(ds.target(i).argmax()) if ds.target(i).ndim else int(ds.target(i)))
        return seqs, np.array(labels)

    train_x, train_y = frames(splits["train"])
    out = {}
    for split in ("val", "test"):
        x, y = frames(splits[split])
        d = dtw_distances(x, train_x)
        out[f"dtw_1nn_{split}_top1"] = float((train_y[d.argmin(1)] == y).mean())
    return out


# ---------------------------------------------------------------- noisy audio (many speakers, rooms, noise)
NOISY_DIGITS_DIR = "runs/noisy-digits"
NOISY_DIGITS_FRAMES, NOISY_DIGITS_MELS = 96, 64  # the network's input (docs/audio.md, "Noisy spoken digits")


def mfcc(logmel: np.ndarray, coefficients: int = 20) -> np.ndarray:
    """Cepstral coefficients 1..coefficients-1 of log-mel frames (frames, bins): the orthonormal DCT-II along the
    mel axis (Davis & Mermelstein, 1980), the energy term c0 left out."""
    bins = logmel.shape[1]
    k, n = np.arange(1, coefficients)[:, None], np.arange(bins)[None, :]
    basis = np.sqrt(2.0 / bins) * np.cos(np.pi * k * (2 * n + 1) / (2 * bins))
    return logmel @ basis.T


def cmvn(frames: np.ndarray) -> np.ndarray:
    """Per-clip cepstral mean and variance normalisation: removes a fixed channel (room colouring, source tilt)."""
    return (frames - frames.mean(0)) / (frames.std(0) + 1e-8)


def utterance_statistics(logmel: np.ndarray, parts: int = 3) -> np.ndarray:
    """A fixed-length vector of one clip: mean and std of the MFCCs and of their frame-to-frame deltas over the
    whole clip, plus the mean-normalised MFCC means of ``parts`` equal thirds of its loud region (the frames
    whose mean log-mel lies above the midpoint of the clip's range: a crude energy end-pointer), so that the
    order of the sounds counts."""
    c = mfcc(logmel)
    delta = np.diff(c, axis=0)
    energy = logmel.mean(1)
    loud = np.flatnonzero(energy >= 0.5 * (energy.min() + energy.max()))
    region = c[loud.min():loud.max() + 1] - c.mean(0)
    pieces = [p.mean(0) for p in np.array_split(region, parts) if len(p)] 
    pieces += [pieces[-1]] * (parts - len(pieces))  # a region shorter than `parts` frames
    return np.concatenate([c.mean(0), c.std(0), delta.std(0), *pieces])


def noisy_digits_logmels(data: str = NOISY_DIGITS_DIR) -> Dict[str, Tuple[List[np.ndarray], np.ndarray]]:
    """The log-mel frames (frames, 64) of every clip of the noisy-digits folder, normalised with the training
    split's mean and std exactly like the network's input, per split, with the labels (the folder's class order)."""
    from unireplknet.data.audio import audio_folder_dataset, compute_norm_stats
    from unireplknet.modalities.audio import AudioConfig, waveform_fbank

    cfg = AudioConfig(target_frames=NOISY_DIGITS_FRAMES, num_mel_bins=NOISY_DIGITS_MELS)
    train = audio_folder_dataset(f"{data}/train", cfg)
    datasets = {"train": train, **{s: audio_folder_dataset(f"{data}/{s}", cfg, class_names=train.class_names)
                                   for s in ("val", "test")}}
    mean, std = compute_norm_stats(train)
    out = {}
    for split, ds in datasets.items():
        seqs = [((waveform_fbank(ds.waveform(i), cfg).numpy()[:NOISY_DIGITS_FRAMES] - mean) / (2 * std))
                for i in range(len(ds))]
        out[split] = (seqs, np.array(ds.labels))
    return out


def noisy_audio_baseline(data: str = NOISY_DIGITS_DIR) -> Dict[str, float]:
    """Classical methods on the noisy spoken digits (scripts/make_noisy_digits.py), train/val/test disjoint in
    speaker: DTW 1-NN on the network's log-mels, DTW 1-NN on per-clip normalised MFCCs, and a logistic regression
    on utterance statistics (the number of parts and the L2 strength picked on validation). ``best_on_val`` names the method with the
    highest validation top-1; it is the classical row of docs/audio.md. Generates the folder (seed 0, the
    generator's defaults) when it is missing."""
    import importlib.util
    from pathlib import Path

    if not Path(data).is_dir():
        spec = importlib.util.spec_from_file_location(
            "make_noisy_digits", Path(__file__).resolve().parents[1] / "scripts" / "make_noisy_digits.py")
        generator = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generator)
        generator.generate(Path(data))
    splits = noisy_digits_logmels(data)
    train_x, train_y = splits["train"]
    out: Dict[str, float] = {}
    val_scores: Dict[str, float] = {}
    for name, features in (("dtw_logmel_1nn", lambda s: s), ("dtw_mfcc_cmvn_1nn", lambda s: cmvn(mfcc(s)))):
        refs = [features(s) for s in train_x]
        for split in ("val", "test"):
            x, y = splits[split]
            d = dtw_distances([features(s) for s in x], refs)
            out[f"{name}_{split}_top1"] = float((train_y[d.argmin(1)] == y).mean())
        val_scores[name] = out[f"{name}_val_top1"]
    # The number of parts of the loud region and the L2 strength: the pair with the best validation top-1 (the
    # first on ties: fewer parts, then the weaker penalty).
    grid_val = {}
    for parts in (2, 3, 4, 6):
        stats = {split: np.stack([utterance_statistics(s, parts) for s in splits[split][0]]) for split in splits}
        tr, va = standardise(stats["train"], stats["val"])
        for l2 in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0):
            grid_val[parts, l2] = logistic_regression_accuracy(tr, train_y, va, splits["val"][1], l2=l2)
    parts, l2 = max(grid_val, key=grid_val.get)
    stats = {split: np.stack([utterance_statistics(s, parts) for s in splits[split][0]]) for split in splits}
    tr, te = standardise(stats["train"], stats["test"])
    out["mfcc_stats_logreg_val_top1"] = grid_val[parts, l2]
    out["mfcc_stats_logreg_test_top1"] = logistic_regression_accuracy(tr, train_y, te, splits["test"][1], l2=l2)
    out["mfcc_stats_logreg_parts"], out["mfcc_stats_logreg_l2"] = float(parts), l2
    val_scores["mfcc_stats_logreg"] = grid_val[parts, l2]
    best = max(val_scores, key=val_scores.get)
    out["best_on_val_val_top1"], out["best_on_val_test_top1"] = out[f"{best}_val_top1"], out[f"{best}_test_top1"]
    out["best_on_val"] = best  # type: ignore[assignment]
    return out
