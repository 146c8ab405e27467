"""The one batch type of every task: what every collate function returns and every task's ``training_loss`` /
``evaluate`` reads (re-exported as :class:`unireplknet.engine.Batch`). It lives with the data, below the engine,
so that datasets and their collate functions need not import the engine."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Sequence

import torch

__all__ = ["Batch", "collate_samples"]


@dataclass
class Batch:
    """One collated batch, of every task: what every collate function returns and every ``training_loss`` /
    ``evaluate`` reads.

    ``inputs``: the model input, a tensor (images, clips, point clouds, log-mel images: ``(B, …)``; multi-view
    test batches ``(B, V, …)``) or, for a model of several inputs, a tuple of them; ``targets``: the labels
    (a tensor, or one dict per image for detection); ``unreadable``: samples left out (or replaced) because
    their file could not be read, with their paths where known.
    """

    inputs: Any
    targets: Any
    unreadable: int = 0
    unreadable_paths: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.targets)


def collate_samples(items: Sequence[Any]) -> Batch:
    """The default collate: ``(input, target)`` samples stacked by torch's ``default_collate``; a ``None``
    sample (an unreadable file of a skipping dataset) is left out and counted."""
    from torch.utils.data import default_collate

    kept = [item for item in items if item is not None]
    missing = len(items) - len(kept)
    if not kept:
        return Batch(torch.zeros(0), torch.zeros(0, dtype=torch.long), missing)
    inputs, targets = default_collate(kept)[:2]
    return Batch(inputs, targets, missing)
