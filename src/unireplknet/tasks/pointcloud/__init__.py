"""Point-cloud classification: the depth-view classifier, its task object and recipes; ``points-*`` in :mod:`.cli`."""
from .. import lazy_exports

_EXPORTS = {
    "pca_align": "task",
    "ALIGNMENTS": "task",
    "generated_dataset_class": "task",
    "ViewPoolingHead": "task",
    "PointCloudClassifier": "task",
    "create_pointcloud_classifier": "task",
    "PROJECTIONS": "task",
    "OFFICIAL_MODELNET_KWARGS": "task",
    "SHAPES_DEMO_KWARGS": "task",
    "PointCloudTrainConfig": "task",
    "PointCloudClassification": "task",
    "train_pointcloud": "task",
    "smoothed_cross_entropy": "task",
    "PointCloudAugment": "task",
    "load_pointcloud_classifier": "task",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
