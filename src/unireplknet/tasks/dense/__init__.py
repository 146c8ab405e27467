"""Dense prediction: detectors (:mod:`.detection`, :mod:`.cascade`), segmenters (:mod:`.segmentation`), the task objects (:mod:`.task`); ``det-*``/``seg-*`` in :mod:`.cli`."""
from .. import lazy_exports

_EXPORTS = {
    "DenseTrainConfig": "task",
    "DETECTION_DEFAULTS": "task",
    "SEGMENTATION_DEFAULTS": "task",
    "SCENES_DETECTION": "task",
    "SCENES_SEGMENTATION": "task",
    "train_dense": "task",
    "dense_summary": "task",
    "evaluate_dense": "task",
    "load_dense_model": "task",
    "DenseTask": "task",
    "DetectionTask": "task",
    "SegmentationTask": "task",
    "DENSE_TASKS": "task",
    "dense_task": "task",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
