"""Process-group set-up for ``torchrun`` (env ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``) and small helpers.

NCCL on GPUs, gloo on CPUs. Without those variables everything runs as a single process (rank 0 of 1).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "resolve_device", "is_main_process", "all_reduce_sum", "all_gather_object", "barrier",
           "average_buffers"]

_logger = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = ""
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """``'auto'`` (or empty): the GPU when CUDA is available, else the CPU; any other name as given."""
    if name in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested in ("", "auto"):
        requested = resolve_device(requested).type
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
        if requested == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(requested)


def init_distributed(device: str = "auto", backend: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group when launched by it; otherwise a single-process :class:`DistInfo`."""
    from .._runtime import env_int  # a bad RANK=zero is a clear error, not a traceback

    world_size, rank, local_rank = env_int("WORLD_SIZE", 1, 1), env_int("RANK", 0), env_int("LOCAL_RANK", 0)
    dev = _pick_device(device, local_rank)
    if world_size <= 1:
        return DistInfo(0, 1, 0, dev)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    initialized_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
        initialized_here = True
    _logger.info("rank %d/%d (local %d) on %s, backend %s", rank, world_size, local_rank, dev, backend)
    return DistInfo(rank, world_size, local_rank, dev, backend, initialized_here)


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: List[float], device: torch.device) -> List[float]:
    """Element-wise sum of a list of numbers over all ranks (float64, so counts stay exact)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_gather_object(obj: Any) -> List[Any]:
    if not dist.is_initialized():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def average_buffers(model: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, so every rank holds the same model.

    DDP is built with ``broadcast_buffers=False`` (each rank keeps its own running statistics during an epoch);
    averaging at the end of an epoch is timm's ``--dist-bn reduce``.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(world)
