"""Video baselines: 1-NN on the centroid track (``video``) and motion features of block-matching flow
(``video-hard``)."""
from __future__ import annotations

import logging
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ._common import logistic_regression_accuracy, nearest_neighbour_accuracy, standardise

log = logging.getLogger("classical_baselines")


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
