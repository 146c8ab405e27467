"""Image classification: the task object, its recipes and ``unireplknet train``'s Python API."""
from .. import lazy_exports

_EXPORTS = {
    "TrainConfig": "config",
    "DIGITS_DEFAULTS": "config",
    "DIGITS_MODEL_KWARGS": "config",
    "ImageClassification": "task",
    "evaluate": "task",
    "train": "task",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
