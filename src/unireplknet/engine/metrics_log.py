"""Per-epoch metrics to CSV (always) and TensorBoard (when installed)."""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["MetricsLogger", "tensorboard_writer"]

_logger = logging.getLogger(__name__)


TENSORBOARD_MISSING = (
    "TensorBoard logging needs the tensorboard package, which is not installed: "
    "pip install 'unireplknet[tensorboard]' (or leave out --tensorboard)"
)


def tensorboard_writer(required: bool = False) -> Optional[type]:
    """torch's ``SummaryWriter`` class, or None when tensorboard is not installed (ImportError if ``required``)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if required:
            raise ImportError(TENSORBOARD_MISSING) from None
        _logger.debug("tensorboard not installed: metrics go to metrics.csv only")
        return None
    return SummaryWriter


class MetricsLogger:
    """Appends one row per epoch to ``metrics.csv`` and, when tensorboard is installed (``tensorboard=None``) or
    required (``True``), its numeric values as scalars (step = epoch) to ``tensorboard/`` event files.
    On resume, rows and events after the resumed epoch are dropped."""

    def __init__(self, folder: Path, resume_epoch: int = 0, tensorboard: Optional[bool] = None):
        self.path = Path(folder) / "metrics.csv"
        self.fields: Optional[List[str]] = None
        self.rows: List[Dict[str, Any]] = []
        if resume_epoch > 0 and self.path.exists():
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= resume_epoch]
        self.tb = None
        if tensorboard is not False:
            writer_class = tensorboard_writer(required=bool(tensorboard))
            if writer_class is not None:
                # purge_step: a resumed run discards the events of epochs after the checkpoint (a run killed
                # between logging an epoch and saving its checkpoint logged it once already), as the CSV does.
                self.tb = writer_class(str(Path(folder) / "tensorboard"),
                                       purge_step=resume_epoch + 1 if resume_epoch > 0 else None)

    def log(self, row: Dict[str, Any]) -> None:
        self.rows.append({k: v for k, v in row.items()})
        fields: List[str] = []
        for r in self.rows:
            fields.extend(k for k in r if k not in fields)
        # Rewrite the (small) file each epoch: columns may appear later (e.g. EMA) and a crash never leaves half a row.
        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=fields)
        w.writeheader()
        for r in self.rows:
            w.writerow({k: _fmt(r.get(k, "")) for k in fields})
        from ..checkpoint import atomic_write_bytes  # the one atomic writer (imports torch: only when logging)

        atomic_write_bytes(self.path, text.getvalue().encode("utf-8"))
        if self.tb is not None:
            step = int(row["epoch"])
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v
