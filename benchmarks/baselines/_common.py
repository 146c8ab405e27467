"""What every modality's classical baseline shares: nearest neighbour, standardisation, multinomial
logistic regression and dynamic time warping."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch


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
