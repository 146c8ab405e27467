"""Training and evaluation engine behind ``unireplknet train`` / ``eval`` (usable from Python as well)."""
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
from .config import DIGITS_DEFAULTS, DIGITS_MODEL_KWARGS, TrainConfig
from .distributed import DistInfo, init_distributed
from .samplers import ShardedBatchSampler, ShardedEvalSampler
from .trainer import (
    EpochEnd,
    TrainResult,
    build_model,
    build_optimizer,
    build_scheduler,
    evaluate,
    make_eval_loader,
    train,
)

__all__ = [
    "CHECKPOINT_FORMAT", "CheckpointWriteError", "atomic_torch_save", "atomic_write_bytes", "get_rng_state",
    "load_training_checkpoint", "read_run_metadata", "set_rng_state", "DIGITS_DEFAULTS", "DIGITS_MODEL_KWARGS",
    "TrainConfig", "DistInfo", "init_distributed", "ShardedBatchSampler", "ShardedEvalSampler", "EpochEnd",
    "TrainResult", "build_model", "build_optimizer", "build_scheduler", "evaluate", "make_eval_loader", "train",
]
