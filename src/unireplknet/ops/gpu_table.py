"""Measured per-shape winners on GPUs: where the Triton kernels beat cuDNN (or not).

The dispatcher picks Triton on a GPU only for a (GPU model, dtype, layout, shape) that appears here with
``"winner": "triton"`` — so without measurements cuDNN (``impl='torch'``) is used everywhere, which is
never slower than what PyTorch alone does.

Entries come from ``python benchmarks/bench_dwconv.py --device cuda --write-table FILE``. To use such a
file without editing the package set ``UNIREPLKNET_DWCONV_TABLE=FILE``; to ship it, paste its entries
into :data:`MEASURED_WINNERS` below. **No GPU measurement has been made yet** (the project's development
machine has none), so the shipped table is empty.

Entry format (one dict per measured forward+backward case)::

    {"device": "NVIDIA H100 80GB HBM3", "dtype": "float16", "channels_last": True,
     "batch": 16, "channels": 80, "height": 56, "width": 56, "kernel_size": 13, "dilation": 1,
     "winner": "triton", "speedup": 1.4}
"""
from __future__ import annotations

import functools
import json
import math
from typing import Dict, List, Optional, Tuple

import torch

from .._runtime import env_text

__all__ = ["MEASURED_WINNERS", "load_table", "measured_winner", "nearest_winner"]

#: Shipped measurements (empty until a GPU run fills it; see the module docstring).
MEASURED_WINNERS: List[Dict[str, object]] = []

_REQUIRED = ("device", "dtype", "channels_last", "batch", "channels", "height", "width", "kernel_size", "dilation", "winner")

_Key = Tuple[str, str, bool, int, int, int, int, int]


def _key(entry: Dict[str, object]) -> _Key:
    return (
        str(entry["device"]),
        str(entry["dtype"]),
        bool(entry["channels_last"]),
        int(entry["channels"]),  # type: ignore[arg-type]
        int(entry["height"]),  # type: ignore[arg-type]
        int(entry["width"]),  # type: ignore[arg-type]
        int(entry["kernel_size"]),  # type: ignore[arg-type]
        int(entry["dilation"]),  # type: ignore[arg-type]
    )


def load_table(path: Optional[str] = None) -> Dict[_Key, List[Tuple[int, str]]]:
    """Index the entries (shipped ones plus those in ``path``) by shape: key → [(batch, winner), …]."""
    entries = list(MEASURED_WINNERS)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                loaded = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(
                f"cannot read the depthwise-conv GPU table {path!r} (from UNIREPLKNET_DWCONV_TABLE): {e}; "
                "write one with `python benchmarks/bench_dwconv.py --device cuda --write-table FILE` or unset the variable"
            ) from e
        entries.extend(loaded["entries"] if isinstance(loaded, dict) else loaded)
    table: Dict[_Key, List[Tuple[int, str]]] = {}
    for entry in entries:
        missing = [k for k in _REQUIRED if k not in entry]
        if missing:
            raise ValueError(f"depthwise-conv GPU table entry {entry!r} lacks {missing}")
        table.setdefault(_key(entry), []).append((int(entry["batch"]), str(entry["winner"])))  # type: ignore[arg-type]
    return table


@functools.lru_cache(maxsize=8)
def _table_for(path: Optional[str]) -> Dict[_Key, List[Tuple[int, str]]]:
    return load_table(path)


@functools.lru_cache(maxsize=16)
def _device_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


@functools.lru_cache(maxsize=4096)
def _lookup(path: Optional[str], key: _Key, batch: int) -> Optional[str]:
    rows = _table_for(path).get(key)
    return nearest_winner(rows, batch) if rows else None


def nearest_winner(rows: List[Tuple[int, str]], batch: int) -> str:
    """The winner measured at the batch size nearest (in ratio) to ``batch``; ``rows`` is [(batch, winner), …]."""
    return min(rows, key=lambda r: abs(math.log(max(r[0], 1) / max(batch, 1))))[1]


def measured_winner(x: torch.Tensor, kernel_size: int, dilation: int, channels_last: bool) -> Optional[str]:
    """The measured faster implementation ('triton' / 'torch') for this CUDA call, or None if never measured."""
    index = x.device.index if x.device.index is not None else torch.cuda.current_device()
    n, c, h, w = x.shape
    key = (_device_name(index), str(x.dtype).replace("torch.", ""), channels_last, c, h, w, kernel_size, dilation)
    return _lookup(env_text("UNIREPLKNET_DWCONV_TABLE") or None, key, n)
