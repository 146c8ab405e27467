"""Audio classification: the log-mel classifier, its task object and recipes; ``audio-*`` in :mod:`.cli`."""
from .. import lazy_exports

_EXPORTS = {
    "AudioClassifier": "task",
    "AudioTrainConfig": "task",
    "TINY_AUDIO_MODEL_KWARGS": "task",
    "average_precision": "task",
    "mean_average_precision": "task",
    "audio_metrics": "task",
    "build_audio_datasets": "task",
    "evaluate_audio": "task",
    "AudioClassification": "task",
    "train_audio": "task",
    "load_audio_classifier": "task",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
