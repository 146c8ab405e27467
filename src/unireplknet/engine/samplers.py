"""Batch samplers that make a run on W ranks equal to one process with W-times gradient accumulation.

Each epoch draws one permutation of the training set from ``seed + epoch`` and cuts it into micro-batches;
micro-batch ``g`` goes to rank ``g % W``. A step of W ranks with accumulation A therefore consumes global
micro-batches ``s·W·A … (s+1)·W·A − 1`` — exactly the micro-batches a single process with accumulation
``W·A`` consumes in its step ``s``. That is the documented single-process equivalent of a torchrun job.
"""
from __future__ import annotations

from typing import Iterator, List

import torch
from torch.utils.data import Sampler

__all__ = ["ShardedBatchSampler", "ShardedEvalSampler"]


class ShardedBatchSampler(Sampler[List[int]]):
    """Training micro-batches of ``batch_size`` for ``rank`` of ``world_size`` (whole steps only, no padding)."""

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1, accum_steps: int = 1,
                 seed: int = 0, shuffle: bool = True):
        if batch_size < 1 or accum_steps < 1:
            raise ValueError(f"batch_size and accum_steps must be >= 1, got {batch_size} and {accum_steps}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.rank, self.world_size, self.accum_steps = rank, world_size, accum_steps
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (the same on every rank)."""
        return self.num_samples // (self.batch_size * self.world_size * self.accum_steps)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps_per_epoch * self.accum_steps

    def __iter__(self) -> Iterator[List[int]]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        for local in range(len(self)):
            g_index = local * self.world_size + self.rank
            yield order[g_index * self.batch_size:(g_index + 1) * self.batch_size]


class ShardedEvalSampler(Sampler[List[int]]):
    """Evaluation batches of rank ``rank``: samples ``rank, rank+W, …`` — every sample exactly once over all ranks."""

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, num_samples, world_size))
        self.batch_size = batch_size

    def __len__(self) -> int:
        return (len(self.indices) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[List[int]]:
        for i in range(0, len(self.indices), self.batch_size):
            yield self.indices[i:i + self.batch_size]
