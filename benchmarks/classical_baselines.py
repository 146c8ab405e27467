"""The strongest simple methods we know for each generated modality demo, on the demos' own splits.

Every modality page compares UniRepLKNet with these rows, so a reader sees what a classical method reaches
on the same data (issue: "honest evidence for one backbone for every modality"). None of these methods is
tuned on the held-out split: every choice below was fixed before looking at held-out results, and each row
names its features.

* ``audio``  — 1-nearest-neighbour with dynamic time warping (DTW) on the same normalised log-mel images the
  network sees (frames = columns of the image, Euclidean distance between frames, the zero padding removed).
* ``video``  — 1-nearest-neighbour on the moving shape's centroid track: per frame, the intensity-weighted
  centre of the brightest pixels, with the clip's mean position subtracted (so only the motion remains).
* ``points`` — rotation-invariant shape descriptors (histograms of distances to the centroid and of pairwise
  distances — the D2 shape distribution of Osada et al., 2002 — plus the sorted principal variances), then
  1-nearest-neighbour and a multinomial logistic regression on the standardised descriptors.
* ``co2`` / ``grid`` / ``advection`` — ridge regression from the 48 input steps to the 24 forecast steps, one
  linear map shared by all variables, each window taken relative to its last value; ridge strength chosen on the
  validation split, and plain least squares beside it. With several stations also one joint linear map from all
  stations' inputs to all stations' futures, one per node of stations (shared by the nodes), and the better of
  the two plus an RBF kernel ridge on its residuals.

Run: ``python benchmarks/classical_baselines.py [audio video points co2 grid advection] [--json FILE]``. Takes
seconds to a minute on one core (co2 grid advection: 24 CPU s).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

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


def logistic_regression_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                                 test_y: np.ndarray, l2: float = 1e-2) -> float:
    """Top-1 of an L2-regularised multinomial logistic regression fitted to convergence with L-BFGS."""
    torch.manual_seed(0)
    xt = torch.as_tensor(train_x, dtype=torch.float64)
    yt = torch.as_tensor(train_y, dtype=torch.long)
    classes = int(max(train_y.max(), test_y.max())) + 1
    w = torch.zeros(xt.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (torch.as_tensor(test_x, dtype=torch.float64) @ w + b).argmax(1).numpy()
    return float((pred == test_y).mean())


def dtw_distances(queries: Sequence[np.ndarray], refs: Sequence[np.ndarray]) -> np.ndarray:
    """DTW cost (sum of Euclidean frame distances along the best monotone path) for every query/reference pair.

    Each sequence is (frames, features). The recursion D[i, j] = c[i, j] + min(D[i-1, j], D[i, j-1], D[i-1, j-1])
    is run for all pairs at once, one cell at a time, with sequences padded by +inf cost.
    """
    nq, nr = len(queries), len(refs)
    lq, lr = max(len(q) for q in queries), max(len(r) for r in refs)
    feat = queries[0].shape[1]
    qa = np.zeros((nq, lq, feat)); qm = np.zeros((nq, lq), bool)
    ra = np.zeros((nr, lr, feat)); rm = np.zeros((nr, lr), bool)
    for i, q in enumerate(queries):
        qa[i, :len(q)], qm[i, :len(q)] = q, True
    for j, r in enumerate(refs):
        ra[j, :len(r)], rm[j, :len(r)] = r, True
    # Frame distances for every pair: (nq, nr, lq, lr).
    cost = np.sqrt(np.maximum(((qa ** 2).sum(-1)[:, None, :, None] + (ra ** 2).sum(-1)[None, :, None, :]
                              - 2 * np.einsum("qif,rjf->qrij", qa, ra)), 0.0))
    big = np.inf
    acc = np.full((nq, nr, lq + 1, lr + 1), big)
    acc[:, :, 0, 0] = 0.0
    for i in range(1, lq + 1):
        for j in range(1, lr + 1):
            best = np.minimum(np.minimum(acc[:, :, i - 1, j], acc[:, :, i, j - 1]), acc[:, :, i - 1, j - 1])
            acc[:, :, i, j] = cost[:, :, i - 1, j - 1] + best
    qlen, rlen = qm.sum(1), rm.sum(1)
    return acc[np.arange(nq)[:, None], np.arange(nr)[None, :], qlen[:, None], rlen[None, :]]


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
    from unireplknet.tasks.forecasting import (DEFAULT_SEASONAL_PERIOD, ForecastTrainConfig,
                                               build_forecast_splits)

    cfg = ForecastTrainConfig.for_data(data=data, seq_len=seq_len, pred_len=pred_len)
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


BASELINES: Dict[str, Callable[[], Dict[str, float]]] = {
    "audio": audio_baseline, "video": video_baseline, "points": points_baseline,
    "co2": lambda: forecast_baseline("co2"), "grid": lambda: forecast_baseline("synthetic-grid"),
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
            print(f"{name:7s} {key:32s} {value:8.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
