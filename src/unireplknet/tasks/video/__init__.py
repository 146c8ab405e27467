"""Video classification: the frame-mosaic classifier, its task object and recipes; ``video-*`` in :mod:`.cli`."""
from .. import lazy_exports

_EXPORTS = {
    "OFFICIAL_K400_KWARGS": "task",
    "MOTION_DEMO_KWARGS": "task",
    "VideoClassifier": "task",
    "create_video_classifier": "task",
    "VideoTrainConfig": "task",
    "VideoClassification": "task",
    "HARD_DEMO_EPOCHS": "task",
    "HARD_DEMO_LR": "task",
    "train_video": "task",
    "clip_mixup": "task",
    "load_video_classifier": "task",
    "build_video_data": "task",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
