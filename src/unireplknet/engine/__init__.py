"""The training engine: one loop (:func:`fit`) for every task, and the image task behind ``unireplknet train``."""
from .checkpointing import (
    CHECKPOINT_FORMAT,
    CheckpointWriteError,
    atomic_torch_save,
    atomic_write_bytes,
    get_rng_state,
    load_training_checkpoint,
    read_run_metadata,
    set_rng_state,
)
from .config import DIGITS_DEFAULTS, DIGITS_MODEL_KWARGS, EngineConfig, TrainConfig
from .distributed import DistInfo, init_distributed
from .loop import EpochEnd, RunFolderError, TrainResult, build_optimizer, build_scheduler, fit, make_eval_loader
from .samplers import ShardedBatchSampler, ShardedEvalSampler
from .task import StepContext, StepOutput, Task, TaskData
from .trainer import ImageClassification, build_model, evaluate, train

__all__ = [
    "CHECKPOINT_FORMAT", "CheckpointWriteError", "atomic_torch_save", "atomic_write_bytes", "get_rng_state",
    "load_training_checkpoint", "read_run_metadata", "set_rng_state", "DIGITS_DEFAULTS", "DIGITS_MODEL_KWARGS",
    "EngineConfig", "TrainConfig", "DistInfo", "init_distributed", "ShardedBatchSampler", "ShardedEvalSampler",
    "EpochEnd", "RunFolderError", "TrainResult", "fit", "Task", "TaskData", "StepContext", "StepOutput",
    "ImageClassification", "build_model", "build_optimizer", "build_scheduler", "evaluate", "make_eval_loader",
    "train",
]
