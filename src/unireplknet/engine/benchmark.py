"""Latency measurement shared by ``unireplknet train`` (deploy speed-up) and ``unireplknet bench``."""
from __future__ import annotations

import statistics
import time
from typing import Dict, List, Sequence

import torch
from torch import nn

__all__ = ["measure_latency", "compare_latency"]


def _timed_call(model: nn.Module, x: torch.Tensor) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    t0 = time.perf_counter()
    model(x)
    sync()
    return time.perf_counter() - t0


@torch.no_grad()
def measure_latency(model: nn.Module, x: torch.Tensor, warmup: int = 3, iters: int = 10) -> Dict[str, float]:
    """Median / min / max seconds of ``model(x)`` over ``iters`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        _timed_call(model, x)
    times: List[float] = [_timed_call(model, x) for _ in range(iters)]
    median = statistics.median(times)
    return dict(median_s=median, min_s=min(times), max_s=max(times), images_per_s=x.shape[0] / median)


@torch.no_grad()
def compare_latency(models: Sequence[nn.Module], x: torch.Tensor, warmup: int = 3, rounds: int = 15) -> List[float]:
    """Median seconds per call of each model, timed in interleaved rounds (A, B, A, B …).

    Interleaving spreads background load on a shared machine evenly over the models being compared, so
    their ratio is fairer than timing one model after the other.
    """
    for m in models:
        for _ in range(warmup):
            _timed_call(m, x)
    times: List[List[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, m in enumerate(models):
            times[i].append(_timed_call(m, x))
    return [statistics.median(t) for t in times]
