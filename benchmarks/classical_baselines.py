"""The strongest simple methods we know for each generated modality demo, on the demos' own splits.

Every modality page compares UniRepLKNet with these rows, so a reader sees what a classical method reaches
on the same data (issue: "honest evidence for one backbone for every modality"). None of these methods is
tuned on the held-out split: every choice below was fixed before looking at held-out results, and each row
names its features.

* ``audio``  — 1-nearest-neighbour with dynamic time warping (DTW) on the same normalised log-mel images the
  network sees (frames = columns of the image, Euclidean distance between frames, the zero padding removed).
* ``noisy-audio`` — the harder audio demo (``scripts/make_noisy_digits.py``, speakers disjoint across splits):
  DTW 1-NN on the network's 64-band log-mels, DTW 1-NN on per-clip normalised MFCCs, and a logistic regression
  on MFCC statistics of the clip and of the thirds of its loud region; the validation split picks the row.
* ``video``  — 1-nearest-neighbour on the moving shape's centroid track: per frame, the intensity-weighted
  centre of the brightest pixels, with the clip's mean position subtracted (so only the motion remains).
* ``points`` — rotation-invariant shape descriptors (histograms of distances to the centroid and of pairwise
  distances — the D2 shape distribution of Osada et al., 2002 — plus the sorted principal variances), then
  1-nearest-neighbour and a multinomial logistic regression on the standardised descriptors.
* ``points_scans`` — the hard partial-scan demo (``points-train --recipe scans``), seeds 0, 1, 2: the same
  classifiers on richer rotation-invariant descriptors (D2, A3, centroid distances, principal variances, PCA
  statistics of 16-point neighbourhoods — linearity, planarity, surface variation, normal-pair angles — and
  optionally histograms in the principal-axes frame); the descriptor and the L2 strength are chosen on the
  validation split, the test split is read once.
* ``co2`` / ``grid`` / ``advection`` — ridge regression from the 48 input steps to the 24 forecast steps, one
  linear map shared by all variables, each window taken relative to its last value; ridge strength chosen on the
  validation split, and plain least squares beside it. With several stations also one joint linear map from all
  stations' inputs to all stations' futures, one per node of stations (shared by the nodes), and the better of
  the two plus an RBF kernel ridge on its residuals.
* ``det-scenes`` / ``seg-scenes`` — the dense demos' generated scenes: a per-pixel logistic foreground model,
  colour-connected regions, and a logistic regression on each region's shape descriptor (occupancy grid, row
  profile, aspect, area, contacts, outline) that names its class; boxes are the regions' extents.

Run: ``python benchmarks/classical_baselines.py [audio video points noisy-audio co2 ...] [--json FILE]``. Seconds on
one core each, except ``noisy-audio`` (minutes, for 2 x 360 x 480 DTW alignments) and ``points_scans`` (generating
and describing 3 x 576 scans: about 3 CPU minutes); co2 grid advection together take 24 CPU s.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

log = logging.getLogger("classical_baselines")


# ---------------------------------------------------------------- generic pieces
def nearest_neighbour_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                               test_y: np.ndarray) -> float:
    """Top-1 of 1-NN with Euclidean distance (ties go to the first training item)."""
    d = ((test_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)
    return float((train_y[d.argmin(1)] == test_y).mean())


def standardise(train_x: np.ndarray, test_x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Zero mean, unit variance per feature, with the statistics of the training split only."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    return (train_x - mean) / std, (test_x - mean) / std


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, classes: int, l2: float = 1e-3
                            ) -> Tuple[np.ndarray, np.ndarray]:
    """Weights and bias of an L2-regularised multinomial logistic regression (L-BFGS to convergence)."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.long)
    w = torch.zeros(xt.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def logistic_regression_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                                 test_y: np.ndarray, l2: float = 1e-2) -> float:
    """Top-1 of an L2-regularised multinomial logistic regression fitted to convergence with L-BFGS."""
    classes = int(max(train_y.max(), test_y.max())) + 1
    w, b = fit_logistic_regression(train_x, train_y, classes, l2=l2)
    pred = (np.asarray(test_x, dtype=np.float64) @ w + b).argmax(1)
    return float((pred == test_y).mean())


def dtw_distances(queries: Sequence[np.ndarray], refs: Sequence[np.ndarray], chunk: int = 4) -> np.ndarray:
    """DTW cost (sum of Euclidean frame distances along the best monotone path) for every query/reference pair.

    Each sequence is (frames, features). The recursion D[i, j] = c[i, j] + min(D[i-1, j], D[i, j-1], D[i-1, j-1])
    is run for ``chunk`` queries against all references at once, one anti-diagonal i + j = d at a time: a cell
    depends only on the two diagonals before it, and indexed by i those are contiguous slices (D[i-1, j] and
    D[i, j-1] are entries i-1 and i of diagonal d-1, D[i-1, j-1] entry i-1 of diagonal d-2), so each step is a few
    whole-array operations (the frame distances of all cells come from one matrix product per chunk). Sequences are
    zero-padded to a common length: the cost of cell (len(q), len(r)) only depends on cells inside both
    sequences, so padding is inert; it is read when its diagonal len(q) + len(r) is reached.
    """
    nr, lr = len(refs), max(len(r) for r in refs)
    feat = refs[0].shape[1]
    ra = np.zeros((nr, lr, feat))
    for j, r in enumerate(refs):
        ra[j, :len(r)] = r
    r_sq = (ra ** 2).sum(-1)
    rlen = np.array([len(r) for r in refs])
    out = np.empty((len(queries), nr))
    for start in range(0, len(queries), chunk):
        part = queries[start:start + chunk]
        nq, lq = len(part), max(len(q) for q in part)
        qa = np.zeros((nq, lq, feat))
        for i, q in enumerate(part):
            qa[i, :len(q)] = q
        # Frame distances of every pair from one matrix product, laid out cell-major, (lq * lr, nq, nr) with cell
        # (i, j) at i * lr + j, so that a diagonal's cells are whole contiguous (nq, nr) blocks.
        cross = (qa.reshape(-1, feat) @ ra.reshape(-1, feat).T).reshape(nq, lq, nr, lr).transpose(1, 3, 0, 2)
        cost_all = np.sqrt(np.maximum((qa ** 2).sum(-1).T[:, None, :, None] + r_sq.T[None, :, None, :] - 2 * cross,
                                      0.0))
        cost_all = np.ascontiguousarray(cost_all).reshape(lq * lr, nq, nr)
        qlen = np.array([len(q) for q in part])
        ends = qlen[:, None] + rlen[None, :]
        before2 = np.full((lq + 1, nq, nr), np.inf)  # diagonal d-2, indexed by i
        before2[0] = 0.0  # cell (0, 0)
        before1 = np.full((lq + 1, nq, nr), np.inf)  # diagonal 1: cells (0, 1) and (1, 0), outside the path
        for d in range(2, lq + lr + 1):
            lo, hi = max(1, d - lr), min(lq, d - 1)  # rows i of this diagonal inside both sequences
            current = np.full((lq + 1, nq, nr), np.inf)
            if lo <= hi:
                i = np.arange(lo, hi + 1)
                cost = cost_all[(i - 1) * lr + (d - i - 1)]  # cells (i-1, j-1) with j = d - i
                best = np.minimum(np.minimum(before1[lo - 1:hi], before1[lo:hi + 1]), before2[lo - 1:hi])
                current[lo:hi + 1] = cost + best
            q_end, r_end = np.nonzero(ends == d)
            out[start + q_end, r_end] = current[qlen[q_end], q_end, r_end]
            before2, before1 = before1, current
    return out


# ---------------------------------------------------------------- audio
def audio_baseline() -> Dict[str, float]:
    """DTW 1-NN on the embedded spoken digits (train 80 clips, test 20 clips of held-out voices)."""
    from unireplknet.modalities.audio import AudioConfig, spoken_digits_datasets, waveform_fbank

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
    from unireplknet.modalities.audio import AudioConfig, audio_folder_dataset, compute_norm_stats, waveform_fbank

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


# ---------------------------------------------------------------- video
def centroid_track(frames: np.ndarray, top_fraction: float = 0.05) -> np.ndarray:
    """Per frame, the brightness-weighted centre of the brightest pixels, minus the clip's mean centre."""
    lum = frames.astype(np.float64).mean(-1)  # (T, H, W)
    t, h, w = lum.shape
    k = max(1, int(top_fraction * h * w))
    ys, xs = np.mgrid[0:h, 0:w]
    track = np.zeros((t, 2))
    for f in range(t):
        flat = lum[f].ravel()
        idx = np.argpartition(flat, -k)[-k:]
        wgt = flat[idx] - flat[idx].min() + 1e-6
        track[f] = (xs.ravel()[idx] * wgt).sum() / wgt.sum(), (ys.ravel()[idx] * wgt).sum() / wgt.sum()
    return (track - track.mean(0)).ravel()


def video_baseline(clips_per_class: int = 48, num_frames: int = 4, size: int = 32, seed: int = 0
                   ) -> Dict[str, float]:
    """Centroid-track 1-NN on the motion clips with the video demo's splits (docs/video.md)."""
    from unireplknet.data.video.motion import MotionClips

    def features(split: str, per_class: int) -> Tuple[np.ndarray, np.ndarray]:
        ds = MotionClips(split, per_class, num_frames, size, seed)
        rows = [ds.render(i) for i in range(len(ds))]
        return np.stack([centroid_track(f) for f, _, _ in rows]), np.array([lab for _, _, lab in rows])

    train_x, train_y = features("train", clips_per_class)
    test_x, test_y = features("val", max(1, clips_per_class // 4))
    return {"centroid_track_1nn_val_top1": nearest_neighbour_accuracy(train_x, train_y, test_x, test_y)}


# ---------------------------------------------------------------- hard video (docs/video.md, "hard motion clips")
def box_sum(values: np.ndarray, size: int) -> np.ndarray:
    """Sum over a size x size window centred on every pixel of the last two axes (edges padded by reflection)."""
    half = size // 2
    padded = np.pad(values, [(0, 0)] * (values.ndim - 2) + [(half + 1, half), (half + 1, half)], mode="reflect")
    padded[..., 0, :] = 0.0
    padded[..., :, 0] = 0.0
    c = padded.cumsum(-2).cumsum(-1)
    return c[..., size:, size:] - c[..., :-size, size:] - c[..., size:, :-size] + c[..., :-size, :-size]


def block_matching_flow(a: np.ndarray, b: np.ndarray, radius: int = 5, patch: int = 7,
                        smoothness: float = 1e-3) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense integer motion from frame ``a`` to frame ``b`` (H, W, C floats) and the global (camera) shift.

    For every displacement d with |dx|, |dy| <= radius, the cost at a pixel is the sum of squared differences
    between the patch of ``a`` around it and the patch of ``b`` around it + d. The camera shift is the d with
    the least cost summed over the frame; each pixel takes its own cheapest d, with a small penalty
    ``smoothness`` x |d - camera|^2 (relative to the mean cost) so flat regions, where every d fits, keep
    the camera's shift. Returns the flow (H, W, 2) as (dx, dy), the camera shift (2,) and the residual (H, W):
    the mean squared difference per pixel of the patch after the camera's shift (large where something moves
    against the scene).
    """
    h, w = a.shape[:2]
    padded = np.pad(b, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    shifts = np.array([(dx, dy) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)])
    errors = np.stack([((padded[radius + dy:radius + dy + h, radius + dx:radius + dx + w] - a) ** 2).sum(-1)
                       for dx, dy in shifts])
    costs = box_sum(errors, patch)  # (shifts, H, W)
    best = costs.sum((1, 2)).argmin()
    camera = shifts[best]
    penalty = smoothness * costs.mean() * ((shifts - camera) ** 2).sum(1)
    flow = shifts[(costs + penalty[:, None, None]).argmin(0)]
    return flow.astype(np.float64), camera.astype(np.float64), costs[best] / patch ** 2


def motion_features(frames: np.ndarray, bins: int = 8, residual: float = 0.06) -> np.ndarray:
    """Camera-compensated motion features of one clip (T, H, W, 3) uint8, per pair of consecutive frames.

    From :func:`block_matching_flow`, the flow relative to the camera at the pixels that move against the
    scene (|relative flow| >= 1 pixel): its mean (dx, dy) and length, the mean length of the vectors, the
    angular velocity about their centroid (sum of (r x f) / sum of |r|^2; positive = clockwise on screen), the
    share of moving pixels and a histogram of the relative flow's directions (``bins`` bins, length-weighted);
    then the log ratio of the last to the first step's speed.
    """
    f = frames.astype(np.float64) / 255.0
    h, w = f.shape[1:3]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rows, speeds = [], []
    for t in range(len(f) - 1):
        flow, camera, changed = block_matching_flow(f[t], f[t + 1])
        rel = flow - camera
        length = np.hypot(rel[..., 0], rel[..., 1])
        moving = (length >= 1.0) & (changed >= residual)
        n = int(moving.sum())
        if n == 0:
            rows.append(np.zeros(6 + bins))
            speeds.append(0.0)
            continue
        u, v = rel[moving, 0], rel[moving, 1]
        x, y = xs[moving] - xs[moving].mean(), ys[moving] - ys[moving].mean()
        spin = (x * v - y * u).sum() / max((x * x + y * y).sum(), 1e-6)
        hist = np.histogram(np.arctan2(v, u), bins=bins, range=(-np.pi, np.pi), weights=length[moving])[0] / n
        speed = float(np.hypot(u.mean(), v.mean()))
        rows.append(np.concatenate([[u.mean(), v.mean(), speed, length[moving].mean(), spin, n / (h * w)], hist]))
        speeds.append(speed)
    return np.concatenate(rows + [[np.log((speeds[-1] + 0.5) / (speeds[0] + 0.5))]])


def video_hard_baseline(clips_per_class: int = 80, num_frames: int = 4, size: int = 32,
                        seeds: Sequence[int] = (0, 1, 2)) -> Dict[str, float]:
    """The hard motion clips with the hard demo's splits (train 80 / class; val and test 20 / class, objects of
    three disjoint shape sets), once per data seed (the seeds of the network runs, which draw their own clips):
    centroid-track 1-NN, and camera-compensated motion features (block-matching flow, :func:`motion_features`)
    with 1-NN and logistic regression, whose L2 strength is chosen on val. Keys ``seed<S>_*`` per seed, and the
    mean and sample standard deviation of every test top-1 over the seeds."""
    out: Dict[str, float] = {}
    for seed in seeds:
        out.update({f"seed{seed}_{k}": v for k, v in _video_hard_one_seed(clips_per_class, num_frames, size, seed).items()})
    for key in ("centroid_track_1nn_test_top1", "motion_features_1nn_test_top1", "motion_features_logreg_test_top1"):
        values = np.array([out[f"seed{s}_{key}"] for s in seeds])
        out[f"mean_{key}"] = float(values.mean())
        out[f"std_{key}"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def _video_hard_one_seed(clips_per_class: int, num_frames: int, size: int, seed: int) -> Dict[str, float]:
    from unireplknet.data.video.motion import MotionClips

    def rendered(split: str, per_class: int) -> Tuple[List[np.ndarray], np.ndarray]:
        ds = MotionClips(split, per_class, num_frames, size, seed, difficulty="hard")
        rows = [ds.render(i) for i in range(len(ds))]
        return [f for f, _, _ in rows], np.array([lab for _, _, lab in rows])

    held = max(1, clips_per_class // 4)
    data = {"train": rendered("train", clips_per_class), "val": rendered("val", held), "test": rendered("test", held)}
    out: Dict[str, float] = {}
    tracks = {k: np.stack([centroid_track(f) for f in frames]) for k, (frames, _) in data.items()}
    feats = {k: np.stack([motion_features(f) for f in frames]) for k, (frames, _) in data.items()}
    labels = {k: y for k, (_, y) in data.items()}
    for k in ("val", "test"):
        out[f"centroid_track_1nn_{k}_top1"] = nearest_neighbour_accuracy(tracks["train"], labels["train"], tracks[k],
                                                                         labels[k])
        train_s, test_s = standardise(feats["train"], feats[k])
        out[f"motion_features_1nn_{k}_top1"] = nearest_neighbour_accuracy(train_s, labels["train"], test_s, labels[k])
    strengths = (1e-4, 1e-3, 1e-2, 1e-1)
    train_s, val_s = standardise(feats["train"], feats["val"])
    val_acc = {l2: logistic_regression_accuracy(train_s, labels["train"], val_s, labels["val"], l2) for l2 in strengths}
    chosen = max(strengths, key=lambda l2: (val_acc[l2], l2))  # ties: the stronger penalty
    train_s, test_s = standardise(feats["train"], feats["test"])
    out["motion_features_logreg_val_top1"] = val_acc[chosen]
    out["motion_features_logreg_test_top1"] = logistic_regression_accuracy(train_s, labels["train"], test_s,
                                                                           labels["test"], chosen)
    out["motion_features_logreg_l2"] = chosen
    return out


# ---------------------------------------------------------------- point clouds
def shape_descriptor(points: np.ndarray, bins: int = 16, pairs: int = 4096, seed: int = 0) -> np.ndarray:
    """Rotation-invariant descriptor: centroid-distance histogram, D2 histogram, sorted principal variances."""
    p = points - points.mean(0)
    radius = np.linalg.norm(p, axis=1)
    scale = radius.max() + 1e-8
    h_radius = np.histogram(radius / scale, bins=bins, range=(0, 1))[0] / len(p)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(p), pairs), rng.integers(0, len(p), pairs)
    h_d2 = np.histogram(np.linalg.norm(p[i] - p[j], axis=1) / (2 * scale), bins=bins, range=(0, 1))[0] / pairs
    eig = np.sort(np.linalg.eigvalsh(np.cov(p.T)))[::-1] / scale ** 2
    return np.concatenate([h_radius, h_d2, eig])


def points_baseline(shapes_per_class: int = 32, num_points: int = 1024, seed: int = 0) -> Dict[str, float]:
    """Shape descriptors + 1-NN / logistic regression on the generated shapes with the demo's splits."""
    from unireplknet.data.pointcloud.shapes import GeneratedShapes

    def features(split: str, per_class: int) -> Tuple[np.ndarray, np.ndarray]:
        ds = GeneratedShapes(split, per_class, num_points, seed)
        items = [ds[i] for i in range(len(ds))]
        return np.stack([shape_descriptor(p.numpy()) for p, _ in items]), np.array([lab for _, lab in items])

    train_x, train_y = features("train", shapes_per_class)
    test_x, test_y = features("val", max(1, shapes_per_class // 4))
    train_s, test_s = standardise(train_x, test_x)
    return {"descriptor_1nn_val_top1": nearest_neighbour_accuracy(train_s, train_y, test_s, test_y),
            "descriptor_logreg_val_top1": logistic_regression_accuracy(train_s, train_y, test_s, test_y)}


# ---------------------------------------------------------------- point clouds: the hard partial-scan demo
def local_shape_features(points: np.ndarray, k: int = 16) -> Tuple[np.ndarray, np.ndarray]:
    """Per point, the eigenvalues (descending, summing to 1) of the covariance of its k nearest neighbours, and the
    unit normal (the eigenvector of the smallest one) — the classic PCA surface analysis."""
    p = torch.as_tensor(points, dtype=torch.float64)
    nearest = torch.cdist(p, p).topk(k, largest=False).indices  # (N, k), the point itself included
    nb = p[nearest] - p[nearest].mean(1, keepdim=True)
    evals, evecs = torch.linalg.eigh(nb.transpose(1, 2) @ nb / k)  # ascending
    evals = evals.flip(-1).clamp_min(0)
    evals = evals / evals.sum(-1, keepdim=True).clamp_min(1e-12)
    return evals.numpy(), evecs[:, :, 0].numpy()


def scan_descriptor(points: np.ndarray, bins: int = 12, pairs: int = 4096, seed: int = 0) -> np.ndarray:
    """Rotation-invariant descriptor of a partial scan, from global and local shape statistics.

    Global: distances to the centroid and between random point pairs (Osada et al.'s D2), the angle at a random
    point of random triples (A3), all scaled by the RMS radius (robust to the far outliers of a partial scan), and
    the sorted principal variances. Local (PCA of 16-point neighbourhoods): histograms of linearity, planarity and
    surface variation, and of |cos| of the angle between the normals of random point pairs (flat faces give peaks
    at 0 and 1, curved surfaces spread out).
    """
    p = points - points.mean(0)
    radius = np.linalg.norm(p, axis=1)
    rms = np.sqrt((radius ** 2).mean()) + 1e-8
    rng = np.random.default_rng(seed)
    i, j, m = (rng.integers(0, len(p), pairs) for _ in range(3))

    def hist(values: np.ndarray, hi: float) -> np.ndarray:
        return np.histogram(np.clip(values, 0, hi * (1 - 1e-9)), bins=bins, range=(0, hi))[0] / len(values)

    d2 = np.linalg.norm(p[i] - p[j], axis=1) / rms
    a, b = p[i] - p[m], p[j] - p[m]
    cos_a3 = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    eig = np.sort(np.linalg.eigvalsh(np.cov(p.T)))[::-1] / rms ** 2
    evals, normals = local_shape_features(points)
    linearity = (evals[:, 0] - evals[:, 1]) / (evals[:, 0] + 1e-12)
    planarity = (evals[:, 1] - evals[:, 2]) / (evals[:, 0] + 1e-12)
    normal_cos = np.abs((normals[i] * normals[j]).sum(1))
    return np.concatenate([hist(radius / rms, 2.5), hist(d2, 4.0), hist(np.arccos(np.clip(cos_a3, -1, 1)), np.pi),
                           eig, hist(linearity, 1.0), hist(planarity, 1.0), hist(evals[:, 2], 1 / 3),
                           hist(normal_cos, 1.0)])


def principal_frame_descriptor(points: np.ndarray, bins: int = 10) -> np.ndarray:
    """:func:`scan_descriptor` plus where the points lie in the cloud's principal-axes frame (the frame of
    ``points-train --align pca``, :func:`unireplknet.tasks.pointcloud.pca_align`): the histogram of each
    coordinate and the 2-D histogram over the two largest axes, all in units of the RMS radius."""
    from unireplknet.tasks.pointcloud.task import pca_align

    aligned = pca_align(torch.as_tensor(points, dtype=torch.float64)[None])[0].numpy()
    aligned = aligned / (np.sqrt((aligned ** 2).sum(1).mean()) + 1e-8)
    edges = np.linspace(-2.5, 2.5, bins + 1)
    marginals = [np.histogram(np.clip(aligned[:, k], -2.5, 2.5), bins=edges)[0] for k in range(3)]
    plane = np.histogram2d(np.clip(aligned[:, 0], -2.5, 2.5), np.clip(aligned[:, 1], -2.5, 2.5),
                           bins=(np.linspace(-2.5, 2.5, 7),) * 2)[0].ravel()
    return np.concatenate([scan_descriptor(points), np.concatenate(marginals) / len(points), plane / len(points)])


def _scan_features(split: str, shapes_per_class: int, num_points: int, seed: int,
                   descriptors: Dict[str, Callable]) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """{descriptor name: (features, labels)} of every scan of one split (each scan generated once)."""
    from unireplknet.data.pointcloud import GeneratedScans

    ds = GeneratedScans(split, shapes_per_class, num_points, seed)
    items = [ds[i] for i in range(len(ds))]
    labels = np.array([lab for _, lab in items])
    return {name: (np.stack([fn(p.numpy()) for p, _ in items]), labels) for name, fn in descriptors.items()}


def points_scans_baseline(seeds: Sequence[int] = (0, 1, 2), shapes_per_class: int = 24, num_points: int = 1024
                          ) -> Dict[str, object]:
    """Descriptors + 1-NN / logistic regression on the partial-scan demo, the splits of ``points-train --recipe
    scans --seed S`` (train, and a quarter as many validation and test scans per class).

    Choices made on the validation split only, per seed: the descriptor (the global-only one of the full-shape
    demo, the scan descriptor, or the scan descriptor plus principal-frame histograms) for each classifier, and
    the L2 strength of the logistic regression (powers of ten). Test accuracy is then read once for the chosen
    setting.
    """
    held = max(1, shapes_per_class // 4)
    descriptors = {"scan": scan_descriptor, "global": shape_descriptor, "scan+frame": principal_frame_descriptor}
    per_seed: List[Dict[str, object]] = []
    for seed in seeds:
        by_split = {split: _scan_features(split, shapes_per_class if split == "train" else held, num_points, seed,
                                          descriptors) for split in ("train", "val", "test")}
        feats = {name: {split: by_split[split][name] for split in by_split} for name in descriptors}
        row: Dict[str, object] = dict(seed=seed)
        best_nn = max(descriptors, key=lambda n: nearest_neighbour_accuracy(
            *_standardised_pair(feats[n], "val")))
        row["1nn_descriptor"] = best_nn
        row["1nn_val_top1"] = nearest_neighbour_accuracy(*_standardised_pair(feats[best_nn], "val"))
        row["1nn_test_top1"] = nearest_neighbour_accuracy(*_standardised_pair(feats[best_nn], "test"))
        grid = [(n, l2) for n in descriptors for l2 in (1e-4, 1e-3, 1e-2, 1e-1)]
        val = {c: logistic_regression_accuracy(*_standardised_pair(feats[c[0]], "val"), l2=c[1]) for c in grid}
        best = max(grid, key=lambda c: (val[c], c[1]))  # ties: the stronger regularisation
        row.update(logreg_descriptor=best[0], logreg_l2=best[1], logreg_val_top1=val[best],
                   logreg_test_top1=logistic_regression_accuracy(*_standardised_pair(feats[best[0]], "test"),
                                                                 l2=best[1]))
        per_seed.append(row)
        log.info("points_scans seed %d: %s", seed, row)
    out: Dict[str, object] = dict(per_seed=per_seed)
    for key in ("1nn_test_top1", "logreg_test_top1", "1nn_val_top1", "logreg_val_top1"):
        values = [float(r[key]) for r in per_seed]
        out[f"{key}_mean"] = float(np.mean(values))
        out[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def points_scans_descriptor_groups(seed: int = 0, shapes_per_class: int = 24, num_points: int = 1024
                                   ) -> Dict[str, object]:
    """Analysis, not a baseline: logistic-regression accuracy per descriptor group on the partial-scan demo (one
    seed; L2 chosen on validation), to see which statistics carry the classical result. It reads the test split
    for every group, so nothing may be chosen from it; docs/pointcloud.md reports it as an explanation only."""
    n_global = 3 * 12 + 3  # scan_descriptor's layout: three 12-bin global histograms and 3 variances, then local
    groups: Dict[str, Callable] = {
        "global (radius, D2, A3 histograms, principal variances)": lambda p: scan_descriptor(p)[:n_global],
        "local PCA (linearity, planarity, variation, normal pairs)": lambda p: scan_descriptor(p)[n_global:],
        "scan (global + local)": scan_descriptor,
        "scan + principal-frame histograms": principal_frame_descriptor}
    held = max(1, shapes_per_class // 4)
    by_split = {split: _scan_features(split, shapes_per_class if split == "train" else held, num_points, seed, groups)
                for split in ("train", "val", "test")}
    out: Dict[str, object] = dict(seed=seed)
    for name in groups:
        feats = {split: by_split[split][name] for split in by_split}
        val = {l2: logistic_regression_accuracy(*_standardised_pair(feats, "val"), l2=l2)
               for l2 in (1e-4, 1e-3, 1e-2, 1e-1)}
        l2 = max(val, key=lambda k: (val[k], k))
        out[name] = dict(l2=l2, val_top1=val[l2],
                         test_top1=logistic_regression_accuracy(*_standardised_pair(feats, "test"), l2=l2))
    return out


def _standardised_pair(split_features: Dict[str, Tuple[np.ndarray, np.ndarray]], held_out: str):
    """(train x, train y, held-out x, held-out y), standardised with the training statistics."""
    (train_x, train_y), (x, y) = split_features["train"], split_features[held_out]
    train_s, x_s = standardise(train_x, x)
    return train_s, train_y, x_s, y


# ---------------------------------------------------------------- forecasting
def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights W (with a bias row) minimising |[x 1] W - y|^2 + alpha |W|^2 (bias not penalised)."""
    xa = np.concatenate([x, np.ones((len(x), 1))], 1)
    reg = alpha * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ y)


def _windows(values: np.ndarray, seq_len: int, pred_len: int) -> Tuple[np.ndarray, np.ndarray]:
    """All (input, future) window pairs of every variable: (windows * V, seq_len), (windows * V, pred_len)."""
    x, y = _joint_windows(values, seq_len, pred_len)
    return x.reshape(-1, seq_len), y.reshape(-1, pred_len)


def _relative(x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Windows (n, V, L) and futures (n, V, H) taken relative to each variable's last input value."""
    last = x[:, :, -1:]
    return x - last, y - last


def _joint_windows(values: np.ndarray, seq_len: int, pred_len: int) -> Tuple[np.ndarray, np.ndarray]:
    """All (input, future) window pairs with every variable kept: (windows, V, seq_len), (windows, V, pred_len)."""
    n = values.shape[0] - seq_len - pred_len + 1
    idx = np.arange(n)[:, None]
    return (values[idx + np.arange(seq_len)].transpose(0, 2, 1),
            values[idx + seq_len + np.arange(pred_len)].transpose(0, 2, 1))


def rbf_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma |a_i - b_j|^2) for every row pair."""
    d = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
    return np.exp(-gamma * np.maximum(d, 0.0))


def forecast_baseline(data: str, seq_len: int = 48, pred_len: int = 24) -> Dict[str, float]:
    """Classical forecasts on the forecasting demo's own splits (``forecast-train --data DATA``), test MSE/MAE.

    * ``naive`` / ``seasonal_naive``: the last value; the value one season earlier (12 months, 24 hours);
    * ``ridge`` / ``least_squares``: one linear map seq_len -> pred_len shared by every variable (per series),
      each window relative to its own last value; the strength chosen on validation among powers of ten, and
      plain least squares (the smallest strength tried);
    * ``joint_ridge`` (several variables): one linear map from all variables' inputs to all variables'
      futures (V*seq_len -> V*pred_len), so it sees one station's past when forecasting another;
    * ``node_ridge`` (stations in nodes of ``enc_in``, as the forecaster groups them): one such map per node of
      enc_in stations, shared by the nodes (twice the samples of the joint map on the 2-node grids);
    * ``kernel_ridge``: the better of those two on validation plus an RBF kernel ridge on its residuals (inputs
      standardised with the training statistics; width and strength chosen on validation), a generic
      nonlinear regressor.

    Every choice is made on the validation windows; the test windows are scored once.
    """
    from unireplknet.tasks.forecast import (DEFAULT_SEASONAL_PERIOD, ForecastTrainConfig,
                                               build_forecast_splits)

    cfg = ForecastTrainConfig.with_recipe(data=data, seq_len=seq_len, pred_len=pred_len)
    splits, _ = build_forecast_splits(cfg)
    period = cfg.seasonal_period or DEFAULT_SEASONAL_PERIOD[cfg.freq or splits["train"].freq]
    joint = {k: _joint_windows(s.values.astype(np.float64), seq_len, pred_len) for k, s in splits.items()}
    out: Dict[str, float] = {}

    def score(name: str, pred: np.ndarray, target: np.ndarray) -> None:
        err = pred - target
        out.update({f"{name}_test_mse": float((err ** 2).mean()), f"{name}_test_mae": float(np.abs(err).mean())})

    x, y = joint["test"]
    score("naive", np.repeat(x[:, :, -1:], pred_len, 2), y)
    score("seasonal_naive", x[:, :, [seq_len - period + h % period for h in range(pred_len)]], y)

    # per series: every variable's windows are samples of one shared map
    rel = {k: _relative(*v) for k, v in joint.items()}
    flat = {k: (a.reshape(-1, seq_len), b.reshape(-1, pred_len)) for k, (a, b) in rel.items()}
    alphas = 10.0 ** np.arange(-3, 7)
    fits = {a: ridge_fit(*flat["train"], a) for a in alphas}

    def linear(w: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return np.concatenate([xs, np.ones((len(xs), 1))], 1) @ w

    val_mse = {a: float(((linear(w, flat["val"][0]) - flat["val"][1]) ** 2).mean()) for a, w in fits.items()}
    chosen = min(val_mse, key=val_mse.get)
    last = x[:, :, -1:]
    for name, a in (("ridge", chosen), ("least_squares", 1e-3)):
        score(name, linear(fits[a], flat["test"][0]).reshape(y.shape) + last, y)
    out["ridge_alpha"] = float(chosen)
    if x.shape[1] == 1:
        return out  # one variable: the joint maps are the per-series ones

    # jointly: all variables at once, and (when the stations come in nodes of cfg.enc_in, as the forecaster
    # groups them) one map per node shared by the nodes; the better on validation gets the kernel ridge on top
    groups = {"joint": x.shape[1]}
    if cfg.enc_in and cfg.enc_in < x.shape[1] and x.shape[1] % cfg.enc_in == 0:
        groups["node"] = cfg.enc_in
    chosen_fits = {}
    for name, width in groups.items():
        jx = {k: a.reshape(-1, width * seq_len) for k, (a, _) in rel.items()}  # (windows*nodes, width*seq_len)
        jy = {k: b.reshape(-1, width * pred_len) for k, (_, b) in rel.items()}
        fits = {a: ridge_fit(jx["train"], jy["train"], a) for a in alphas}
        val_mse = {a: float(((linear(w, jx["val"]) - jy["val"]) ** 2).mean()) for a, w in fits.items()}
        alpha = min(val_mse, key=val_mse.get)
        score(f"{name}_ridge", linear(fits[alpha], jx["test"]).reshape(y.shape) + last, y)
        out[f"{name}_ridge_alpha"] = float(alpha)
        chosen_fits[name] = (val_mse[alpha], width, jx, jy, fits[alpha])
    _, width, jx, jy, w = min(chosen_fits.values(), key=lambda t: t[0])
    out["kernel_on_width"] = float(width)
    mean, std = jx["train"].mean(0), jx["train"].std(0) + 1e-8
    zs = {k: (v - mean) / std for k, v in jx.items()}
    resid = jy["train"] - linear(w, jx["train"])
    best = None
    for gamma in np.array([0.25, 1.0, 4.0]) / zs["train"].shape[1]:
        k_train = rbf_kernel(zs["train"], zs["train"], gamma)
        k_val = rbf_kernel(zs["val"], zs["train"], gamma)
        for a in (0.01, 0.1, 1.0, 10.0):
            coef = np.linalg.solve(k_train + a * np.eye(len(k_train)), resid)
            mse = float(((linear(w, jx["val"]) + k_val @ coef - jy["val"]) ** 2).mean())
            if best is None or mse < best[0]:
                best = (mse, gamma, a, coef)
    _, gamma, a, coef = best
    pred = linear(w, jx["test"]) + rbf_kernel(zs["test"], zs["train"], gamma) @ coef
    score("kernel_ridge", pred.reshape(y.shape) + last, y)
    out.update(kernel_gamma_times_dim=float(gamma * zs["train"].shape[1]), kernel_alpha=float(a))
    return out


# ---------------------------------------------------------------- dense scenes (detection / segmentation)
# The generated scenes of `det-train` / `seg-train --data scenes` (unireplknet.data.scenes): one to three shapes
# (rectangle, ellipse, triangle: the class is the shape, the colour is random) in flat, saturated colours (one
# channel at 15 or 240) on low-contrast striped, noisy backgrounds; later shapes occlude earlier ones. The
# classical pipeline, fitted on the task's own training scenes and scored by the task's own evaluators:
#   1. foreground pixels: a logistic regression on per-pixel colour features (sorted channels, their squares and
#      products — "one channel far from mid-grey" is not linear in the colour — and the 3x3 colour spread);
#   2. regions: 4-connected foreground pixels whose colours differ by less than REGION_COLOUR_STEP per channel
#      (objects are flat colours, so touching objects of different colours become different regions);
#   3. per region, shape descriptors (fill of a 4x4 grid over its box, row widths at five heights, extent,
#      aspect, size, outline length, how much of the outline borders other regions or the image edge —
#      occlusion cues) and a logistic regression over {no object, rectangle, ellipse, triangle} trained on the
#      training scenes' regions, labelled by the majority ground-truth class of their pixels;
#   4. segmentation: every region's pixels get its most likely class; detection: every region is a box and a
#      mask with one detection per object class, scored by that class's probability (as a detector's
#      per-class scores).
# ``--scenes-style textured`` (shapes filled with background-like textures): no pixel's colour tells shape from
# background, so step 1 is skipped (every pixel is a candidate) and step 2 alone cuts the scene where the colour
# jumps (the 'no object' class of step 3 then takes the background's regions). Its colour step was chosen on the
# *training* scenes of seed 0 (ground-truth objects matched by one region at IoU > 0.7, of 73 in 40 scenes, for
# steps 14 / 17 / 20 / 24 / 30: 44 / 57 / 55 / 47 / 42; 20 gives 16 regions per scene where 17 gives 71).
REGION_COLOUR_STEP = 24.0  # flat: colour noise inside an object is N(0, 4) per channel, neighbours differ by < 24
TEXTURED_COLOUR_STEP = 20.0
MIN_REGION_PIXELS = 8


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def pixel_features(image: np.ndarray) -> np.ndarray:
    """(H*W, 10) per-pixel features of an (H, W, 3) uint8 image: sorted channels, their squares and pairwise
    products (centred at mid-grey), and the mean 3x3 neighbourhood standard deviation of the colour."""
    img = image.astype(np.float64) / 255.0
    h, w, _ = img.shape
    s = np.sort(img, axis=-1).reshape(-1, 3) - 0.5
    quad = np.stack([s[:, 0] ** 2, s[:, 1] ** 2, s[:, 2] ** 2, s[:, 0] * s[:, 2], s[:, 0] * s[:, 1],
                     s[:, 1] * s[:, 2]], axis=1)
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    win = np.stack([pad[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])  # (9, H, W, 3)
    spread = win.std(0).mean(-1).reshape(-1, 1)
    return np.concatenate([s, quad, spread], axis=1)


def colour_regions(image: np.ndarray, foreground: np.ndarray, step: float = REGION_COLOUR_STEP) -> np.ndarray:
    """(H, W) int region ids (-1 outside the foreground): 4-connected foreground pixels whose colours differ by
    less than ``step`` in every channel, by min-label propagation; ids are 0 … n-1 in raster order."""
    img = image.astype(np.float64)
    h, w = foreground.shape
    right = foreground[:, :-1] & foreground[:, 1:] & (np.abs(img[:, :-1] - img[:, 1:]).max(-1) < step)
    down = foreground[:-1] & foreground[1:] & (np.abs(img[:-1] - img[1:]).max(-1) < step)
    big = h * w
    lab = np.where(foreground, np.arange(big).reshape(h, w), big)
    while True:
        new = lab.copy()
        np.minimum(new[:, :-1], np.where(right, lab[:, 1:], big), out=new[:, :-1])
        np.minimum(new[:, 1:], np.where(right, lab[:, :-1], big), out=new[:, 1:])
        np.minimum(new[:-1], np.where(down, lab[1:], big), out=new[:-1])
        np.minimum(new[1:], np.where(down, lab[:-1], big), out=new[1:])
        new = np.where(foreground, new.reshape(-1)[np.minimum(new, big - 1).reshape(-1)].reshape(h, w), big)
        if np.array_equal(new, lab):
            break
        lab = new
    out = np.full((h, w), -1, dtype=np.int64)
    roots = np.unique(lab[foreground])
    out[foreground] = np.searchsorted(roots, lab[foreground])
    return out


def region_descriptor(mask: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Shape descriptors of one region (``mask``) in its scene's region map (see the block comment)."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = mask[y0:y1, x0:x1].astype(np.float64)
    bh, bw = crop.shape
    grid = [crop[int(i * bh / 4):max(int((i + 1) * bh / 4), int(i * bh / 4) + 1),
                 int(j * bw / 4):max(int((j + 1) * bw / 4), int(j * bw / 4) + 1)].mean()
            for i in range(4) for j in range(4)]
    rows = [crop[min(bh - 1, int(f * bh))].mean() for f in (0.1, 0.3, 0.5, 0.7, 0.9)]
    # the outline as pixel sides between the region and a 4-neighbour outside it; where that neighbour lies
    pad = np.pad(mask, 1)
    other = np.pad((regions >= 0) & ~mask, 1)
    edge_img = np.pad(np.zeros_like(mask), 1, constant_values=True)
    outline, touching, at_edge = 0, 0, 0
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nb = (slice(1 + dy, pad.shape[0] - 1 + dy), slice(1 + dx, pad.shape[1] - 1 + dx))
        boundary = mask & ~pad[nb]
        outline += boundary.sum()
        touching += (boundary & other[nb]).sum()
        at_edge += (boundary & edge_img[nb]).sum()
    area = mask.sum()
    return np.array([*grid, *rows, area / (bh * bw), np.log(bw / bh), np.log(area), touching / outline,
                     at_edge / outline, outline / np.sqrt(area)])


def scene_regions(image: np.ndarray, fg_model: Optional[Tuple[np.ndarray, ...]]
                  ) -> Tuple[List[np.ndarray], np.ndarray]:
    """The scene's region masks (foreground classifier + colour regions, tiny regions dropped) and region map;
    ``fg_model=None`` (textured scenes): every pixel is foreground and the colour step is the textured one."""
    h, wd = image.shape[:2]
    if fg_model is None:
        fg, step = np.ones((h, wd), dtype=bool), TEXTURED_COLOUR_STEP
    else:
        mean, std, w, b = fg_model
        fg = (softmax(((pixel_features(image) - mean) / std) @ w + b)[:, 1] > 0.5).reshape(h, wd)
        step = REGION_COLOUR_STEP
    regions = colour_regions(image, fg, step)
    masks = [regions == k for k in range(regions.max() + 1)]
    return [m for m in masks if m.sum() >= MIN_REGION_PIXELS], regions


class ClassicalScenes(torch.nn.Module):
    """The fitted classical pipeline, shaped as the task's models so the task's own evaluators score it:
    ``mode='detection'`` takes a list of (3, H, W) images in [0, 1] and returns torchvision detector outputs;
    ``mode='segmentation'`` takes an ImageNet-normalised batch and returns (N, 4, H, W) one-hot logits."""

    def __init__(self, fg_model, region_model, region_norm, mode: str):
        super().__init__()
        self.fg_model, self.region_model, self.region_norm, self.mode = fg_model, region_model, region_norm, mode

    def analyse(self, image: np.ndarray) -> Tuple[List[np.ndarray], np.ndarray]:
        masks, regions = scene_regions(image, self.fg_model)
        if not masks:
            return [], np.zeros((0, 4))
        desc = np.stack([region_descriptor(m, regions) for m in masks])
        mean, std = self.region_norm
        w, b = self.region_model
        return masks, softmax(((desc - mean) / std) @ w + b)

    def forward(self, images):  # a batch tensor (segmentation) or a list of images (detection)
        from unireplknet.tasks.dense.segmentation import ADE20KDataset

        if self.mode == "segmentation":
            mean = torch.tensor(ADE20KDataset.MEAN).view(1, 3, 1, 1)
            std = torch.tensor(ADE20KDataset.STD).view(1, 3, 1, 1)
            pixels = ((images * std + mean) * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
            out = torch.zeros(len(pixels), 4, *pixels.shape[1:3])
            out[:, 0] = 1.0
            for n, image in enumerate(pixels):
                masks, probs = self.analyse(image)
                for m, p in zip(masks, probs):
                    out[n, :, torch.from_numpy(m)] = torch.nn.functional.one_hot(
                        torch.tensor(int(p.argmax())), 4).float()[:, None]
            return out
        results = []
        for img in images:
            image = (img * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
            masks, probs = self.analyse(image)
            boxes, scores, labels, out_masks = [], [], [], []
            for m, p in zip(masks, probs):
                ys, xs = np.nonzero(m)
                for cls in (1, 2, 3):
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                    scores.append(p[cls])
                    labels.append(cls)
                    out_masks.append(m)
            h, w = image.shape[:2]
            results.append(dict(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                scores=torch.tensor(scores, dtype=torch.float32),
                                labels=torch.tensor(labels, dtype=torch.int64),
                                masks=torch.tensor(np.array(out_masks), dtype=torch.float32).reshape(-1, 1, h, w)))
        return results


def fit_classical_scenes(num_train: int, seed: int = 0, size: int = 64, fg_scenes: int = 100,
                         mode: str = "detection", style: str = "flat") -> ClassicalScenes:
    """Fit both logistic regressions on training scenes ``0 … num_train-1`` of ``seed`` (the task's own)."""
    from unireplknet.data.scenes import make_scene

    rng = np.random.default_rng(seed)
    scenes = [make_scene(i, seed=seed, size=size, split="train", style=style) for i in range(num_train)]
    feats, fg = [], []
    for s in scenes[:fg_scenes if style == "flat" else 0]:
        feats.append(pixel_features(s.image))
        fg.append((s.semantic > 0).reshape(-1))
    fg_model = None
    if style == "flat":
        x, y = np.concatenate(feats), np.concatenate(fg).astype(np.int64)
        keep = rng.choice(len(x), size=min(len(x), 100_000), replace=False)
        x, y = x[keep], y[keep]
        mean, std = x.mean(0), x.std(0) + 1e-8
        fg_model = (mean, std, *fit_logistic_regression((x - mean) / std, y, 2, l2=1e-5))
    desc, labels = [], []
    for s in scenes:
        masks, regions = scene_regions(s.image, fg_model)
        for m in masks:
            desc.append(region_descriptor(m, regions))
            labels.append(int(np.bincount(s.semantic[m], minlength=4).argmax()))
    d = np.stack(desc)
    norm = (d.mean(0), d.std(0) + 1e-8)
    region_model = fit_logistic_regression((d - norm[0]) / norm[1], np.array(labels), 4, l2=1e-4)
    return ClassicalScenes(fg_model, region_model, norm, mode)


def detection_scenes_baseline(seed: int = 0, num_train: int = 640, num_val: int = 100,
                              size: int = 64, style: str = "flat") -> Dict[str, float]:
    """COCO box / mask AP of the classical pipeline on the detection demo's held-out scenes (task evaluator)."""
    import tempfile

    from unireplknet.data.scenes import write_coco
    from unireplknet.tasks.dense.detection import CocoDetectionDataset, coco_evaluate

    model = fit_classical_scenes(num_train, seed, size, mode="detection", style=style)
    with tempfile.TemporaryDirectory() as root:
        ann = write_coco(root, "val", num_val, seed=seed, size=size, style=style)
        val = CocoDetectionDataset(f"{root}/val", ann, masks=False)
        with torch.no_grad():
            return {k: v for k, v in coco_evaluate(model, val).items() if isinstance(v, float)}


def segmentation_scenes_baseline(seed: int = 0, num_train: int = 1600, num_val: int = 100,
                                 size: int = 64, style: str = "flat") -> Dict[str, float]:
    """mIoU / mAcc / aAcc of the classical pipeline on the segmentation demo's held-out scenes (task evaluator)."""
    import tempfile

    from unireplknet.data.scenes import write_ade20k
    from unireplknet.tasks.dense.segmentation import ADE20KDataset, evaluate_miou

    model = fit_classical_scenes(num_train, seed, size, mode="segmentation", style=style)
    with tempfile.TemporaryDirectory() as root:
        write_ade20k(root, "val", num_val, seed=seed, size=size, style=style)
        val = ADE20KDataset(root, "validation", num_classes=4)
        m = evaluate_miou(model, val, 4)
    return {k: float(v) for k, v in m.items() if isinstance(v, float)}


BASELINES: Dict[str, Callable[[], Dict[str, float]]] = {
    "audio": audio_baseline, "video": video_baseline, "points": points_baseline,
    "co2": lambda: forecast_baseline("co2"), "grid": lambda: forecast_baseline("synthetic-grid"),
    "noisy-audio": noisy_audio_baseline, "video-hard": video_hard_baseline,
    "points_scans": points_scans_baseline, "points_scans_groups": points_scans_descriptor_groups,
    # dense scenes, seed 0 (benchmarks/dense_peers.py runs every seed)
    "det-scenes": detection_scenes_baseline, "seg-scenes": segmentation_scenes_baseline,
    "advection": lambda: forecast_baseline("synthetic-advection")}



def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demos", nargs="*", metavar="DEMO",
                        help=f"which demos to run, of {', '.join(BASELINES)} (default: all)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(list(argv))
    unknown = sorted(set(args.demos) - set(BASELINES))
    if unknown:
        parser.error(f"unknown demo(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
    args.demos = args.demos or list(BASELINES)
    torch.set_num_threads(1)
    results = {}
    for name in args.demos:
        start = time.perf_counter()
        results[name] = BASELINES[name]()
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        for key, value in results[name].items():
            shown = f"{value:8.3f}" if isinstance(value, (int, float)) else json.dumps(value)  # per-seed rows
            print(f"{name:7s} {key:32s} {shown}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
