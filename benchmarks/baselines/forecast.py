"""Forecasting baselines: ridge regression on relative windows, joint and per-node linear maps and a kernel
ridge on their residuals (``co2``, ``grid``, ``advection``)."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np


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
